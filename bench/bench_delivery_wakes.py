"""The delivery loop's wakes under a stream of single-record requests, side by side.

    .venv/bin/python bench/bench_delivery_wakes.py [--records 3000] [--rounds 3]

Every ingest request wakes the service's delivery loop (cdp/activation/worker.py); a cycle reads
the outbox horizon, pumps and lists open destinations whether or not the request changed a
membership. This runs one ``cdp serve`` on a fresh SQLite file per round and setting, alternating
``CDP_ACTIVATION_WAKE_COALESCE_SECONDS=0`` (a cycle per wake) and the default 0.02 (wakes within
20 ms share a cycle), and sends the same kind of records (bench_ingest.py's Luma events, 1 per
request, 8 keep-alive clients). Reported per round: records/s, the server's CPU per record (from
/proc), client p50/p99.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest as bi  # noqa: E402
from bench_ingest import Api, Server, cpu_seconds, encode_requests, event_stream, run_clients  # noqa: E402

SETTINGS = ("0", "0.02")


def one_run(work: Path, coalesce: str, key: str, records: list[dict], label: str) -> str:
    # Server passes no CDP_* variable of ours on; the setting goes in through a wrapper script
    wrapper = work / f"cdp-coalesce-{coalesce}"
    wrapper.write_text(f'#!/bin/sh\nCDP_ACTIVATION_WAKE_COALESCE_SECONDS={coalesce} exec "{bi.CDP}" "$@"\n')
    wrapper.chmod(0o755)
    original, bi.CDP = bi.CDP, str(wrapper)
    try:
        server = Server(f"sqlite:///{work / f'{label}-{coalesce}.db'}", work / f"{label}-{coalesce}.log", key)
    finally:
        bi.CDP = original
    try:
        api = Api(server.base, key, "wakes")
        dataset = api.create_dataset("events", "event")
        api.close()
        headers = {"Authorization": f"Bearer {key}", "X-Sandbox": "wakes"}
        path = f"/v1/datasets/{dataset}/records"
        run_clients(server.base, headers, path, encode_requests(records[:200], 1), 8)  # warm-up
        measured = records[200:]
        before = cpu_seconds(server.pid)
        wall, outcome = run_clients(server.base, headers, path, encode_requests(measured, 1), 8)
        cpu = (cpu_seconds(server.pid) - before) / len(measured) * 1e6
        if outcome.accepted != len(measured):
            raise RuntimeError(f"not every record was accepted: {outcome.statuses}")
        latencies = sorted(outcome.latencies)
        return (f"| {label} | {coalesce} | {len(measured) / wall:,.0f} | {cpu:,.0f} | "
                f"{1000 * latencies[len(latencies) // 2]:.1f} | {1000 * latencies[int(0.99 * len(latencies))]:.1f} |")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000, help="records measured per run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bi.LIMIT.update(bi.LIMITS[False])
    work = Path(tempfile.mkdtemp(prefix="cdp-bench-wakes-"))
    key = f"cdp_benchwakes_{secrets.token_hex(20)}"
    per_run = args.records + 200
    stream = event_stream(per_run * args.rounds * len(SETTINGS), 11)
    print("| run | wake_coalesce_seconds | records/s | server CPU µs / record | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    taken = 0
    for round_ in range(args.rounds):
        for coalesce in SETTINGS:
            print(one_run(work, coalesce, key, stream[taken:taken + per_run], f"round {round_ + 1}"), flush=True)
            taken += per_run


if __name__ == "__main__":
    main()
