"""Batch evaluation jobs (``POST /v1/segment-jobs``, ``cdp segments run``).

A job is a row of ``segment_jobs`` (what users see: segments, counts, status), run by the
service's durable job runner (cdp/jobs): :func:`create_job` stores it and enqueues a
``segments.run`` job in the same transaction; the runner's worker calls :func:`run_job`, which
evaluates its segments at one instant (``as_of``, when it starts), in dependency order, one
transaction per segment, recording the counts of each segment as it goes. The CLI runs
:func:`run_job` in the foreground. One job at a time per sandbox: asking for another while one is
queued or running is 409 ``segment_job_running``. A run is tried once: a job that a stop of the
service interrupted is taken back by the runner and marked failed (:func:`_on_failure`); the
memberships of the segments it finished stay written, and a new job re-runs everything. The
schedule is a recurring ``segments.schedule`` job (:func:`schedule_kind`) that starts a run for
every sandbox whose active segments are due (daily by default).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Mapping

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.engine.support import UnsupportedOnBackend
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.jobs import Failure, Job, JobContext, JobKind, enqueue
from cdp.schema_registry.service import get_schema
from cdp.segments import batch
from cdp.segments.batch import Counts
from cdp.segments.models import JobStatus, SegmentCounts, SegmentJobRead
from cdp.segments.service import catalogue, reference_graph
from cdp.storage.database import write_transaction
from cdp.storage.models import jobs, segment_jobs, segments

log = logging.getLogger("cdp.segments")
OPEN = ("queued", "running")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _read(row) -> SegmentJobRead:
    return SegmentJobRead(id=row.pk, status=JobStatus(row.status), segments=row.segments,
                          counts={k: SegmentCounts(**v) for k, v in (row.counts or {}).items()}, message=row.message,
                          as_of=row.as_of, created_at=row.created_at, started_at=row.started_at,
                          finished_at=row.finished_at)


def create_job(*, connection: sa.Connection, sandbox: str, keys: list[str] | None,
               requested_by: str | None = None) -> SegmentJobRead:
    """Queue a job for the given active segments (None: every active segment)."""
    if keys is not None:
        keys = list(dict.fromkeys(keys))
        rows = {row.key: row for row in connection.execute(
            sa.select(segments.c.key, segments.c.status).where(segments.c.sandbox == sandbox,
                                                               segments.c.key.in_(keys)))}
        missing = [k for k in keys if k not in rows]
        if missing:
            raise NotFound(f"no segment {', '.join(map(repr, missing))} in sandbox {sandbox!r}",
                           details={"resource": "segment", "id": missing[0], "missing": missing, "sandbox": sandbox})
        idle = [k for k in keys if rows[k].status != "active"]
        if idle:
            raise Unprocessable(f"only active segments are evaluated; {', '.join(map(repr, idle))} "
                                f"{'is' if len(idle) == 1 else 'are'} not active", code="segment_not_active",
                                details={"segments": idle})
    running = connection.execute(sa.select(segment_jobs.c.pk).where(
        segment_jobs.c.sandbox == sandbox, segment_jobs.c.status.in_(OPEN))).scalar()
    if running is not None:
        raise Conflict(f"segment job {running} is still running in sandbox {sandbox!r}; one runs at a time",
                       code="segment_job_running", details={"job_id": running})
    pk = connection.execute(segment_jobs.insert().values(
        sandbox=sandbox, status="queued", segments=keys, counts={}, requested_by=requested_by,
        created_at=_now()).returning(segment_jobs.c.pk)).scalar_one()
    return get_job(connection=connection, sandbox=sandbox, job_id=pk)


def get_job(*, connection: sa.Connection, sandbox: str, job_id: int) -> SegmentJobRead:
    row = connection.execute(sa.select(segment_jobs).where(segment_jobs.c.pk == job_id,
                                                           segment_jobs.c.sandbox == sandbox)).first()
    if row is None:
        raise NotFound.resource("segment job", job_id, sandbox)
    return _read(row)


def list_jobs(*, connection: sa.Connection, sandbox: str, limit: int, offset: int) -> tuple[list[SegmentJobRead], int]:
    where = segment_jobs.c.sandbox == sandbox
    total = connection.execute(sa.select(sa.func.count()).select_from(segment_jobs).where(where)).scalar_one()
    rows = connection.execute(sa.select(segment_jobs).where(where).order_by(segment_jobs.c.pk.desc())
                              .limit(limit).offset(offset))
    return [_read(row) for row in rows], total


def run_job(engine: sa.Engine, job_id: int, *, as_of: datetime | None = None, on: str = "database",
            snapshots: Path | str | None = None, master: str | None = None,
            segments_per_query: int | None = None) -> SegmentJobRead:
    """Run a queued job to its end (succeeded or failed); returns it. ``on`` says where the
    members are computed: "database" (the compiled SQL in the database), or "duckdb" or "spark"
    (``master``: a Spark master URL) over the sandbox's latest snapshot under ``snapshots``
    (cdp/snapshots), independent segments ``segments_per_query`` to a statement (default per
    engine: SEGMENTS_PER_QUERY; 1: one statement per segment); the memberships are written the
    same way either way."""
    with write_transaction(engine) as connection:
        row = connection.execute(sa.select(segment_jobs).where(segment_jobs.c.pk == job_id)).first()
        if row is None or row.status != "queued":
            raise Conflict(f"segment job {job_id} is not queued", code="segment_job_not_queued")
        sandbox = row.sandbox
        as_of = as_of or _now()
        connection.execute(segment_jobs.update().where(segment_jobs.c.pk == job_id).values(
            status="running", started_at=_now(), as_of=as_of))
        schema = get_schema(connection=connection, sandbox=sandbox)
        known = catalogue(connection, sandbox)
        graph = reference_graph(connection, sandbox)
        active = connection.execute(sa.select(segments).where(segments.c.sandbox == sandbox,
                                                              segments.c.status == "active")).all()
        chosen = row.segments if row.segments is not None else [r.key for r in active]
        keys = batch.run_set(chosen, [r.key for r in active], graph)  # and the active segments they use
        rows = batch.ordered([r for r in active if r.key in keys], graph)

    counts: dict[str, dict] = {}

    def done(connection: sa.Connection, key: str, result: Counts) -> None:
        counts[key] = result.as_dict()
        connection.execute(segment_jobs.update().where(segment_jobs.c.pk == job_id).values(counts=dict(counts)))

    status, message = "succeeded", None
    try:
        with engine.connect() as connection:  # one connection (its temporary table), a transaction per segment
            connection.execution_options(sqlite_begin="IMMEDIATE")

            @contextmanager
            def transaction() -> Iterator[sa.Connection]:
                with connection.begin():
                    yield connection

            if on == "database":
                batch.evaluate_segments(transaction, sandbox=sandbox, rows=rows, schema=schema, catalogue=known,
                                        as_of=as_of, on_done=done)
            else:
                _evaluate_on_snapshot(transaction, on=on, root=snapshots, sandbox=sandbox, rows=rows, graph=graph,
                                      schema=schema, catalogue=known, as_of=as_of, on_done=done, master=master,
                                      segments_per_query=segments_per_query)
    except SegmentEvaluationFailed as exc:  # the engine refused a query: the server log has the traceback
        log.exception("segment job %s failed", job_id)
        status, message = "failed", str(exc)
    except (PqlError, UnsupportedOnBackend, Unprocessable) as exc:
        status, message = "failed", f"a segment could not be evaluated: {str(exc).splitlines()[0]}"
    except Exception as exc:  # the job says why; the server log has the traceback
        log.exception("segment job %s failed", job_id)
        status, message = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    with write_transaction(engine) as connection:
        connection.execute(segment_jobs.update().where(segment_jobs.c.pk == job_id).values(
            status=status, message=message, finished_at=_now()))
        return get_job(connection=connection, sandbox=sandbox, job_id=job_id)


# Segments computed per engine statement in a run over a snapshot. A Spark query costs seconds
# before it reads a row (analysis, planning, scheduling of stages), so independent segments are
# branches of one UNION ALL (past a few dozen branches the plan itself grows costly). DuckDB's
# fixed cost per query is milliseconds: grouping measured no gain there (bench/RESULTS.md), so
# each segment keeps a statement of its own.
SEGMENTS_PER_QUERY = {"duckdb": 1, "spark": 25}


class SegmentEvaluationFailed(Exception):
    """A segment's query failed on an analytic engine (the job's message names the segment)."""

    def __init__(self, key: str, engine: str, cause: BaseException):
        first = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else type(cause).__name__
        super().__init__(f"segment {key!r} could not be evaluated on {engine}: {first}")
        self.key = key


def dependency_levels(rows: list, graph: Mapping[str, set[str]]) -> list[list]:
    """``rows`` (in dependency order) grouped into levels: a segment joins the level after the
    last of the run's segments it references (level 0: it references none of them), so the
    members of a level depend only on earlier levels' and can be computed together. Within a
    level the rows keep their order."""
    in_run = {row.key for row in rows}
    level_of: dict[str, int] = {}
    levels: list[list] = []
    for row in rows:
        level = 1 + max((level_of[dep] for dep in graph.get(row.key, ()) if dep in in_run), default=-1)
        level_of[row.key] = level
        while len(levels) <= level:
            levels.append([])
        levels[level].append(row)
    return levels


def _evaluate_on_snapshot(transaction, *, on: str, root: Path | str | None, sandbox: str,
                          rows: list, graph: Mapping[str, set[str]], schema, catalogue, as_of: datetime, on_done,
                          master: str | None = None, segments_per_query: int | None = None) -> None:
    """The segments over the latest snapshot on an analytic engine, level by level of the
    reference graph (a reference reads the members computed at an earlier level), a level's
    segments ``segments_per_query`` to an engine statement (default: SEGMENTS_PER_QUERY), each
    written back in its own transaction by the database batch job's set-wise update, in
    dependency order."""
    from cdp.engine.sql.analytic import open_session
    from cdp.snapshots.export import latest_manifest, relations_sql

    manifest = latest_manifest(root, sandbox) if root is not None else None
    if manifest is None:
        raise Unprocessable(f"sandbox {sandbox!r} has no snapshot to run on; take one first (cdp snapshot)",
                            code="snapshot_missing")
    per_query = max(1, segments_per_query or SEGMENTS_PER_QUERY.get(on, 1))
    session = open_session(on, master=master)
    try:
        if on == "spark":  # Spark reads the parts itself (relations_sql is DuckDB's SQL)
            session.from_snapshot(manifest)
        else:
            session.from_sql(*relations_sql(manifest))
        done: dict[str, int] = {}
        for level in dependency_levels(rows, graph):
            found: list[list[int]] = []
            for start in range(0, len(level), per_query):
                found += _members_together(session, level[start:start + per_query], on=on, sandbox=sandbox,
                                           schema=schema, catalogue=catalogue, as_of=as_of, memberships_of=done)
            session.remember_many([(row.pk, pks) for row, pks in zip(level, found)])
            for row, pks in zip(level, found):
                with transaction() as connection:
                    counts = batch.write_members(connection, sandbox=sandbox, segment_pk=row.pk,
                                                 segment_key=row.key, profile_pks=pks, as_of=as_of)
                    on_done(connection, row.key, counts)
            done.update((row.key, row.pk) for row in level)
    finally:
        session.close()


def _members_together(session, rows: list, *, on: str, sandbox: str, schema, catalogue, as_of: datetime,
                      memberships_of: Mapping[str, int]) -> list[list[int]]:
    """The members' pks of segments that reference none of each other, in one engine statement.
    A segment that does not compile stops the run, named; when the statement fails, each runs
    alone, so that the one that fails is named (and if none does, their results stand)."""
    def compiled(chosen: list) -> list:
        return session.queries([row.expression for row in chosen], as_of=as_of, sandbox=sandbox, schema=schema,
                               segments=catalogue, memberships_of=memberships_of)

    try:
        queries = compiled(rows)
    except (PqlError, UnsupportedOnBackend) as exc:
        for row in rows:  # which one
            try:
                compiled([row])
            except (PqlError, UnsupportedOnBackend) as single:
                raise Unprocessable(f"segment {row.key!r}: {str(single).splitlines()[0]}",
                                    code="segment_not_evaluable", details={"segment": row.key, "engine": on}) from single
        raise exc
    try:
        results = session.members_many(queries)
    except Exception as exc:
        if len(rows) == 1:
            raise SegmentEvaluationFailed(rows[0].key, on, exc) from exc
        log.warning("%d segments in one %s statement failed (%s); running them one by one", len(rows), on,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        results = []
        for row, query in zip(rows, queries):
            try:
                results.append(session.run(query))
            except Exception as single:
                raise SegmentEvaluationFailed(row.key, on, single) from single
    return [[pk for pk, _external_id in members] for members in results]


def enqueue_run(connection: sa.Connection, *, sandbox: str, job_id: int) -> None:
    """The runner's job for a segment job (in the caller's transaction: wake the runner after it
    commits)."""
    enqueue(connection, kind=run_kind(), payload={"segment_job_id": job_id}, sandbox=sandbox, key=str(job_id))


def fail_interrupted(engine: sa.Engine) -> int:
    """At start-up, before the runner starts: segment jobs left queued or running with no runner
    job to finish them (a `cdp segments run` that was stopped) are failed (run them again). Those
    the runner holds are its business: it runs the queued ones and fails the interrupted ones."""
    held = sa.select(jobs.c.key).where(jobs.c.kind == RUN_KIND, jobs.c.status.in_(("queued", "running")),
                                       jobs.c.key.is_not(None))
    with write_transaction(engine) as connection:
        return connection.execute(segment_jobs.update().where(
            segment_jobs.c.status.in_(OPEN), sa.cast(segment_jobs.c.pk, sa.String).not_in(held)).values(
            status="failed", finished_at=_now(),
            message="interrupted by a stop of the service; the segments it finished kept their memberships; "
                    "run it again")).rowcount


# ---- the schedule ---------------------------------------------------------------------------------


def due_sandboxes(engine: sa.Engine, *, every: timedelta, now: datetime | None = None) -> list[str]:
    """Sandboxes due for a batch run: one of their active segments was last evaluated more than
    ``every`` ago, and no job of theirs is queued or running."""
    now = now or _now()
    with engine.connect() as connection:
        stale = sa.select(segments.c.sandbox).where(
            segments.c.status == "active",
            sa.or_(segments.c.evaluated_at.is_(None), segments.c.evaluated_at < now - every)).distinct()
        busy = set(connection.execute(sa.select(segment_jobs.c.sandbox).where(segment_jobs.c.status.in_(OPEN)))
                   .scalars())
        return sorted(s for s in connection.execute(stale).scalars() if s not in busy)


def run_due(engine: sa.Engine, *, every: timedelta) -> list[SegmentJobRead]:
    """Run a job for every due sandbox, one after the other; what a scheduler calls."""
    finished = []
    for sandbox in due_sandboxes(engine, every=every):
        try:
            with write_transaction(engine) as connection:
                job = create_job(connection=connection, sandbox=sandbox, keys=None, requested_by="schedule")
        except Conflict:  # another one started meanwhile
            continue
        finished.append(run_job(engine, job.id))
    return finished


RUN_KIND = "segments.run"
SCHEDULE_KIND = "segments.schedule"
SCHEDULE_CHECK = timedelta(minutes=5)  # how often the schedule looks for due sandboxes


def _run(context: JobContext) -> None:
    run_job(context.engine, context.payload["segment_job_id"])


def _on_failure(connection: sa.Connection, job: Job, failure: Failure) -> None:
    """The segment job of a run that ended without finishing (a stop, a crash, a cancellation):
    failed, saying why, in the transaction that ends the runner's job."""
    connection.execute(segment_jobs.update().where(
        segment_jobs.c.pk == job.payload["segment_job_id"], segment_jobs.c.status.in_(OPEN)).values(
        status="failed", finished_at=_now(),
        message=f"interrupted ({failure.cause.value}: {failure.detail}); the segments it finished kept their "
                "memberships; run it again"))


def run_kind() -> JobKind:
    return JobKind(name=RUN_KIND, run=_run, max_attempts=1, on_failure=_on_failure,
                   description="a batch evaluation of a sandbox's segments (POST /v1/segment-jobs)")


def schedule_kind(every_hours: float) -> JobKind:
    """The recurring check that starts a run for every due sandbox (CDP_SEGMENT_BATCH_EVERY_HOURS)."""
    every = timedelta(hours=every_hours)

    def run(context: JobContext) -> None:
        if every > timedelta(0):  # 0 turns the schedule off (a job left from before does nothing)
            run_due(context.engine, every=every)

    return JobKind(name=SCHEDULE_KIND, run=run,
                   description="starts a batch evaluation of every sandbox whose active segments are due")


def ensure_schedule(engine: sa.Engine, *, every_hours: float, now: datetime | None = None) -> bool:
    """At start-up: the recurring schedule job exists (once per database, whatever the number of
    servers); 0 hours turns it off. True when this call created it."""
    if every_hours <= 0:
        return False
    now = now or _now()
    try:
        with write_transaction(engine) as connection:
            enqueue(connection, kind=schedule_kind(every_hours), payload={}, key=SCHEDULE_KIND,
                    run_at=now + SCHEDULE_CHECK, every=SCHEDULE_CHECK, now=now)
        return True
    except Conflict:  # another start made it
        return False
