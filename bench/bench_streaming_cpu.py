"""Where streaming's CPU per record goes at N active streaming segments, in process (issue 15).

    .venv/bin/python bench/bench_streaming_cpu.py prepare DIR [--backend sqlite|postgresql]
                                                  [--segments 500] [--people 300] [--held 400]
    .venv/bin/python bench/bench_streaming_cpu.py measure DIR [--passes 3] [--cprofile FILE]
    (put another checkout's ``cdp/`` first on PYTHONPATH to measure it with the same script and data)

``prepare``: bench_streaming.py's data — bench_ingest.event_stream(people × 5), every record but
the last ``--held`` loaded (requests of 500) into two sandboxes, then bench_segments.shapes(N)
saved active and streaming in one of them, and the due wave that saving starts run to its end —
through the app in process (TestClient). SQLite: the database file is kept in DIR; PostgreSQL: a
cluster's data directory is kept in DIR (stopped; ``measure`` starts it, copies the database as a
template, and stops it).

``measure``: on a copy of the prepared database, the held-back records one per request, as the
records route does (``service.ingest_records`` in ``write_transaction``, committed, the app's
metrics on) on this thread, alternately into the sandbox without segments and the one with N,
``--passes`` times (each pass on a fresh copy), after ``--warmup`` records per sandbox not counted
(the plan built, the predicates compiled). Reported per record: this thread's CPU
(``time.thread_time``) in each sandbox, their ratio, and at N the streaming CPU split into
exclusive phases (a phase's figure leaves out the phases it calls): choosing the segments (the
plan's selection and the relevance screen, polarity), the one read's statement (the driver) and
building the profile from its rows, the predicates, the next instants, the write's Python and its
statements, the per-segment metrics (``--plain``: without the phases' timers, whose own cost
lands in the phases that call the timed functions). ``--cprofile FILE``: cProfile over the N sandbox's requests
of the last pass (pstats file, thread CPU as its timer; the phases' timers off).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import cdp.dsl  # noqa: E402,F401 - cdp.schema must not be imported first (import cycle)
from _common import ExclusivePhases  # noqa: E402

ADMIN = "cdp_benchadmin1_" + "S" * 40


class Phases(ExclusivePhases):
    """The exclusive phases, off until the measured sandbox's records, and streaming's statements
    and rows by their first words."""

    def __init__(self) -> None:
        super().__init__(on=False)
        self.statements: dict[str, int] = defaultdict(int)
        self.rows: dict[str, int] = defaultdict(int)


def instrument(phases: Phases, engine) -> None:
    import sqlalchemy as sa

    from cdp.observability import metrics
    from cdp.profiles import documents
    from cdp.segments import relevance, streaming, streaming_plan
    from cdp.storage import memberships

    wrapped = [
        (streaming.StreamingEvaluator, "profile_changed", "streaming: profile_changed (own)"),
        (streaming_plan.StreamingPlan, "relevant", "streaming: choose: relevance screen (events converted)"),
        (relevance.Screen, "keep", "streaming: choose: relevance screen (Screen.keep)"),
        (streaming_plan.StreamingPlan, "selection", "streaming: choose: selection by type"),
        (streaming.StreamingEvaluator, "_unchangeable", "streaming: choose: polarity"),
        (streaming.StreamingEvaluator, "_evaluate", "streaming: the loop over the segments (own)"),
        (streaming, "_load_with_state", "streaming: read (Python around the statement)"),
        (documents, "profile_from_rows", "streaming: read: profile built from its rows"),
        (streaming, "next_change", "streaming: next instants"),
        (streaming, "earliest_change", "streaming: next instants"),
        (streaming, "earliest_merged", "streaming: next instants"),
        (streaming_plan.StreamingPlan, "merged_timing", "streaming: next instants"),
        (streaming.StreamingEvaluator, "_write", "streaming: write (Python)"),
        (memberships, "write_profile", "streaming: write (Python)"),
        (metrics.Metrics, "evaluated", "streaming: per-segment metrics"),
        (metrics.Metrics, "streaming_profile", "streaming: per-segment metrics"),
    ]
    for owner, name, phase in wrapped:
        phases.wrap(owner, name, phase)
    del relevance
    original_predicate = streaming_plan.StreamingPlan.predicate

    def timer(found):
        def timed(*args):
            phases.enter("streaming: predicates")
            try:
                return found(*args)
            finally:
                phases.leave()
        return timed

    def predicate(self, i):
        return timer(original_predicate(self, i))
    streaming_plan.StreamingPlan.predicate = predicate
    # a plan built with its predicates compiled (session 14) calls them from its list: time those
    original_init = streaming_plan.StreamingPlan.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if isinstance(getattr(self, "predicates", None), list):
            self.predicates = [None if found is None else timer(found) for found in self.predicates]
    streaming_plan.StreamingPlan.__init__ = init

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        top = phases.stack[-1][0] if phases.stack else ""
        if phases.on and threading.get_ident() == phases.thread and top.startswith("streaming"):
            shape = " ".join(statement.split())[:70]
            phases.statements[shape] += 1
            phases.rows[shape] += len(parameters) if executemany else 1
        if top.startswith("streaming"):  # streaming's statements: the read apart from the writes
            kind = "read" if statement.lstrip().upper().startswith("SELECT") else "writes"
            phases.enter(f"streaming: statements (driver): {kind}")
        else:
            phases.enter("statements (driver)")

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(*_args, **_kwargs):
        phases.leave()


def app_client(url: str):
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from cdp.settings import Settings

    client = TestClient(create_app(Settings(database_url=url, bootstrap_admin_key=ADMIN)))
    client.__enter__()
    return client


def prepare(args) -> None:
    import bench_ingest as bi
    from bench_segments import shapes

    from cdp.segments.due import run_due
    from cdp.storage.database import write_transaction

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    cluster = None
    if args.backend == "postgresql":
        from cdp.devtools.postgres import start_cluster

        cluster = start_cluster()
        url = cluster.create_database("prepared")
    else:
        url = f"sqlite:///{directory / 'prepared.db'}"
    stream = bi.event_stream(args.people * 5, bi.SEED)
    seed_records, held = stream[:-args.held], stream[-args.held:]
    (directory / "held.json").write_text(json.dumps(held))
    client = app_client(url)
    started = time.perf_counter()
    made = {}
    for count in (0, args.segments):
        sandbox = f"streaming-{count}"
        headers = {"Authorization": f"Bearer {ADMIN}", "X-Sandbox": sandbox}
        assert client.post("/v1/sandboxes", json={"name": sandbox}, headers=headers).status_code == 201
        dataset = client.post("/v1/datasets", json={"name": "web events", "kind": "event"}, headers=headers).json()["id"]
        for body, _ in bi.encode_requests(seed_records, 500):
            response = client.post(f"/v1/datasets/{dataset}/records", content=body,
                                   headers={**headers, "Content-Type": "application/json"})
            assert response.status_code == 200, response.text[:300]
        for key, text in shapes(count).items():
            response = client.post("/v1/segments", headers=headers, json={
                "key": key, "name": key, "expression": text, "status": "active", "evaluation": "streaming"})
            assert response.status_code == 201, response.text[:300]
        made[count] = (sandbox, dataset)
        print(f"prepared {sandbox}: {len(seed_records)} records, {count} segments, {time.perf_counter() - started:.0f} s")
    from datetime import UTC, datetime

    engine = client.app.state.engine
    while run_due(lambda: write_transaction(engine), now=datetime.now(UTC)):
        pass
    print(f"due wave done, {time.perf_counter() - started:.0f} s")
    client.__exit__(None, None, None)
    (directory / "made.json").write_text(json.dumps({"backend": args.backend, "made": made,
                                                      "segments": args.segments}))
    if cluster is not None:
        cluster._run(str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.directory / "data"), "-m", "fast", "-w", "stop")
        shutil.copytree(cluster.directory / "data", directory / "pgdata")
        cluster.stop()


def measure(args) -> None:
    from datetime import UTC, datetime

    import bench_ingest as bi

    import cdp
    from cdp.ingestion import service
    from cdp.storage.database import commit_now, write_transaction

    directory = Path(args.dir)
    info = json.loads((directory / "made.json").read_text())
    made = {int(k): v for k, v in info["made"].items()}
    held = json.loads((directory / "held.json").read_text())
    bodies = [json.loads(body) for body, _ in bi.encode_requests(held, 1)]
    count = info["segments"]
    print(f"cdp from {Path(cdp.__file__).parent}; {info['backend']}; load {open('/proc/loadavg').read().split()[:3]}")
    totals: dict[int, list[float]] = {0: [], count: []}
    evaluated: list[float] = []
    phases_sum: dict[str, float] = defaultdict(float)
    for pass_ in range(args.passes):
        work = Path(tempfile.mkdtemp(prefix="streaming-cpu-", dir=args.scratch))
        cluster = None
        try:
            if info["backend"] == "postgresql":
                shutil.copytree(directory / "pgdata", work / "data")
                cluster = _start_copy(work)
                url = cluster.url.rsplit("/", 1)[0] + "/prepared"
            else:
                shutil.copy(directory / "prepared.db", work / "prepared.db")
                url = f"sqlite:///{work / 'prepared.db'}"
            client = app_client(url)
            engine = client.app.state.engine
            metrics = client.app.state.metrics
            phases = Phases()
            if not (args.cprofile or args.plain):
                instrument(phases, engine)
            from cdp.api.process import tune_gc
            tune_gc()
            collected = {0: 0.0, count: 0.0}
            collecting = [None, 0.0]

            def _gc(phase, info, collecting=collecting):
                if collecting[0] is None or threading.get_ident() != phases.thread:
                    return
                if phase == "start":
                    collecting[1] = time.thread_time()
                else:
                    collected[collecting[0]] += time.thread_time() - collecting[1]
            gc.callbacks.append(_gc)
            spent = {0: 0.0, count: 0.0}
            profiler = cProfile.Profile(time.thread_time) if args.cprofile and pass_ == args.passes - 1 else None
            for segments in (0, count):  # warm-up, not counted: the plan built, the predicates compiled
                sandbox, dataset = made[segments]
                for body in bodies[:args.warmup]:
                    with write_transaction(engine) as connection:
                        service.ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset,
                                               body=body, metrics=metrics, clock=lambda: datetime.now(UTC))
                        commit_now(connection)
            before_evaluations = _evaluations(metrics, made[count][0])
            tallies_before = {key: (tally[0], tally[1]) for key, tally in metrics.segment_evaluations._tallies.items()}
            for start in range(args.warmup, len(bodies), 50):  # alternating in blocks of 50 records
                for segments in ((0, count) if (start // 50) % 2 == 0 else (count, 0)):
                    sandbox, dataset = made[segments]
                    for body in bodies[start:start + 50]:
                        phases.on = segments == count
                        if profiler is not None and segments == count:
                            profiler.enable()
                        collecting[0] = segments
                        t0 = time.thread_time()
                        with write_transaction(engine) as connection:
                            answer = service.ingest_records(connection=connection, sandbox=sandbox,
                                                            dataset_id=dataset, body=body, metrics=metrics,
                                                            clock=lambda: datetime.now(UTC))
                            commit_now(connection)
                        spent[segments] += time.thread_time() - t0
                        collecting[0] = None
                        if profiler is not None:
                            profiler.disable()
                        phases.on = False
                        assert answer.accepted == 1, answer
            measured = len(bodies) - args.warmup
            evaluated.append((_evaluations(metrics, made[count][0]) - before_evaluations) / measured)
            for segments in spent:
                totals[segments].append(spent[segments] / measured * 1000)
            for phase, seconds in phases.cpu.items():
                phases_sum[phase] += seconds
            gc.callbacks.remove(_gc)
            print(f"pass {pass_ + 1}: of which the garbage collector none {collected[0] / measured * 1000:.3f}, "
                  f"{count} {collected[count] / measured * 1000:.3f}")
            print(f"pass {pass_ + 1}: CPU ms/record none {totals[0][-1]:.3f}, {count} {totals[count][-1]:.3f}, "
                  f"ratio {totals[0][-1] / totals[count][-1]:.3f}×; segments evaluated/record {evaluated[-1]:.1f}; "
                  f"load {open('/proc/loadavg').read().split()[0]}")
            if profiler is not None:
                profiler.dump_stats(args.cprofile)
            if args.by_kind and pass_ == args.passes - 1:  # shapes(N): segment i is of kind i % 10
                kinds: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
                for (sandbox, segment), tally in metrics.segment_evaluations._tallies.items():
                    if sandbox == made[count][0] and segment.startswith("seg-"):
                        was = tallies_before.get((sandbox, segment), (0, 0.0))
                        kinds[int(segment[4:]) % 10][0] += tally[0] - was[0]
                        kinds[int(segment[4:]) % 10][1] += tally[1] - was[1]
                for kind, (evaluations, seconds) in sorted(kinds.items()):
                    print(f"    kind {kind}: {evaluations / measured:5.1f} evaluations a record, "
                          f"{seconds / max(evaluations, 1) * 1e6:5.1f} µs each (wall, the server's own histogram)")
            client.__exit__(None, None, None)
        finally:
            if cluster is not None:
                cluster.stop()
            shutil.rmtree(work, ignore_errors=True)
    n = (len(bodies) - args.warmup) * args.passes
    if phases_sum:
        print(f"{count} segments, exclusive thread CPU per record (µs), over {args.passes} passes:")
        for phase, seconds in sorted(phases_sum.items(), key=lambda item: -item[1]):
            print(f"    {phase:<62} {seconds / n * 1e6:8.1f}")
        streaming = sum(s for p, s in phases_sum.items() if p.startswith("streaming"))
        print(f"    {'streaming, all':<62} {streaming / n * 1e6:8.1f}")
        print("streaming's statements per record (rows per record), last pass:")
        for shape, calls in sorted(phases.statements.items(), key=lambda item: -item[1]):
            print(f"    {calls / (n / args.passes):5.2f} ({phases.rows[shape] / (n / args.passes):5.2f})  {shape}")
    med = {k: sorted(v)[len(v) // 2] for k, v in totals.items()}
    print(f"median: none {med[0]:.3f} ms, {count} {med[count]:.3f} ms, ratio {med[0] / med[count]:.3f}× "
          f"(extra {med[count] - med[0]:.3f} ms/record)")


def _evaluations(metrics, sandbox: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    from prometheus_client import generate_latest

    total = 0.0
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == "cdp_streaming_evaluations_total" and sample.labels.get("sandbox") == sandbox:
                total += sample.value
    return total


def _start_copy(work: Path):
    """A cluster on a copy of the prepared data directory (a free port), as cdp.devtools.postgres starts one."""
    from cdp.devtools.postgres import Cluster, _free_port, find_bin_dir

    as_user = "postgres" if os.geteuid() == 0 else None
    if as_user:
        shutil.chown(work, user=as_user)
        for root, dirs, files in os.walk(work):
            for name in dirs + files:
                shutil.chown(os.path.join(root, name), user=as_user)
    port = _free_port()
    cluster = Cluster(directory=work, port=port, bin_dir=find_bin_dir(), as_user=as_user,
                      options=f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off "
                              f"-c synchronous_commit=off -c full_page_writes=off -c timezone=UTC")
    cluster.resume()
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dir")
    p.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--segments", type=int, default=500)
    p.add_argument("--people", type=int, default=300)
    p.add_argument("--held", type=int, default=400)
    m = sub.add_parser("measure")
    m.add_argument("dir")
    m.add_argument("--passes", type=int, default=3)
    m.add_argument("--cprofile")
    m.add_argument("--warmup", type=int, default=20, help="records per sandbox before measuring, not counted")
    m.add_argument("--scratch", default=None)
    m.add_argument("--plain", action="store_true", help="no phase timers: the CPU per record alone")
    m.add_argument("--by-kind", action="store_true", help="segments evaluated and µs each per kind of shapes(N)")
    args = parser.parse_args(argv)
    gc.freeze()
    (prepare if args.command == "prepare" else measure)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
