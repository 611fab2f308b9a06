"""Shared pieces of the benchmark suite: the expressions measured, timing and table helpers."""

from __future__ import annotations

import gc
import platform
import statistics
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Sequence

# The ten examples of DSL.md §13, verbatim (the first one spans several lines, comments included).
DSL_EXAMPLES: list[str] = [
    """# Gift-giving cart abandoners: loyalty members whose recent cart holds something off their usual
# category and size, and who left it there
loyalty.tier is not null
and (exists event where type = "addToCart"
       and product.category != profile.preferred_category
       and product.size != profile.preferred_size
       within last 7 days)
and (exists event as cart where type = "addToCart" within last 7 days
       then no event where type = "purchase" within 1 day)""",
    'home_address.country = "US" and loyalty.points between 500 and 5000',
    'count(event where type = "purchase" within last 90 days) >= 3',
    'sum(event.order.total where type = "purchase" within this year) > 1000',
    "month(person.birth_date) = month(today()) and email_opt_in",
    'lower(email) ends with "@example.com" or email matches "^[^@]+@luma\\\\.com$"',
    'interests has any ["running", "yoga"] and not in segment "churn-risk"',
    'last(event.product.category where type = "purchase") != preferred_category',
    'days_since(last(event.timestamp where type = "purchase")) > 180',
    """exists event where type = "productView" within last 1 day
  then event where type = "addToCart" within 1 hour
  then no event where type = "purchase" within 1 day""",
]

# `in segment "churn-risk"` needs a catalogue to compile; this is the one the benchmarks use.
CATALOGUE = {"churn-risk": DSL_EXAMPLES[8]}

SEGMENT_A = 'loyalty.tier in ["silver", "gold"] and home_address.country = "US" and loyalty.points > 500'
SEGMENT_B = DSL_EXAMPLES[0]


def carts_not_bought(mark: str) -> str:
    """The hand-written heart of SEGMENT_B, as a user writes it for DuckDB (``mark`` "$") or Spark
    (":"): the profiles with an addToCart in the window not followed by a purchase within a day.
    Each benchmark's reference adds the rest (the loyalty tier, the cart's category and size
    against the profile's preferences) in the spelling of the data it reads (JSON or columns)."""
    return f"""SELECT c.profile_pk FROM events c
               WHERE c.type = 'addToCart' AND c.ts > {mark}lo AND c.ts <= {mark}as_of
                 AND NOT EXISTS (SELECT 1 FROM events q
                                 WHERE q.profile_pk = c.profile_pk AND q.type = 'purchase' AND q.ts > c.ts
                                   AND q.ts <= {mark}as_of AND q.ts <= c.ts + INTERVAL 1 DAY)"""


def short(text: str, width: int = 60) -> str:
    """The expression on one line, comments dropped, cut to ``width``."""
    lines = [line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
             for line in text.splitlines()]
    one = " ".join(line for line in lines if line)
    one = one.replace("|", "\\|")  # safe inside a Markdown table
    return one if len(one) <= width else one[: width - 1] + "…"


@contextmanager
def no_gc():
    """Collect once, then keep the collector out of the timed region (as timeit does)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def median_us(fn: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    """Median wall time of one call of ``fn``, in microseconds, over ``repeats`` calls."""
    return sample_us(fn, repeats, warmup)[0]


def sample_us(fn: Callable[[], object], repeats: int, warmup: int = 5) -> tuple[float, float]:
    """(median, fastest) wall time of one call of ``fn``, in microseconds, over ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    with no_gc():
        for _ in range(repeats):
            start = clock()
            fn()
            samples.append(clock() - start)
    return statistics.median(samples) / 1000.0, min(samples) / 1000.0


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call, with the collector off."""
    with no_gc():
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    return elapsed, result


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one letter per column, l or r (default: l then r)."""
    rows = [[str(c) for c in row] for row in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if align[i] == "r" else cell.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in rows])


def fmt_rate(per_second: float) -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f} k/s"
    return f"{per_second:.0f} /s"


def banner(text: str) -> str:
    bar = "!" * (len(text) + 8)
    return f"\n{bar}\n!!! {text} !!!\n{bar}\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class ExclusivePhases:
    """Exclusive thread CPU per phase, on the bench's thread only (not the app's background
    loops): a stack of [phase, start]; entering a phase pauses the one below, so a phase's figure
    leaves out the phases it calls. ``on`` False: nothing is counted."""

    def __init__(self, on: bool = True) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.thread = threading.get_ident()
        self.stack: list = []
        self.on = on

    def enter(self, phase: str) -> None:
        if not self.on or threading.get_ident() != self.thread:
            return
        now = time.thread_time()
        if self.stack:
            below = self.stack[-1]
            self.cpu[below[0]] += now - below[1]
        self.stack.append([phase, now])
        self.calls[phase] += 1

    def leave(self) -> None:
        if not self.on or threading.get_ident() != self.thread or not self.stack:
            return
        now = time.thread_time()
        phase, since = self.stack.pop()
        self.cpu[phase] += now - since
        if self.stack:
            self.stack[-1][1] = now

    def wrap(self, owner, name: str, phase: str) -> None:
        """``owner.name`` timed as ``phase`` (left alone where the code measured has no such name:
        the benches measure older checkouts too)."""
        if not hasattr(owner, name):
            return
        original = getattr(owner, name)
        phases = self

        def timed(*args, **kwargs):
            phases.enter(phase)
            try:
                return original(*args, **kwargs)
            finally:
                phases.leave()
        timed.__wrapped__ = original
        setattr(owner, name, timed)
