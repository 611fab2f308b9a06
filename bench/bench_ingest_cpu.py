"""Streaming ingestion's CPU per record, in process: where a 500-record request spends its time.

    bash bench/run_ingest_cpu.sh [--records 5000] [--rounds 2] [--profile]
    (or: .venv/bin/python bench/bench_ingest_cpu.py …; put another checkout's ``cdp/`` first on
    PYTHONPATH to measure it with the same script)

The app (``cdp.api.create_app``) on a fresh SQLite file, called through FastAPI's TestClient in
this process, so the figures include the route, the service, SQLite and the response's
serialisation but not a socket (the client's own encoding of the body is done before the clock).
Records: bench_ingest.py's Luma event records (``event_stream``), each POSTed once, in requests of
500, into an event dataset; then Luma profile records (identities and attributes) into a profile
dataset. Reported per record (``time.process_time``, this process's CPU): the whole request, and
the parts a 500-record request pays per record outside the database — validation alone
(``validate_record`` over the same records, in a loop) and the response's serialisation alone
(the route's answer for 500 records encoded again, in a loop). ``--profile``: cProfile of one
round of the requests, the top functions by own time. ``--identity-people N``: also bench_ingest.py's
identity-graph stream (N people, 5 events each, one or two of their three identities a record, so
profiles link and merge as it goes) through the same route, its CPU per record, and its profiles
checked against the union-find. The garbage collector is tuned as ``cdp serve`` tunes it
(cdp/api/process.py) once the app is made.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import cdp.dsl  # noqa: E402,F401 - cdp.schema must not be imported first (import cycle)
from bench_ingest import event_stream, identity_stream  # noqa: E402

from cdp.api.process import tune_gc  # noqa: E402
from cdp.demo import generate_profiles  # noqa: E402

ADMIN_KEY = "cdp_benchadmin1_" + "B" * 40
REQUEST = 500


def profile_records(count: int, seed: int) -> list[dict]:
    """Luma profile records: the generated people's identities and attributes."""
    records = []
    for document in generate_profiles(count, seed=seed):
        records.append({"identities": document["identities"][:3], "attributes": document["attributes"]})
    return records[:count]


def bodies(records: list[dict]) -> list[bytes]:
    return [json.dumps({"records": records[i:i + REQUEST]}).encode() for i in range(0, len(records), REQUEST)]


class InProcess:
    """The app on an SQLite file in ``folder``, with a sandbox and an event and a profile dataset."""

    def __init__(self, folder: str):
        from fastapi.testclient import TestClient

        from cdp.api import create_app
        from cdp.settings import Settings

        settings = Settings(database_url=f"sqlite:///{folder}/bench.db", bootstrap_admin_key=ADMIN_KEY)
        self.client = TestClient(create_app(settings), raise_server_exceptions=True)
        self.client.__enter__()
        self.sandbox = "bench"
        self.headers = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Sandbox": self.sandbox,
                        "Content-Type": "application/json"}
        assert self.client.post("/v1/sandboxes", json={"name": self.sandbox}, headers=self.headers).status_code == 201
        self.datasets: dict[str, int] = {}

    def dataset(self, name: str, kind: str) -> int:
        response = self.client.post("/v1/datasets", json={"name": name, "kind": kind}, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def post_all(self, dataset: int, encoded: list[bytes]) -> int:
        accepted = 0
        for body in encoded:
            response = self.client.post(f"/v1/datasets/{dataset}/records", content=body, headers=self.headers)
            assert response.status_code == 200, response.text[:500]
            accepted += response.json()["accepted"]
        return accepted

    def direct(self, dataset: int, encoded: list[bytes]) -> None:
        """What the route does for each body, called on this thread (for cProfile): decode, ingest
        in one transaction, nothing of the HTTP stack."""
        from cdp.ingestion import service

        engine = self.client.app.state.engine
        for body in encoded:
            with engine.begin() as connection:
                service.ingest_records(connection=connection, sandbox=self.sandbox, dataset_id=dataset,
                                       body=json.loads(body))

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def cpu_per_record(action, records: int) -> float:
    gc.collect()
    start = time.process_time()
    action()
    return (time.process_time() - start) / records * 1e6


def validation_only(records: list[dict], kind: str, schema) -> float:
    from cdp.ingestion.validation import validate_record

    def run() -> None:
        for record in records:
            valid, errors = validate_record(record, kind, schema)
            assert valid is not None, errors
    return cpu_per_record(run, len(records))


def serialisation_only(app_client: InProcess, dataset: int, records: list[dict]) -> float:
    """The route's own answer for one 500-record request of duplicates (each record answered),
    encoded again 20 times the way the route encodes it."""
    from cdp.api.routes import ingestion as route
    from cdp.ingestion import service

    engine = app_client.client.app.state.engine
    with engine.begin() as connection:
        answer = service.ingest_records(connection=connection, sandbox=app_client.sandbox, dataset_id=dataset,
                                        body={"records": records[:REQUEST]})
    from cdp.ingestion import models

    encode = getattr(models, "ingest_response_json", None)
    if encode is None:  # before: FastAPI's own serialisation of the response model
        from fastapi.routing import serialize_response

        field = next(r for r in route.router.routes
                     if getattr(r, "path", "") == "/datasets/{dataset_id}/records").response_field
        import asyncio

        def encode(value):
            from starlette.responses import JSONResponse
            return JSONResponse(asyncio.run(serialize_response(field=field, response_content=value,
                                                               is_coroutine=False))).body

    def run() -> None:
        for _ in range(20):
            encode(answer)
    return cpu_per_record(run, 20 * REQUEST)


def identity_round(app: InProcess, people: int) -> None:
    """The identity-graph stream through the route: CPU per record; profiles == union-find."""
    import sqlalchemy as sa

    records, components, _, _ = identity_stream(people, seed=7)
    main_sandbox, main_headers = app.sandbox, app.headers
    app.sandbox, app.headers = "identity", {**app.headers, "X-Sandbox": "identity"}  # a sandbox of its own
    assert app.client.post("/v1/sandboxes", json={"name": app.sandbox}, headers=app.headers).status_code == 201
    dataset = app.dataset("identity graph", "event")
    encoded = bodies(records)
    cpu = cpu_per_record(lambda: app.post_all(dataset, encoded), len(records))
    with app.client.app.state.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT count(*) FROM profiles WHERE sandbox = :s"),
                                    {"s": app.sandbox}).scalar_one()
    app.sandbox, app.headers = main_sandbox, main_headers
    print(f"identity graph: {len(records):,} records ({people:,} people) in requests of {REQUEST}: "
          f"{cpu:.1f} µs/record; profiles {stored:,}, union-find {components[-1]:,} — "
          f"{'equal' if stored == components[-1] else 'DIFFERENT'}", flush=True)
    if stored != components[-1]:
        raise SystemExit("the identity graph's profiles differ from the union-find")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="event records per round (and profile records)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile the service called directly (after round 1)")
    parser.add_argument("--identity-people", type=int, default=0,
                        help="also the identity-graph stream of this many people (5 events each)")
    args = parser.parse_args(argv)
    import cdp

    print(f"cdp from {Path(cdp.__file__).parent}")
    from cdp.schema import luma_schema

    schema = luma_schema()
    with tempfile.TemporaryDirectory() as folder:
        app = InProcess(folder)
        tune_gc()
        try:
            if args.identity_people:
                identity_round(app, args.identity_people)
            for round_ in range(args.rounds):
                events = event_stream(args.records, seed=100 + round_)
                profiles = profile_records(args.records, seed=200 + round_)
                event_ds = app.dataset(f"events-{round_}", "event")
                profile_ds = app.dataset(f"profiles-{round_}", "profile")
                encoded_events, encoded_profiles = bodies(events), bodies(profiles)
                whole_events = cpu_per_record(lambda: app.post_all(event_ds, encoded_events), len(events))
                whole_profiles = cpu_per_record(lambda: app.post_all(profile_ds, encoded_profiles), len(profiles))
                print(f"round {round_ + 1}: µs/record — whole request: events {whole_events:.1f}, "
                      f"profiles {whole_profiles:.1f}; validation alone: events "
                      f"{validation_only(events, 'event', schema):.1f}, profiles "
                      f"{validation_only(profiles, 'profile', schema):.1f}; the response's serialisation alone "
                      f"{serialisation_only(app, event_ds, events):.2f}", flush=True)
                if args.profile and round_ == 0:
                    for kind, records in (("event", event_stream(args.records, seed=900)),
                                          ("profile", profile_records(args.records, seed=901))):
                        profiler = cProfile.Profile()
                        target = app.dataset(f"profiled-{kind}", kind)
                        encoded = bodies(records)
                        profiler.runcall(app.direct, target, encoded)
                        out = io.StringIO()
                        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                        print(f"cProfile, {kind} records, the service called directly:", out.getvalue()[-6000:])
        finally:
            app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
