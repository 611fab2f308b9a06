"""The per-request floor of streaming: 8 keep-alive clients sending 1 record per request against
the same server's trivial authenticated GET, with the server's CPU per request, next to a bare
FastAPI app on the same uvicorn (the floor a framework alone sets), and on PostgreSQL the
deadlocks and lock waits of the run (the cluster's log: ``log_lock_waits = on``,
``deadlock_timeout = 1s``).

    bash bench/run_ingest_floor.sh [--backend sqlite|postgresql|both] [--requests N] [--rounds R]

For each backend: one ``cdp serve`` (bench_ingest.py's ``Server``: the same settings, a throwaway
PostgreSQL cluster), then R rounds of N GETs (``GET /v1/datasets/{id}``: the key checked, one
small read) and N single-record POSTs (bench_ingest.py's event stream, a fresh sandbox per round),
alternated, 8 clients each (bench_baseline.py's machinery). Then the bare app: FastAPI with one
sync dependency reading the Authorization header and a sync endpoint returning a small document,
on uvicorn with the same HTTP implementation (h11) and event loop (asyncio), R rounds of N GETs.
Reported per kind: requests/s (median of the rounds), p50/p99/max over all requests, the server
process's CPU per request (user + system, from /proc), and POST ÷ GET. To compare another
checkout's code: ``PYTHONPATH=/path/to/checkout`` (the servers inherit it).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_baseline as bb  # noqa: E402
import bench_ingest as bi  # noqa: E402

from cdp.devtools.postgres import start_cluster  # noqa: E402

CLIENTS = 8
PG_LOCK_LOGGING = {"log_lock_waits": "on", "deadlock_timeout": "1s"}
BARE_APP = textwrap.dedent('''
    from fastapi import Depends, FastAPI, Header

    app = FastAPI()


    def caller(authorization: str | None = Header(None)) -> str | None:
        return authorization


    @app.get("/v1/datasets/{dataset_id}")
    def get_dataset(dataset_id: int, who: str | None = Depends(caller)) -> dict:
        return {"id": dataset_id, "name": "GET target", "kind": "event"}
''')


class Runs:
    """Rounds of one kind of request: wall time, latencies and server CPU of each."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.latencies: list[float] = []
        self.cpu_ms: list[float] = []

    def add(self, count: int, wall: float, outcome, cpu: float) -> None:
        self.rates.append(count / wall)
        self.latencies += outcome.latencies
        self.cpu_ms.append(1000 * cpu / count)

    def row(self, name: str) -> str:
        ordered = sorted(self.latencies)
        p = lambda q: 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
        return (f"| {name} | {statistics.median(self.rates):,.0f} | {p(.5):.1f} | {p(.99):.1f} | {1000 * ordered[-1]:.0f} "
                f"| {statistics.median(self.cpu_ms):.2f} |")


def _timed(pid: int, run) -> tuple[float, object, float]:
    before = bi.cpu_seconds(pid)
    wall, outcome = run()
    return wall, outcome, bi.cpu_seconds(pid) - before


def measure_cdp(backend: str, requests: int, rounds: int) -> dict:
    key = f"cdp_benchfloor_{secrets.token_urlsafe(32)}"
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-floor-"))
    cluster = None
    found: dict = {"get": Runs(), "post": Runs()}
    try:
        if backend == "sqlite":
            url = f"sqlite:///{workdir / 'cdp.db'}"
        else:
            settings = {**bi.PG_SETTINGS, **PG_LOCK_LOGGING}
            cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in settings.items()))
            url = cluster.create_database("cdp_floor")
        server = bi.Server(url, workdir / "server.log", key)
        try:
            api = bi.Api(server.base, key, "floor-get")
            get_dataset = api.create_dataset("GET target", "event")
            api.close()
            records = bi.event_stream(requests * rounds, 42)
            for round_ in range(rounds):
                headers = {"Authorization": f"Bearer {key}", "X-Sandbox": "floor-get"}
                wall, outcome, cpu = _timed(server.pid, lambda: bb.run_gets(
                    server.base, headers, f"/v1/datasets/{get_dataset}", requests, CLIENTS))
                assert outcome.accepted == requests, outcome.statuses
                found["get"].add(requests, wall, outcome, cpu)
                sandbox = f"floor-post-{round_}"
                api = bi.Api(server.base, key, sandbox)
                dataset = api.create_dataset("1 record per request", "event")
                api.close()
                bodies = bi.encode_requests(records[round_ * requests:(round_ + 1) * requests], 1)
                headers = {"Authorization": f"Bearer {key}", "X-Sandbox": sandbox}
                wall, outcome, cpu = _timed(server.pid, lambda: bi.run_clients(
                    server.base, headers, f"/v1/datasets/{dataset}/records", bodies, CLIENTS))
                assert outcome.accepted == requests and outcome.non_200 == 0, (outcome.statuses, outcome.errors)
                found["post"].add(requests, wall, outcome, cpu)
                bi.log(f"{backend} round {round_ + 1}: GET {found['get'].rates[-1]:,.0f}/s, "
                       f"POST {found['post'].rates[-1]:,.0f}/s")
        finally:
            server.stop()
        if cluster is not None:
            log = (cluster.directory / "log").read_text(errors="replace")
            found["deadlocks"] = log.count("deadlock detected")
            found["lock_waits"] = log.count("still waiting for")
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return found


def measure_bare(requests: int, rounds: int) -> Runs:
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-bare-"))
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = bi._free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
                                "--log-level", "warning", "--no-access-log", "--http", "h11", "--loop", "asyncio"],
                               cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    runs = Runs()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/v1/datasets/1", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the bare app did not start")
            time.sleep(0.1)
        for _ in range(rounds):
            wall, outcome, cpu = _timed(process.pid, lambda: bb.run_gets(
                base, {"Authorization": "Bearer x"}, "/v1/datasets/1", requests, CLIENTS))
            assert outcome.accepted == requests, outcome.statuses
            runs.add(requests, wall, outcome, cpu)
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bi.LIMIT.update(bi.LIMITS[False])
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    lines = [f"## Streaming's per-request floor — {started:%Y-%m-%d %H:%M} UTC", "",
             f"- machine: nproc {os.cpu_count()}, {platform.machine()}; load average at start {load:.2f}",
             f"- command: `{os.environ.get('CDP_BENCH_COMMAND', 'bench/bench_ingest_floor.py')}`"
             f"{' with PYTHONPATH=' + os.environ['PYTHONPATH'] if os.environ.get('PYTHONPATH') else ''}",
             f"- {args.requests:,} requests a round, {args.rounds} rounds, {CLIENTS} keep-alive clients", "",
             "| run | req/s | p50 ms | p99 ms | max ms | server CPU ms/req |", "|---|---:|---:|---:|---:|---:|"]
    notes = []
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        found = measure_cdp(backend, args.requests, args.rounds)
        lines += [found["get"].row(f"{backend}: trivial authenticated GET"),
                  found["post"].row(f"{backend}: POST 1 record")]
        ratio = statistics.median(found["post"].rates) / statistics.median(found["get"].rates)
        notes.append(f"- {backend}: POST ÷ GET {ratio:.2f}"
                     + (f"; PostgreSQL log: {found['deadlocks']} deadlocks, {found['lock_waits']} lock waits ≥ 1 s"
                        if "deadlocks" in found else ""))
    lines.append(measure_bare(args.requests, args.rounds).row("bare FastAPI + uvicorn (h11): trivial GET"))
    lines += ["", *notes, f"- load average at the end {os.getloadavg()[0]:.2f}", ""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
