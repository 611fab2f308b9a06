"""Batch evaluation jobs (``POST /v1/segment-jobs``, ``cdp segments run``).

A job is a row of ``segment_jobs``: queued when asked for, then :func:`run_job` — the one function
a durable job runner calls (today the API runs it after answering, in the background, and the CLI
runs it in the foreground) — evaluates its segments at one instant (``as_of``, when it starts),
in dependency order, one transaction per segment, and records the counts of each segment as it
goes. One job at a time per sandbox: asking for another while one is queued or running is 409
``segment_job_running``. A job that a stop of the service interrupted is marked failed at the
next start (:func:`fail_interrupted`); the memberships of the segments it finished stay written,
and a new job re-runs everything. :class:`Schedule` runs every sandbox daily by default.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.engine.support import UnsupportedOnBackend
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.schema_registry.service import get_schema
from cdp.segments import batch
from cdp.segments.batch import Counts
from cdp.segments.models import JobStatus, SegmentCounts, SegmentJobRead
from cdp.segments.service import catalogue, reference_graph
from cdp.storage.database import write_transaction
from cdp.storage.models import segment_jobs, segments

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


def run_job(engine: sa.Engine, job_id: int, *, as_of: datetime | None = None) -> SegmentJobRead:
    """Run a queued job to its end (succeeded or failed); returns it."""
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

            batch.evaluate_segments(transaction, sandbox=sandbox, rows=rows, schema=schema, catalogue=known,
                                    as_of=as_of, on_done=done)
    except (PqlError, UnsupportedOnBackend) as exc:
        status, message = "failed", f"a segment could not be evaluated: {str(exc).splitlines()[0]}"
    except Exception as exc:  # the job says why; the server log has the traceback
        log.exception("segment job %s failed", job_id)
        status, message = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    with write_transaction(engine) as connection:
        connection.execute(segment_jobs.update().where(segment_jobs.c.pk == job_id).values(
            status=status, message=message, finished_at=_now()))
        return get_job(connection=connection, sandbox=sandbox, job_id=job_id)


def fail_interrupted(engine: sa.Engine) -> int:
    """At start-up: jobs a stopped service left queued or running are failed (run them again)."""
    with write_transaction(engine) as connection:
        return connection.execute(segment_jobs.update().where(segment_jobs.c.status.in_(OPEN)).values(
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


class Schedule:
    """Batch runs by the clock (CDP_SEGMENT_BATCH_EVERY_HOURS, default 24; 0 turns it off): a
    thread that wakes every ``check_seconds`` and runs the due sandboxes. A durable job runner
    can replace it by calling :func:`run_due` itself."""

    def __init__(self, engine: sa.Engine, *, every_hours: float, check_seconds: float = 60.0):
        self.engine = engine
        self.every = timedelta(hours=every_hours)
        self.check_seconds = check_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every <= timedelta(0):
            return
        self._thread = threading.Thread(target=self._loop, name="cdp-segment-schedule", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                run_due(self.engine, every=self.every)
            except Exception as exc:  # noqa: BLE001 - the next wake-up tries again
                log.warning("scheduled segment runs failed: %s", str(getattr(exc, "orig", exc))[:200])

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
