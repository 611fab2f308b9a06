"""How ``cdp demo`` tells the story in a terminal: a heading per step, then what was sent, what
cdp decided and why, and a progress line while a step runs. Colour only on a terminal and never
with ``NO_COLOR`` set (https://no-color.org); the progress line only on a terminal (on a pipe, the
headings alone say how far it got)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TextIO

from cdp.demo.story import LAST_STEP, Step

_CODES = {"bold": "1", "dim": "2", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36",
          "red": "31"}
_LABELS = [("sent", "sent", "blue"), ("decided", "cdp", "green"), ("why", "why", "magenta")]


def use_colour(stream: TextIO, *, forced_off: bool = False) -> bool:
    return not forced_off and "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


class Narrator:
    def __init__(self, out: TextIO = sys.stdout, progress_to: TextIO = sys.stderr, *, colour: bool,
                 until: int = LAST_STEP):
        self.out = out
        self.progress_to = progress_to
        self.colour = colour
        self.until = until
        self.live = hasattr(progress_to, "isatty") and progress_to.isatty()
        self.current = (0, "")

    def paint(self, text: str, *styles: str) -> str:
        if not self.colour or not styles:
            return text
        return "".join(f"\033[{_CODES[s]}m" for s in styles) + text + "\033[0m"

    # -- the progress line -------------------------------------------------------------------------

    def start(self, number: int, title: str) -> None:
        self.current = (number, title)
        self.progress("")

    def progress(self, detail: str) -> None:
        if not self.live:
            return
        number, title = self.current
        width = 20
        done = round(width * number / (self.until + 1))
        bar = "█" * done + "░" * (width - done)
        line = f"[{bar}] step {number}/{self.until} · {title}" + (f" · {detail}" if detail else "")
        columns = shutil.get_terminal_size((100, 20)).columns
        self.progress_to.write("\r\033[K" + line[:columns - 1])
        self.progress_to.flush()

    def _clear(self) -> None:
        if self.live:
            self.progress_to.write("\r\033[K")
            self.progress_to.flush()

    # -- the steps ---------------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        self._clear()
        heading = f"Step {step.number}/{self.until} · {step.title}" if step.number else f"Before the story · {step.title}"
        self.out.write("\n" + self.paint(heading, "bold", "cyan") + self.paint(f"  ({step.seconds:.1f} s)", "dim") + "\n")
        for attribute, label, colour in _LABELS:
            for k, line in enumerate(getattr(step, attribute)):
                tag = f"  {label:<7} " if k == 0 else " " * 10
                self.out.write(self.paint(tag, colour, "bold") + line + "\n")
        self.out.flush()

    def done(self, steps: list[Step], *, url: str, sandbox: str) -> None:
        self._clear()
        self.out.write("\n" + self.paint(f"The story, steps 1–{steps[-1].number}, played against {url}, sandbox "
                                         f"{sandbox}.", "bold") + "\n")
        self.out.write(f"Poke at it: X-Sandbox: {sandbox}, e.g. GET {url}/v1/profiles/lookup?namespace=email&"
                       f"id=sarah.rose@example.com\n")
        self.out.flush()

    def failed(self, message: str) -> None:
        self._clear()
        self.out.write(self.paint(f"\nThe demo stopped: {message}", "red", "bold") + "\n")
        self.out.flush()
