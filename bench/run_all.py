"""Run the whole benchmark suite and print one report; ``--record`` appends it to bench/RESULTS.md.

    bash bench/run.sh [--profiles 100000] [--rounds 5] [--repeats 200] [--seed 42] [--record]

(bench/run.sh makes the bench venv with the comparison libraries, then runs this file.)
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import bench_frontend
import bench_memory
from _common import SEGMENT_A, SEGMENT_B, banner, cpu_model

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def versions() -> str:
    out = []
    for dist in ("rule-engine", "cel-python", "json-logic-qubit", "lark"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return ", ".join(out)


def machine_lines(command: str) -> list[str]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return [
        f"- machine: nproc {os.cpu_count()}, {cpu_model()}, {platform.system()} {platform.machine()}; "
        f"load average at start {load:.2f}",
        f"- python: {platform.python_implementation()} {platform.python_version()}",
        f"- libraries: {versions()}",
        f"- command: `{command}`",
    ]


def report(args, frontend_rows, memory_result, machine: list[str], started: datetime, elapsed: float) -> str:
    lines = [f"## {started:%Y-%m-%d %H:%M} UTC", ""]
    lines += machine
    lines.append(f"- wall time of the suite: {elapsed:.0f} s")
    lines.append("")
    if frontend_rows is not None:
        lines += [
            f"### Front end: µs per expression (median of {args.repeats} runs)",
            "",
            "`+check` is parse + check; `+compile` is parse + check + compile_segment with the compile "
            "cache emptied each time. Target: < 1 ms.",
            "",
            bench_frontend.table(frontend_rows),
            "",
        ]
    if memory_result is not None:
        lines += [
            f"### In memory: {memory_result.profiles:,} profiles",
            "",
            f"- (a) `{SEGMENT_A}`",
            "- (b) Gift-giving cart abandoners (DSL.md §13): "
            f"`{' '.join(line.strip() for line in SEGMENT_B.splitlines() if not line.startswith('#'))}`",
            "",
            "`vs cdp` is the evaluator's throughput divided by ours (for an engine measured on a prefix "
            "of the profiles, ours on the same prefix). Every evaluator returned the same profile ids "
            "(asserted).",
            "",
            bench_memory.table(memory_result),
            "",
            bench_memory.summary(memory_result),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000, help="generated profiles (default 100,000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds (default 5)")
    parser.add_argument("--repeats", type=int, default=200, help="front-end runs per expression (default 200)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", choices=["frontend", "memory"], help="run one benchmark only")
    parser.add_argument("--record", action="store_true", help="append the report to bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1 or args.profiles < 1:
        parser.error("--profiles, --rounds and --repeats must be at least 1")

    command = os.environ.get("CDP_BENCH_COMMAND") or shlex.join(["python", "bench/run_all.py", *sys.argv[1:]])
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    machine = machine_lines(command)  # taken now: the load average is the one at the start
    print("\n".join(machine), flush=True)

    frontend_rows = memory_result = None
    if args.only in (None, "frontend"):
        print(f"\n# Front end (median of {args.repeats} runs, µs)\n", flush=True)
        frontend_rows = bench_frontend.run(args.repeats)
        print(bench_frontend.table(frontend_rows), flush=True)
    if args.only in (None, "memory"):
        print(f"\n# In memory ({args.profiles:,} profiles, {args.rounds} rounds)\n", flush=True)
        memory_result = bench_memory.run(args.profiles, args.rounds, args.seed)
        print(bench_memory.table(memory_result))
        print()
        print(bench_memory.summary(memory_result), flush=True)
        for name in memory_result.skipped:
            print(banner(f"{name} was not installed: its comparison was SKIPPED"), file=sys.stderr)

    elapsed = time.perf_counter() - t0
    if args.record:
        text = report(args, frontend_rows, memory_result, machine, started, elapsed)
        existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else (
            "# Benchmark results\n\nAppended by `bash bench/run.sh --record`; newest last. "
            "See bench/README.md for what is measured and how.\n")
        RESULTS.write_text(existing.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n", encoding="utf-8")
        print(f"\nrecorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
