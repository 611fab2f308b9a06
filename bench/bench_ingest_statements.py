"""The statements of one single-record POST, listed and counted per database (issue 16: the round
trips of a streaming request).

    .venv/bin/python bench/bench_ingest_statements.py [--backend sqlite|postgresql|both] [--requests 20]

The app (``cdp.api.create_app``) in this process through FastAPI's TestClient, on a fresh SQLite
file and a throwaway PostgreSQL cluster. A sandbox, an event dataset and a key are made, a few
warm-up requests are sent (so what a process reads once is read), then ``--requests`` single
event records (bench_ingest.py's event stream: new people and returning ones) are POSTed one at a
time, and every statement the engine sends to the driver (SQLAlchemy's ``before_cursor_execute``,
plus the transaction's BEGIN / COMMIT / ROLLBACK, which SQLAlchemy does not send through a cursor)
is counted: on PostgreSQL each is a round trip. Reported: the statements of the last request, in
order, and the mean count per request. To compare another checkout's code: ``PYTHONPATH=/path/to/checkout`` first.
"""

from __future__ import annotations

import argparse
import re
import threading
import sys
import tempfile
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import cdp.dsl  # noqa: E402,F401 - cdp.schema must not be imported first (import cycle)
from bench_ingest import event_stream  # noqa: E402

import sqlalchemy as sa  # noqa: E402

ADMIN_KEY = "cdp_benchadmin1_" + "B" * 40
WARM_UP = 10


def _short(statement: str) -> str:
    return re.sub(r"\s+", " ", statement).strip()[:150]


class Recorder:
    """Every statement and transaction step an engine sends, in order."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seen: list[str] = []
        self.on = False
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        # savepoints go through a cursor (seen above); SQLite's BEGIN too (BEGIN IMMEDIATE: cdp.storage.database)
        steps = ("commit", "rollback") if engine.dialect.name == "sqlite" else ("begin", "commit", "rollback")
        for name in steps:
            sa.event.listen(engine, name, self._step(name.upper()))

    def _mine(self) -> bool:
        """A request's statement, not one of the service's own loops (delivery, jobs: threads named cdp-…)."""
        return self.on and not threading.current_thread().name.startswith("cdp")

    def _statement(self, _conn, _cursor, statement, _parameters, _context, executemany) -> None:  # noqa: ANN001
        if self._mine():
            self.seen.append(("executemany: " if executemany else "") + _short(statement))

    def _step(self, name: str):
        def record(*_args) -> None:  # noqa: ANN002
            if self._mine():
                self.seen.append(name)
        return record


def measure(database_url: str, requests: int) -> tuple[list[str], float, Counter]:
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from cdp.settings import Settings

    app = create_app(Settings(database_url=database_url, bootstrap_admin_key=ADMIN_KEY))
    with TestClient(app, raise_server_exceptions=True) as client:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Sandbox": "bench", "Content-Type": "application/json"}
        assert client.post("/v1/sandboxes", json={"name": "bench"}, headers=headers).status_code == 201
        response = client.post("/v1/datasets", json={"name": "events", "kind": "event"}, headers=headers)
        assert response.status_code == 201, response.text
        dataset = response.json()["id"]
        records = event_stream(WARM_UP + requests, seed=7)
        recorder = Recorder(app.state.engine)
        counts: list[int] = []
        last: list[str] = []
        share = Counter()
        for number, record in enumerate(records[:WARM_UP + requests]):
            recorder.seen = []
            recorder.on = number >= WARM_UP
            response = client.post(f"/v1/datasets/{dataset}/records", json=record, headers=headers)
            assert response.status_code == 200 and response.json()["accepted"] == 1, response.text[:300]
            if recorder.on:
                counts.append(len(recorder.seen))
                last = recorder.seen
                share.update({statement[:60] for statement in recorder.seen})
        return last, sum(counts) / len(counts), share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        if backend == "sqlite":
            folder = tempfile.mkdtemp(prefix="cdp-stmts-")
            last, mean, share = measure(f"sqlite:///{folder}/bench.db", args.requests)
        else:
            from cdp.devtools.postgres import start_cluster

            cluster = start_cluster()
            try:
                last, mean, share = measure(cluster.url, args.requests)
            finally:
                cluster.stop()
        print(f"\n{backend}: {mean:.1f} statements and transaction steps a request (mean of {args.requests}); "
              f"the last request's:")
        for number, statement in enumerate(last, 1):
            print(f"  {number:2}. {statement}")
        print(f"  each statement, in how many of the {args.requests} requests:")
        for statement, seen in share.most_common():
            print(f"  {seen:4}  {statement}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
