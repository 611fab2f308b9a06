"""Where a 500-record streaming request's server CPU goes, phase by phase, in process, on SQLite
and on PostgreSQL (a throwaway cluster).

    .venv/bin/python bench/bench_ingest_phases.py [--backend sqlite|postgresql|both] [--records 10000]
                                                  [--identity-people 4000]
    (put another checkout's ``cdp/`` first on PYTHONPATH to measure it with the same script)

What the records route does for each body, called on this thread (no HTTP stack): the body's JSON
decoded, ``service.ingest_records`` in one transaction, the COMMIT, the answer encoded
(``ingest_response_json``). Functions of each phase are wrapped in timers that count this
thread's CPU (``time.thread_time``) **exclusively**: a phase's figure leaves out the phases it
calls, and the database driver's calls (``before/after_cursor_execute``: the statement sent, run —
SQLite in this process — and its reply read) are a phase of their own, so the phases add up to the
whole. On PostgreSQL the cluster's CPU (/proc of the postmaster and its children) is given beside.
Two streams, both bench_ingest.py's: Luma event records (``event_stream``) and the identity-graph
stream (``identity_stream``: 5 events a person, one or two of three identities a record, profiles
link and merge); the identity stream's profiles are checked against its union-find.
``--profile-records N``: also N Luma profile records (bench_ingest_cpu.py's ``profile_records``: three
identities and ~20 attributes each) into a profile dataset of a sandbox of their own — every record
a new person — then the same records into a second profile dataset of that sandbox: every record
lands on a stored profile whose attributes already have a source, so the policy is applied again
over both datasets' rows. ``--request N``: records per request (default 500; 1 = one record a
request).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import cdp.dsl  # noqa: E402,F401 - cdp.schema must not be imported first (import cycle)
from _common import ExclusivePhases  # noqa: E402
from bench_ingest import event_stream, identity_stream  # noqa: E402

REQUEST = 500  # records per request (--request)


def instrument(phases: ExclusivePhases, engine) -> None:
    """The phases' functions wrapped (where this checkout has them)."""
    import sqlalchemy as sa

    from cdp.identity import graph, merging, owners
    from cdp.ingestion import service, validation, writer
    from cdp.ingestion import models as ingest_models
    from cdp.segments import membership, streaming
    from cdp.storage import bulk

    wrapped = [
        (service, "validate_record", "validation"),
        (writer.Writer, "normalized_identities", "validation"),
        (graph.IdentityGraph, "resolve_many", "identity resolution"),
        (graph, "merge_profiles", "identity resolution: merges"),
        (graph, "apply_policy_many", "attribute merge"),
        (writer, "record_attributes_many", "attribute merge"),
        (writer, "insert_events", "event rows (the insert's Python)"),
        (streaming.StreamingEvaluator, "profile_changed", "streaming hook"),
        (membership.MembershipRefresher, "refresh", "streaming hook"),
        (ingest_models, "ingest_response_json", "response"),
        (service, "ingest_config_and_plan_version", "config read"),
    ]
    for owner, name, phase in wrapped:
        if hasattr(owner, name):
            phases.wrap(owner, name, phase)
    del validation, owners, bulk, merging

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(*_args, **_kwargs):
        phases.enter("statements (driver: send, run, reply)")

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(*_args, **_kwargs):
        phases.leave()

    @sa.event.listens_for(engine, "handle_error")
    def _error(context):
        stack = phases._stack()
        if stack and stack[-1][0].startswith("statements"):
            phases.leave()


def cluster_cpu(postmaster_pid: int | None) -> float:
    """CPU seconds of the PostgreSQL cluster: the postmaster and its children (/proc)."""
    if postmaster_pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == postmaster_pid or ppid == postmaster_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def engine_of(client):
    return client.app.state.engine


def run(backend: str, records_count: int, people: int, statements: bool = False, profile_count: int = 0,
        top: int = 14) -> None:
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from cdp.api.process import tune_gc
    from cdp.ingestion import service
    from cdp.settings import Settings
    from cdp.storage.database import commit_now, write_transaction

    admin = "cdp_benchadmin1_" + "B" * 40
    cluster, postmaster = None, None
    folder = tempfile.mkdtemp(prefix="phases-")
    if backend == "postgresql":
        from cdp.devtools.postgres import start_cluster

        cluster = start_cluster(extra_options=(
            "-c shared_preload_libraries=pg_stat_statements,auto_explain -c pg_stat_statements.track=all "
            + (f"-c auto_explain.log_min_duration={os.environ['AUTO_EXPLAIN_MS']} -c auto_explain.log_analyze=on "
               "-c auto_explain.log_nested_statements=on" if os.environ.get("AUTO_EXPLAIN_MS") else "")
            if statements else ""))
        url = cluster.url
        postmaster = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    else:
        url = f"sqlite:///{folder}/bench.db"
    try:
        client = TestClient(create_app(Settings(database_url=url, bootstrap_admin_key=admin)))
        client.__enter__()
        tune_gc()
        if cluster is not None and statements:
            with engine_of(client).begin() as c:
                c.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        engine = client.app.state.engine
        phases = ExclusivePhases()
        instrument(phases, engine)
        from cdp.ingestion import models as ingest_models

        streams = [("events", event_stream(records_count, seed=100), None, "event", "events")] if records_count else []
        if people:
            identity_records, components, _, _ = identity_stream(people, seed=7)
            streams.append(("identity graph", identity_records, components[-1], "event", "identity-graph"))
        if profile_count:
            from bench_ingest_cpu import profile_records

            people_records = profile_records(profile_count, seed=200)
            streams.append(("profile records, new people", people_records, None, "profile", "profiles"))
            streams.append(("profile records, the same people again (a second dataset)", people_records, None,
                            "profile", "profiles"))
        made: set[str] = set()
        for name, records, expected, kind, sandbox in streams:
            headers = {"Authorization": f"Bearer {admin}", "X-Sandbox": sandbox}
            if sandbox not in made:
                assert client.post("/v1/sandboxes", json={"name": sandbox}, headers=headers).status_code == 201
                made.add(sandbox)
            response = client.post("/v1/datasets", json={"name": name[:60], "kind": kind}, headers=headers)
            dataset = response.json()["id"]
            bodies = [json.dumps({"records": records[i:i + REQUEST]}).encode()
                      for i in range(0, len(records), REQUEST)]
            phases.cpu.clear()
            gc.collect()
            if cluster is not None and statements:
                with engine.connect() as c:
                    c.exec_driver_sql("SELECT pg_stat_statements_reset()")
            db_start, start, wall = cluster_cpu(postmaster), time.thread_time(), time.perf_counter()
            accepted = 0
            for body in bodies:
                phases.enter("JSON parse")
                decoded = json.loads(body)
                phases.leave()
                phases.enter("service (the rest: rows, results, checks)")
                with write_transaction(engine) as connection:  # as the route's (SQLite: its writer lock)
                    answer = service.ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset,
                                                    body=decoded)
                    phases.enter("commit")
                    commit_now(connection)
                    phases.leave()
                phases.leave()
                ingest_models.ingest_response_json(answer)
                accepted += answer.accepted + answer.duplicates
            total = time.thread_time() - start
            wall = time.perf_counter() - wall
            db = cluster_cpu(postmaster) - db_start
            n = len(records)
            line = f"{backend}, {name}: {n:,} records in requests of {REQUEST}: server thread CPU {total / n * 1e6:.1f} µs a record"
            if cluster is not None:
                line += f", PostgreSQL CPU {db / n * 1e6:.1f} µs a record"
            line += f"; {n / wall:,.0f} records/s (wall, in process); accepted+duplicates {accepted:,}"
            print(line)
            for phase, seconds in sorted(phases.cpu.items(), key=lambda item: -item[1]):
                print(f"    {phase:<48} {seconds / n * 1e6:8.1f} µs a record")
            print(f"    {'(sum of phases)':<48} {sum(phases.cpu.values()) / n * 1e6:8.1f}")
            if cluster is not None and statements:
                with engine.connect() as c:
                    heaviest = c.exec_driver_sql(
                        "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) "
                        "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s", (top,)).all()
                for calls, ms, rows, query in heaviest:
                    print(f"      pg_stat_statements: {ms * 1000 / n:7.1f} µs a record, {calls:>6} calls, {rows:>7} rows: {query}")
                # row updates that stayed on their page (HOT: no index entry) — the counter's and the
                # touch's; cumulative since the cluster started (both streams' rows for the second)
                with engine.connect() as c:
                    c.exec_driver_sql("SELECT pg_stat_force_next_flush()")
                    c.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
                    for table, updated, hot in c.exec_driver_sql(
                            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                            "WHERE relname IN ('profiles', 'identities', 'identity_links') ORDER BY 1").all():
                        print(f"      updates of {table}: {updated:,}, of which HOT {hot:,}")
            if expected is not None:
                with engine.connect() as connection:
                    stored = connection.execute(sa.text("SELECT count(*) FROM profiles WHERE sandbox = :s"),
                                                {"s": sandbox}).scalar_one()
                print(f"    profiles {stored:,}, union-find {expected:,}: {'equal' if stored == expected else 'DIFFERENT'}")
                if stored != expected:
                    raise SystemExit("the identity graph's profiles differ from the union-find")
        client.__exit__(None, None, None)
    finally:
        if cluster is not None:
            if os.environ.get("AUTO_EXPLAIN_MS"):
                import shutil
                shutil.copy(cluster.directory / "log", "/tmp/phases-pg.log")
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--records", type=int, default=10000, help="Luma event records")
    parser.add_argument("--identity-people", type=int, default=4000, help="people of the identity stream (0: none)")
    parser.add_argument("--profile-records", type=int, default=0,
                        help="also this many Luma profile records: new people, then the same people again")
    parser.add_argument("--request", type=int, default=REQUEST, help="records per request (default 500)")
    parser.add_argument("--statements", action="store_true",
                        help="PostgreSQL: pg_stat_statements' top statements by execution time, per stream")
    parser.add_argument("--top", type=int, default=14, help="--statements: how many (nested ones included)")
    args = parser.parse_args(argv)
    import cdp

    globals()["REQUEST"] = args.request
    print(f"cdp from {Path(cdp.__file__).parent}; load {open('/proc/loadavg').read().split()[:3]}")
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        run(backend, args.records, args.identity_people, args.statements, args.profile_records, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
