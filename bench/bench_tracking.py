"""The tracking API (cdp/sources) against streaming records: messages per second from an
analytics SDK's own batching to stored events, and the same records posted to
``POST /v1/datasets/{id}/records``.

    .venv/bin/python bench/bench_tracking.py [--messages 5000] [--backend sqlite|postgresql|both]

For each backend, a fresh database and one ``cdp serve`` (bench_ingest.Server). N `track`
messages ("Product Added", each for its own anonymous visitor, a messageId, three properties)
are sent by:

1. segment-analytics-python with its default flush settings (batches of up to 100 messages,
   every 0.5 s, one consumer thread, no gzip);
2. rudder-sdk-python with its defaults (the same batching, gzip on);
3. the same events as streaming records, ``{"records": [...]}`` in requests of 100 (the SDKs'
   batch size), one client, one request after the other.

The clock runs from the first message handed to the SDK (or the first request) until the
dataset holds N events (counted in the database). Each scenario writes into a sandbox of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx2 as httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import Server  # noqa: E402

from cdp.storage.database import create_engine  # noqa: E402

ADMIN = "cdp_benchadmin1_" + "B" * 40


def setup(base: str, tracking: bool) -> tuple[dict, dict, int]:
    headers = {"Authorization": f"Bearer {ADMIN}", "X-Sandbox": f"b-{uuid.uuid4().hex[:10]}"}
    ids = {kind: httpx.post(base + "/v1/datasets", headers=headers, json={"name": kind, "kind": kind}).json()["id"]
           for kind in ("profile", "event")}
    source = {}
    if tracking:
        response = httpx.post(base + "/v1/sources", headers=headers, json={"name": "web", "type": "tracking_api",
                                                                           "datasets": ids})
        response.raise_for_status()
        source = response.json()
    return headers, source, ids["event"]


def wait_for(engine: sa.Engine, dataset: int, expected: int, started: float, timeout: float = 900) -> float:
    while True:
        with engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT count(*) FROM events WHERE dataset_pk = :d"),
                                        {"d": dataset}).scalar_one()
        if stored >= expected:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {stored} of {expected} events stored after {timeout} s")
        time.sleep(0.05)


def via_sdk(make, base: str, engine: sa.Engine, n: int) -> float:
    headers, source, dataset = setup(base, tracking=True)
    errors: list = []
    client = make(source["write_key"], host=base + source["endpoint"], on_error=lambda e, batch: errors.append(e))
    started = time.perf_counter()
    for i in range(n):
        client.track(anonymous_id=f"v-{i}", event="Product Added", message_id=f"m-{i}",
                     properties={"sku": f"SKU-{i % 500}", "price": 19.5, "quantity": 1})
    client.flush()
    seconds = wait_for(engine, dataset, n, started)
    client.join()
    if errors:
        raise RuntimeError(f"the SDK reported {len(errors)} errors: {errors[0]}")
    return seconds


def via_records(base: str, engine: sa.Engine, n: int, size: int = 100) -> float:
    headers, _, dataset = setup(base, tracking=False)
    now = datetime.now(timezone.utc).isoformat()
    records = [{"identities": [{"namespace": "ecid", "id": f"v-{i}"}],
                "event": {"id": f"m-{i}", "type": "addToCart", "timestamp": now, "channel": "web",
                          "product": {"sku": f"SKU-{i % 500}", "price": 19.5, "quantity": 1}}} for i in range(n)]
    bodies = [json.dumps({"records": records[i:i + size]}).encode() for i in range(0, n, size)]
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers={**headers, "content-type": "application/json"}, timeout=300) as client:
        for body in bodies:
            client.post(f"/v1/datasets/{dataset}/records", content=body).raise_for_status()
    return wait_for(engine, dataset, n, started)


def run(backend: str, n: int, workdir: Path) -> list[tuple[str, str, float]]:
    from rudderstack.analytics import Client as Rudder
    from segment.analytics import Client as Segment

    cluster = None
    if backend == "sqlite":
        url = f"sqlite:///{workdir}/bench.db"
    else:
        from cdp.devtools.postgres import start_cluster

        cluster = start_cluster()
        url = cluster.create_database("bench_tracking")
    server = Server(url, workdir / f"{backend}.log", ADMIN)
    engine = create_engine(url)
    try:
        rows = []
        for name, measure in (("segment-analytics-python (defaults)", lambda: via_sdk(Segment, server.base, engine, n)),
                              ("rudder-sdk-python (defaults, gzip)", lambda: via_sdk(Rudder, server.base, engine, n)),
                              ("POST /v1/datasets/{id}/records, 100 a request",
                               lambda: via_records(server.base, engine, n))):
            seconds = measure()
            rows.append((backend, name, seconds))
            print(f"{backend:10} {name:48} {n / seconds:8,.0f} messages/s ({seconds:.1f} s)", flush=True)
        return rows
    finally:
        engine.dispose()
        server.stop()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends:
            run(backend, args.messages, Path(folder))


if __name__ == "__main__":
    main()
