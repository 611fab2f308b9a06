"""How long a newcomer waits: `make run`'s first start (`cdp serve --demo` on an empty SQLite file:
Luma's files and streams loaded over HTTP, segments saved and evaluated), a later start of the same
database, and a start without the demo data (the floor: imports, migrations, start-up); then
`cdp demo` with its default 1,000 customers, end to end.

    python bench/bench_demo_start.py [--repeat 3] [--record]
    (or: bash bench/run_demo_start.sh …, which uses the project's .venv)

Each start is timed from launching the process to the first 200 of /healthz.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CDP = [sys.executable, "-c", "from cdp.cli import main; main()"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: str, *args: str) -> float:
    """Seconds from launch to a healthy server; the server is stopped after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")} | {"CDP_DATA_DIR": folder}
    port = _port()
    began = time.perf_counter()
    process = subprocess.Popen([*CDP, "serve", "--port", str(port), "--log-level", "warning", *args], env=env,
                               cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"cdp serve exited {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - began
            except OSError:
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=60)


def demo() -> float:
    began = time.perf_counter()
    subprocess.run([*CDP, "demo", "--json"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={k: v for k, v in os.environ.items() if not k.startswith("CDP_")})
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"first start, demo data loaded": [], "later start": [],
                                     "start without demo data": [], "cdp demo (1,000 customers), end to end": []}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            times["first start, demo data loaded"].append(start(folder, "--demo"))
            times["later start"].append(start(folder, "--demo"))
        with tempfile.TemporaryDirectory() as folder:
            times["start without demo data"].append(start(folder))
        times["cdp demo (1,000 customers), end to end"].append(demo())
    rows = [[name, f"{statistics.median(values):.1f} s", f"{min(values):.1f}–{max(values):.1f} s"]
            for name, values in times.items()]
    table = markdown_table(["what", "median", "range"], rows)
    print(table)
    if args.record:
        command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_demo_start.py " + " ".join(sys.argv[1:])
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(f"\n## Demo start-up ({datetime.now(UTC):%Y-%m-%d})\n\n`{command}` — SQLite, {args.repeat} runs, "
                      f"{cpu_model()}; each start timed from launch to the first 200 of /healthz.\n\n{table}\n")


if __name__ == "__main__":
    main()
