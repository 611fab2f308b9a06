"""Sums py-spy's collapsed stacks (``--format raw``; bench_ingest.py's CDP_BENCH_PYSPY) into the
functions that take the time: inclusive (the function and what it calls) and self, as % of the
samples, cdp's own frames and the library frames they call.

    .venv/bin/python bench/profile_report.py bench/data/pyspy/server-1234.txt [--top 40] [--match cdp/]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("/cdp/", "site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only functions whose label contains this")
    parser.add_argument("--within", default="", help="only stacks through a function whose label contains this "
                        "(e.g. _BatchRun.run); percentages of those stacks")
    # the labels py-spy gives idle leaf frames, escaped: their parentheses are literal, not groups
    idle_frames = ("select (selectors.py)", "_worker (thread.py)", "wait (threading.py)", "sleep",
                   "run_until_complete", "_run_once (base_events.py)")
    parser.add_argument("--idle", default="|".join(map(re.escape, idle_frames)),
                        help="leaf frames counted as idle (regex)")
    args = parser.parse_args()
    inclusive: Counter = Counter()
    self_: Counter = Counter()
    total = idle = 0
    idle_re = re.compile(args.idle)
    for name in args.files:
        with open(name) as f:
            for line in f:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack:
                    continue
                n = int(count)
                frames = [_short(fr) for fr in stack.split(";") if fr and not fr.startswith("process ")
                          and not fr.startswith("thread ")]
                if not frames:
                    continue
                if args.within and not any(args.within in frame for frame in frames):
                    continue
                if idle_re.search(frames[-1]):
                    idle += n
                    continue
                total += n
                for frame in set(frames):
                    inclusive[frame] += n
                self_[frames[-1]] += n
    print(f"busy samples {total:,} (idle {idle:,} left out)")
    print(f"{'incl %':>7} {'self %':>7}  function")
    for frame, n in inclusive.most_common():
        if args.match and args.match not in frame:
            continue
        print(f"{100 * n / total:7.1f} {100 * self_[frame] / total:7.1f}  {frame}")
        args.top -= 1
        if args.top <= 0:
            break
    print("\nself time, top:")
    for frame, n in self_.most_common(25):
        print(f"{100 * n / total:7.1f}  {frame}")


if __name__ == "__main__":
    main()
