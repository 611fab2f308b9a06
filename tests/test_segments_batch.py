"""Batch evaluation of saved segments in SQL (cdp/segments/batch.py), on SQLite and PostgreSQL:
the conformance suite saved as segments, a property test against the in-memory engine over
generated profiles and segments that reference each other, statuses across runs, and segment
references compiled once (SQL size linear in the number of segments)."""

from __future__ import annotations

import itertools
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import PqlError, check, render
from cdp.engine import compile_predicate, load_profile
from cdp.engine.sql import MAX_SEGMENT_DEPTH, SqlCompiler, members_query
from cdp.engine.profile import parse_timestamp
from cdp.schema import luma_schema
from cdp.segments import batch, jobs, service
from cdp.segments.models import SegmentCreate, SegmentStatus
from cdp.engine.sql.loading import load_documents
from cdp.storage.models import events, membership_changes, memberships, profiles, segment_history, segments
from cdp.storage.models import segment_jobs as segment_jobs_table
from tests.strategies import segments as generated_segments
from tests.test_differential import profiles as generated_profiles

AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
CONFORMANCE = Path(__file__).parent / "conformance"
CASES = tomllib.loads((CONFORMANCE / "cases.toml").read_text(encoding="utf-8"))["case"]
DOCUMENTS = [__import__("json").loads(line) for line in (CONFORMANCE / "profiles.jsonl").read_text().splitlines()
             if line.strip()]
SANDBOXES = (f"b{i}" for i in itertools.count())
CONFORMANCE_DATASETS = {"prod": DOCUMENTS, **{p.stem.removeprefix("profiles_"): [
    __import__("json").loads(line) for line in p.read_text().splitlines() if line.strip()]
    for p in sorted(CONFORMANCE.glob("profiles_*.jsonl"))}}
SCHEMA = luma_schema()


def save(connection, sandbox: str, key: str, expression: str, status: str = "draft") -> None:
    """Save without the on-save evaluation (drafts are not evaluated), then set the status."""
    service.create_segment(connection=connection, sandbox=sandbox, schema=SCHEMA, spec=SegmentCreate(
        key=key, name=key, expression=expression, status=SegmentStatus.draft))
    if status != "draft":
        connection.execute(segments.update().where(segments.c.sandbox == sandbox, segments.c.key == key)
                           .values(status=status))


def run(engine, sandbox: str, as_of: datetime, keys: list[str] | None = None):
    with engine.begin() as connection:
        job = jobs.create_job(connection=connection, sandbox=sandbox, keys=keys)
    done = jobs.run_job(engine, job.id, as_of=as_of)
    assert done.status.value == "succeeded", done.message
    return done


def member_ids(connection, sandbox: str, key: str) -> list[str]:
    return list(connection.execute(
        sa.select(profiles.c.external_id).select_from(memberships.join(profiles, profiles.c.pk == memberships.c.profile_pk)
                                                      .join(segments, segments.c.pk == memberships.c.segment_pk))
        .where(segments.c.sandbox == sandbox, segments.c.key == key, memberships.c.status.in_(["realized", "existing"]))
        .order_by(profiles.c.pk)).scalars())


# ---- the conformance suite, saved as segments and run as one batch job ----------------------------


def test_conformance_cases_as_saved_segments(migrated_engine):
    """Every conformance case (with its as_of and its catalogue) saved as a segment: a batch run
    writes exactly the expected members."""
    plain = [c for c in CASES if "expected" in c and "segments" not in c]
    groups: dict[tuple[str, str], list[dict]] = {}
    for case in plain:  # one sandbox per as_of and dataset (`dataset = "NAME"`: profiles_NAME.jsonl)
        groups.setdefault((case.get("as_of", ""), case.get("dataset", "prod")), []).append(case)
    for (as_of_text, dataset), cases in groups.items():
        sandbox = next(SANDBOXES)
        with migrated_engine.begin() as connection:
            load_documents(connection, CONFORMANCE_DATASETS[dataset], sandbox=sandbox)
            for case in cases:
                save(connection, sandbox, case["name"][:128], case["expression"], status="active")
        run(migrated_engine, sandbox, parse_timestamp(as_of_text) if as_of_text else AS_OF)
        with migrated_engine.connect() as connection:
            for case in cases:
                assert member_ids(connection, sandbox, case["name"][:128]) == case["expected"], case["name"]
    for case in [c for c in CASES if "expected" in c and "segments" in c]:
        sandbox = next(SANDBOXES)
        with migrated_engine.begin() as connection:
            load_documents(connection, DOCUMENTS, sandbox=sandbox)
            graph = {k: check(v, SCHEMA) for k, v in case["segments"].items()}
            for key in batch.dependency_order({k: {r for r in _refs(t)} for k, t in graph.items()}):
                save(connection, sandbox, key, case["segments"][key], status="active")
            save(connection, sandbox, "the-case", case["expression"], status="active")
        run(migrated_engine, sandbox, parse_timestamp(case["as_of"]) if "as_of" in case else AS_OF)
        with migrated_engine.connect() as connection:
            assert member_ids(connection, sandbox, "the-case") == case["expected"], case["name"]


def _refs(tree) -> set[str]:
    from cdp.dsl import ast

    return ast.segment_references(tree)


# ---- batch = in memory, over generated profiles and segments that reference each other -----------

PLAIN_CONFORMANCE = sorted({c["expression"] for c in CASES if "expected" in c and "segments" not in c})
BASE = {"vip": 'loyalty.tier = "gold"', "churn-risk": "not email_opt_in"}


@pytest.fixture(scope="module")
def both_engines(sqlite_url_factory, postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    made = [create_engine(sqlite_url_factory()), create_engine(postgres_url_factory())]
    for engine in made:
        upgrade(engine)
    yield made
    for engine in made:
        engine.dispose()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(first=generated_segments, second=generated_segments, conformance=st.sampled_from(PLAIN_CONFORMANCE),
       documents=generated_profiles)
def test_batch_members_equal_the_in_memory_verdicts(both_engines, first, second, conformance, documents):
    catalogue = {**BASE, "g1": render(first), "g2": render(second), "c1": conformance,
                 "r1": 'in segment "g1" and not in segment "c1"',
                 "r2": 'in segment "r1" or in segment "g2" or (in segment "vip" and in segment "r1")',
                 "r3": 'not in segment "r2" and (in segment "churn-risk" or in segment "g1")'}
    loaded = [load_profile(d, allowed_values=False) for d in documents]  # generated values, stored as they are
    expected = {}
    for key, text in catalogue.items():
        predicate = compile_predicate(text, segments=catalogue)
        expected[key] = [p.id for p in loaded if predicate(p, AS_OF)]
    for engine in both_engines:
        sandbox = next(SANDBOXES)
        with engine.begin() as connection:
            load_documents(connection, loaded, sandbox=sandbox)
            for key, text in catalogue.items():
                save(connection, sandbox, key, text, status="active")
        run(engine, sandbox, AS_OF)
        with engine.connect() as connection:
            for key in catalogue:
                got = member_ids(connection, sandbox, key)
                assert got == expected[key], f"{engine.dialect.name}: {key} = {catalogue[key]}"


# ---- statuses across runs: enter, stay, exit, re-enter ---------------------------------------------


def test_statuses_across_runs(migrated_engine):
    sandbox = next(SANDBOXES)
    t0 = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
    documents = [{"id": "buyer", "events": [{"id": "x1", "type": "purchase", "timestamp": t0.isoformat()}]},
                 {"id": "browser", "events": [{"id": "x2", "type": "pageView", "timestamp": t0.isoformat()}]}]
    with migrated_engine.begin() as connection:
        load_documents(connection, documents, sandbox=sandbox)
        save(connection, sandbox, "recent-buyers", 'exists event where type = "purchase" within last 1 day',
             status="active")
    rows = {}

    def state():
        with migrated_engine.connect() as connection:
            found = connection.execute(sa.select(memberships.c.status, memberships.c.entered_at,
                                                 memberships.c.exited_at).join(segments).join(profiles)
                                       .where(segments.c.sandbox == sandbox, profiles.c.external_id == "buyer")).all()
            assert len(found) == 1
            return found[0]

    job = run(migrated_engine, sandbox, t0 + timedelta(hours=1))
    assert job.counts["recent-buyers"].model_dump() == {"realized": 1, "existing": 0, "exited": 0}
    rows[1] = state()
    assert (rows[1].status, rows[1].entered_at, rows[1].exited_at) == ("realized", t0 + timedelta(hours=1), None)

    job = run(migrated_engine, sandbox, t0 + timedelta(hours=2))
    assert job.counts["recent-buyers"].model_dump() == {"realized": 0, "existing": 1, "exited": 0}
    rows[2] = state()
    assert (rows[2].status, rows[2].entered_at) == ("existing", t0 + timedelta(hours=1))

    job = run(migrated_engine, sandbox, t0 + timedelta(days=2))
    assert job.counts["recent-buyers"].model_dump() == {"realized": 0, "existing": 0, "exited": 1}
    rows[3] = state()
    assert (rows[3].status, rows[3].exited_at) == ("exited", t0 + timedelta(days=2))

    job = run(migrated_engine, sandbox, t0 + timedelta(days=2, hours=1))  # still out: nothing rewritten
    assert job.counts["recent-buyers"].model_dump() == {"realized": 0, "existing": 0, "exited": 0}
    assert state() == rows[3]

    with migrated_engine.begin() as connection:
        buyer = connection.execute(sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox,
                                                                  profiles.c.external_id == "buyer")).scalar_one()
        connection.execute(events.insert().values(profile_pk=buyer, event_id="x3", type="purchase",
                                                  ts=t0 + timedelta(days=3), fields={}))
    job = run(migrated_engine, sandbox, t0 + timedelta(days=3, hours=1))
    assert job.counts["recent-buyers"].model_dump() == {"realized": 1, "existing": 0, "exited": 0}
    again = state()
    assert (again.status, again.entered_at, again.exited_at) == ("realized", t0 + timedelta(days=3, hours=1), None)

    with migrated_engine.connect() as connection:
        changes = connection.execute(sa.select(membership_changes.c.profile_id, membership_changes.c.status,
                                               membership_changes.c.at, membership_changes.c.segment_key)
                                     .where(membership_changes.c.sandbox == sandbox)
                                     .order_by(membership_changes.c.pk)).all()
        history = connection.execute(sa.select(segment_history.c.at, segment_history.c.size, segment_history.c.entered,
                                               segment_history.c.exited).join(segments)
                                     .where(segments.c.sandbox == sandbox).order_by(segment_history.c.at)).all()
    assert [tuple(c) for c in changes] == [
        ("buyer", "entered", t0 + timedelta(hours=1), "recent-buyers"),
        ("buyer", "exited", t0 + timedelta(days=2), "recent-buyers"),
        ("buyer", "entered", t0 + timedelta(days=3, hours=1), "recent-buyers")]
    assert [tuple(h) for h in history] == [
        (t0 + timedelta(hours=1), 1, 1, 0), (t0 + timedelta(hours=2), 1, 0, 0),
        (t0 + timedelta(days=2), 0, 0, 1), (t0 + timedelta(days=2, hours=1), 0, 0, 0),
        (t0 + timedelta(days=3, hours=1), 1, 1, 0)]


def test_segments_of_segments_run_in_dependency_order(migrated_engine):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        save(connection, sandbox, "z-base", 'loyalty.tier in ["gold", "silver"]', status="active")
        save(connection, sandbox, "m-middle", 'in segment "z-base" and loyalty.points > 100', status="active")
        save(connection, sandbox, "a-top", 'in segment "m-middle" or in segment "z-base"', status="active")
        rows = connection.execute(sa.select(segments).where(segments.c.sandbox == sandbox)).all()
        graph = service.reference_graph(connection, sandbox)
    assert [r.key for r in batch.ordered(rows, graph)] == ["z-base", "m-middle", "a-top"]
    run(migrated_engine, sandbox, AS_OF)
    loaded = [load_profile(d) for d in DOCUMENTS]
    catalogue = {r.key: r.expression for r in rows}
    with migrated_engine.connect() as connection:
        for key, text in catalogue.items():
            predicate = compile_predicate(text, segments=catalogue)
            assert member_ids(connection, sandbox, key) == [p.id for p in loaded if predicate(p, AS_OF)], key


def test_a_job_of_named_segments_leaves_the_others_alone(migrated_engine):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        save(connection, sandbox, "gold", 'loyalty.tier = "gold"', status="active")
        save(connection, sandbox, "optin", "email_opt_in", status="active")
        save(connection, sandbox, "drafted", "email_opt_in")
    job = run(migrated_engine, sandbox, AS_OF, keys=["gold"])
    assert set(job.counts) == {"gold"}
    with migrated_engine.begin() as connection:  # a named segment brings the active segments it uses
        save(connection, sandbox, "gold-optin", 'in segment "gold" and in segment "optin"', status="active")
    job = run(migrated_engine, sandbox, AS_OF, keys=["gold-optin"])
    assert set(job.counts) == {"gold", "optin", "gold-optin"}
    job = run(migrated_engine, sandbox, AS_OF)
    assert set(job.counts) == {"gold", "optin", "gold-optin"}  # drafts are never evaluated
    with migrated_engine.connect() as connection:
        assert member_ids(connection, sandbox, "drafted") == []


# ---- references compiled once ------------------------------------------------------------------


def layered(depth: int, width: int) -> dict[str, str]:
    """``depth`` layers of ``width`` segments; each segment references two of the layer below,
    one of them twice (so an inlined definition would triple at every layer)."""
    catalogue = {f"s0_{i}": f'loyalty.tier = "gold" or loyalty.points > {100 * i}' for i in range(width)}
    for layer in range(1, depth):
        for i in range(width):
            a, b = f"s{layer - 1}_{i}", f"s{layer - 1}_{(i + 1) % width}"
            catalogue[f"s{layer}_{i}"] = (f'(loyalty.points > {layer} and in segment "{a}") or '
                                          f'(in segment "{a}" and email_opt_in) or (in segment "{b}" and '
                                          f'email_opt_in is null)')
    return catalogue


def test_sql_of_a_reference_chain_grows_linearly():
    """One statement (estimates, `cdp evaluate --backend postgresql`): each referenced segment is
    one CTE, however often and however deep it is referenced."""
    from sqlalchemy.dialects import postgresql

    sizes, times = {}, {}
    for depth in (4, 8, 16):
        catalogue = layered(depth, width=3)
        # CPU time of this process, not wall time: the bound is about exponential growth (minutes),
        # and a loaded machine must not fail it by descheduling us.
        started = time.process_time()
        query = members_query(f'in segment "s{depth - 1}_0"', dialect="postgresql", as_of=AS_OF, segments=catalogue)
        sizes[depth] = len(str(query.compile(dialect=postgresql.dialect())))
        times[depth] = time.process_time() - started
    # inlined, every layer would triple the text (3^16 copies of the bottom layer)
    # (a small graph does not yet reach every segment of a layer: compare 8 and 16 layers)
    assert sizes[16] < 2.3 * sizes[8], sizes
    assert sizes[16] < 700 * 16 * 3, sizes  # about one segment's worth of SQL per segment
    assert times[16] < 2.0, times


def test_sql_of_a_batch_run_grows_linearly(migrated_engine):
    """A batch run: references read the memberships the run wrote before, so every statement has
    the size of its own segment and the run's SQL grows with the number of segments."""
    sizes, took = {}, {}
    for n in (10, 20, 40):  # segments: 10 layers of 1, 2 and 4
        sandbox = next(SANDBOXES)
        with migrated_engine.begin() as connection:
            load_documents(connection, DOCUMENTS, sandbox=sandbox)
            for key, text in layered(10, width=n // 10).items():
                save(connection, sandbox, key, text, status="active")
        statements: list[str] = []

        def capture(_conn, _cursor, statement, *_args):
            statements.append(statement)

        sa.event.listen(migrated_engine, "before_cursor_execute", capture)
        try:
            started = time.process_time()  # CPU, as above (PostgreSQL's own share is not in it)
            run(migrated_engine, sandbox, AS_OF)
            took[n] = time.process_time() - started
        finally:
            sa.event.remove(migrated_engine, "before_cursor_execute", capture)
        sizes[n] = sum(len(s) for s in statements)
        assert max(len(s) for s in statements) < 5000
    assert sizes[20] < 2.3 * sizes[10] and sizes[40] < 2.3 * sizes[20], sizes
    assert took[40] < 60, took


def test_a_deep_wide_reference_graph_runs_and_agrees(migrated_engine):
    sandbox = next(SANDBOXES)
    catalogue = layered(16, width=3)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        for key, text in catalogue.items():
            save(connection, sandbox, key, text, status="active")
    run(migrated_engine, sandbox, AS_OF)
    loaded = [load_profile(d) for d in DOCUMENTS]
    with migrated_engine.connect() as connection:
        for key in ("s5_1", "s15_0"):
            predicate = compile_predicate(catalogue[key], segments=catalogue)
            expected = [p.id for p in loaded if predicate(p, AS_OF)]
            assert member_ids(connection, sandbox, key) == expected
            if migrated_engine.dialect.name == "postgresql":  # one statement of CTEs, computed once each
                from cdp.engine import sql

                assert sql.evaluate(connection, catalogue[key], as_of=AS_OF, sandbox=sandbox,
                                    segments=catalogue) == expected


def test_a_reference_graph_sqlite_would_copy_too_often_is_too_complex():
    with pytest.raises(PqlError) as info:
        members_query('in segment "s9_0"', dialect="sqlite", as_of=AS_OF, segments=layered(10, width=2))
    assert info.value.codes == ["too_complex"] and "batch job" in info.value.errors[0].hint


def test_references_beyond_the_depth_limit_are_too_complex():
    catalogue = {"s0": "email_opt_in", **{f"s{i}": f'in segment "s{i - 1}"' for i in range(1, MAX_SEGMENT_DEPTH + 2)}}
    compiler = SqlCompiler("sqlite", AS_OF, segments=catalogue)
    with pytest.raises(PqlError) as info:
        compiler.compile(check(f'in segment "s{MAX_SEGMENT_DEPTH + 1}"'))
    assert info.value.codes == ["too_complex"]
    # and saving such a chain is refused where it would pass the limit
    graph = {f"s{i}": {f"s{i - 1}"} for i in range(1, MAX_SEGMENT_DEPTH + 2)}
    with pytest.raises(PqlError) as info:
        service.check_definition(expression=f'in segment "s{MAX_SEGMENT_DEPTH + 1}"', key="top", schema=SCHEMA,
                                 known=catalogue, graph=graph)
    assert info.value.codes == ["too_complex"]
    service.check_definition(expression='in segment "s10"', key="top", schema=SCHEMA, known=catalogue, graph=graph)


def test_the_schedule_runs_sandboxes_whose_segments_are_stale(sqlite_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(sqlite_url_factory())
    upgrade(engine)
    try:
        with engine.begin() as connection:
            load_documents(connection, DOCUMENTS, sandbox="fresh")
            load_documents(connection, DOCUMENTS, sandbox="stale")
            for sandbox in ("fresh", "stale"):
                save(connection, sandbox, "gold", 'loyalty.tier = "gold"', status="active")
            save(connection, "stale", "drafted", "email_opt_in")
        run(engine, "stale", AS_OF)  # evaluated_at: AS_OF, long ago
        run(engine, "fresh", datetime.now(timezone.utc))
        assert jobs.due_sandboxes(engine, every=timedelta(hours=24)) == ["stale"]
        assert jobs.due_sandboxes(engine, every=timedelta(hours=24), now=AS_OF + timedelta(hours=1)) == []
        [job] = jobs.run_due(engine, every=timedelta(hours=24))
        assert job.status.value == "succeeded" and set(job.counts) == {"gold"}
        assert jobs.due_sandboxes(engine, every=timedelta(hours=24)) == []
    finally:
        engine.dispose()


# ---- runs on the service's job runner (cdp/jobs) ------------------------------------------------------


def test_a_run_on_the_job_runner_succeeds_and_one_interrupted_there_fails(migrated_engine):
    from cdp.jobs import Cause, Failure, Registry, Runner, get_job as get_runner_job
    from cdp.jobs.queue import end_without_handler
    from cdp.storage.models import jobs as runner_jobs

    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        save(connection, sandbox, "gold", 'loyalty.tier = "gold"', status="active")
        first = jobs.create_job(connection=connection, sandbox=sandbox, keys=None)
        jobs.enqueue_run(connection, sandbox=sandbox, job_id=first.id)
    runner = Runner(migrated_engine, Registry([jobs.run_kind()]), workers=1)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with migrated_engine.connect() as connection:
                done = jobs.get_job(connection=connection, sandbox=sandbox, job_id=first.id)
            if done.status.value not in ("queued", "running"):
                break
            time.sleep(0.05)
    finally:
        runner.stop()
    assert done.status.value == "succeeded" and done.counts["gold"].realized >= 1, done

    # a run the runner held when its server stopped: the runner's failure hook fails the segment job
    with migrated_engine.begin() as connection:
        second = jobs.create_job(connection=connection, sandbox=sandbox, keys=None)
        jobs.enqueue_run(connection, sandbox=sandbox, job_id=second.id)
        connection.execute(segment_jobs_table.update().where(segment_jobs_table.c.pk == second.id)
                           .values(status="running"))
    assert jobs.fail_interrupted(migrated_engine) == 0  # held by the runner: not the start-up sweep's
    with migrated_engine.begin() as connection:
        pk = connection.execute(sa.select(runner_jobs.c.pk).where(runner_jobs.c.kind == jobs.RUN_KIND,
                                                                  runner_jobs.c.key == str(second.id))).scalar_one()
        connection.execute(runner_jobs.update().where(runner_jobs.c.pk == pk).values(  # claimed, as a worker does
            status="running", attempts=1, worker="w-1"))
        end_without_handler(connection, job=get_runner_job(connection, pk), kind=jobs.run_kind(),
                            failure=Failure(Cause.worker_gone, "worker w-1 is gone"), now=datetime.now(timezone.utc))
        failed = jobs.get_job(connection=connection, sandbox=sandbox, job_id=second.id)
    assert failed.status.value == "failed" and "worker_gone" in failed.message and "run it again" in failed.message


def test_the_schedule_is_one_recurring_job_and_zero_hours_turns_it_off(migrated_engine):
    from cdp.storage.models import jobs as runner_jobs

    def schedules() -> int:
        with migrated_engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(runner_jobs)
                                      .where(runner_jobs.c.kind == jobs.SCHEDULE_KIND)).scalar()

    before = schedules()
    jobs.ensure_schedule(migrated_engine, every_hours=24)
    jobs.ensure_schedule(migrated_engine, every_hours=24)  # a second server start
    assert schedules() == max(before, 1)
    assert jobs.ensure_schedule(migrated_engine, every_hours=0) is False


def test_a_segment_writing_many_rows_re_analyzes_memberships_on_postgresql(migrated_engine, monkeypatch):
    """Stale statistics after a large write made the next run's UPDATE a nested loop for minutes at
    1,000,000 profiles: past the threshold PostgreSQL re-analyzes memberships; a run that changes
    nothing does not (and SQLite has no such planner statistics to keep)."""
    monkeypatch.setattr(batch, "_REANALYZE_ROWS", 3)
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        save(connection, sandbox, "everyone", "true", status="active")
    statements: list[str] = []

    def capture(_conn, _cursor, statement, *_args):
        statements.append(statement)

    sa.event.listen(migrated_engine, "before_cursor_execute", capture)
    try:
        first = run(migrated_engine, sandbox, AS_OF)
        analyzed_first = statements.count("ANALYZE memberships")
        statements.clear()
        run(migrated_engine, sandbox, AS_OF)  # the same members: nothing entered or exited
        analyzed_second = statements.count("ANALYZE memberships")
    finally:
        sa.event.remove(migrated_engine, "before_cursor_execute", capture)
    assert len(DOCUMENTS) >= 3 and first.status.value == "succeeded"
    expected_first = 1 if migrated_engine.dialect.name == "postgresql" else 0
    assert (analyzed_first, analyzed_second) == (expected_first, 0)
