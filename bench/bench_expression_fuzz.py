"""Expression fuzzing at scale: N inputs from the grammar-aware generator (cdp/devtools/pql_fuzz.py;
the suite runs 2,000 of them through Hypothesis in tests/test_expression_fuzz.py), each through
parse, check, compile for memory and compile to SQL (SQLite, PostgreSQL). Counts the outcomes
by stage and error code, any crash (an exception that is not the language's: a finding, printed
with its input) and the time per input (wall clock, garbage collector on: what a caller sees),
with the inputs over 100 ms.

    bash bench/run_expression_fuzz.sh [--inputs 100000] [--seed 1] [--record]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from cdp.devtools.pql_fuzz import generate, run_one

BUDGET = 0.1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    run_one("loyalty.points > 1")  # the parser is built on first use
    outcomes: collections.Counter = collections.Counter()
    crashes: dict[str, str] = {}
    times: list[float] = []
    cpu: list[float] = []
    over: list[tuple[float, str]] = []
    started = time.perf_counter()
    for _ in range(args.inputs):
        text = generate(rng.randrange)
        try:
            outcome = run_one(text)
        except Exception as exc:  # noqa: BLE001 - a crash is what we look for
            key = f"{type(exc).__name__}: {str(exc)[:160]}"
            if key not in crashes or len(text) < len(crashes[key]):
                crashes[key] = text
            continue
        outcomes[outcome.stage if outcome.error is None else f"{outcome.stage}: {outcome.error}"] += 1
        times.append(outcome.seconds)
        cpu.append(outcome.cpu_seconds)
        if outcome.seconds >= BUDGET:
            over.append((outcome.seconds, text))
    elapsed = time.perf_counter() - started
    times.sort()
    cpu.sort()

    def pct(p: float, values: list[float] = times) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    lines = [f"## Expression fuzzing — {args.inputs:,} inputs — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"Command: `{os.environ.get('CDP_BENCH_COMMAND', 'python bench/bench_expression_fuzz.py')}` (seed "
             f"{args.seed}); {elapsed:.0f} s on {os.cpu_count()} shared cores.", "",
             "| inputs | crashes | time | p50 ms | p99 ms | p99.9 ms | max ms | mean ms | over 100 ms |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
             f"| {args.inputs:,} | {len(crashes)} | wall clock | {pct(0.5):.2f} | {pct(0.99):.2f} | {pct(0.999):.2f} | "
             f"{times[-1] * 1000:.1f} | {statistics.fmean(times) * 1000:.2f} | {len(over)} |",
             f"| | | CPU of the thread | {pct(0.5, cpu):.2f} | {pct(0.99, cpu):.2f} | {pct(0.999, cpu):.2f} | "
             f"{cpu[-1] * 1000:.1f} | {statistics.fmean(cpu) * 1000:.2f} | {sum(1 for c in cpu if c >= BUDGET)} |", "",
             f"Load average at the end: {os.getloadavg()[0]:.1f} (wall-clock outliers are the machine's queue: each "
             "input over the budget is timed again alone below).", "",
             "Outcomes (how far an input got; the language's error code where it was refused):", "",
             "| outcome | inputs |", "|---|---:|"]
    lines += [f"| {name} | {count:,} |" for name, count in outcomes.most_common()]
    for key, text in crashes.items():
        lines.append(f"\nCRASH {key}\n    {text!r}")
    for seconds, text in sorted(over, reverse=True)[:5]:
        again = min(run_one(text + " " * i).seconds for i in range(1, 4))  # new text: no parse cache
        lines.append(f"\nover the budget once: {seconds * 1000:.0f} ms, alone again {again * 1000:.1f} ms: "
                     f"{text[:160]!r}")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as results:
            results.write("\n" + report)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
