"""The job table's operations: enqueue, claim, read, cancel, requeue, and the sweep that takes
jobs back from gone workers. Functions that join a caller's work take its ``connection`` (the
job is written in the caller's transaction: a batch and its job are stored together); those a
worker runs on its own take the ``engine`` and keep their transactions short.

Claiming is one statement on both backends::

    UPDATE jobs SET status = 'running', worker = :me, attempts = attempts + 1, …
    WHERE pk = (SELECT pk FROM jobs WHERE status = 'queued' AND run_at <= :now AND kind IN (…)
                ORDER BY run_at, pk LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING …

On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets concurrent workers each take a different row
without waiting for each other; on SQLite the clause is not rendered and the statement runs in a
``BEGIN IMMEDIATE`` transaction, whose write lock serializes claims. Either way a job is claimed
by one worker. SQLite's claim first looks for a due job without the lock, so idle workers do not
take the write lock every poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from cdp.errors import Conflict, NotFound
from cdp.jobs.liveness import STALE_AFTER_SECONDS, database_name, worker_gone
from cdp.jobs.registry import Cause, Failure, JobKind, Registry
from cdp.storage.database import write_transaction
from cdp.storage.models import jobs

log = logging.getLogger("cdp.jobs")


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


ENDED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


@dataclass(frozen=True)
class Job:
    """A job as stored."""

    pk: int
    kind: str
    key: str | None
    sandbox: str | None
    payload: dict
    status: JobStatus
    run_at: datetime
    interval_seconds: float | None
    attempts: int
    max_attempts: int
    worker: str | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    progress_done: int
    progress_total: int | None
    message: str | None
    last_error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        values = {f.name: getattr(row, f.name) for f in fields(cls)}
        values["status"] = JobStatus(values["status"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def enqueue(connection: sa.Connection, *, kind: JobKind, payload: dict, sandbox: str | None = None,
            key: str | None = None, run_at: datetime | None = None, every: timedelta | None = None,
            now: datetime | None = None) -> int:
    """Store a job (in the caller's transaction: wake the runner after it commits); its id.
    ``run_at``: not before then (default now); ``every``: again at that interval after each
    run. A second job of the same kind and ``key`` is refused (409 ``job_exists``), also when a
    concurrent transaction stores it between the check and the insert (then this transaction is
    spoilt on PostgreSQL: the caller rolls it back, as raising does in a ``with`` block)."""
    now = now or utcnow()
    if every is not None and every.total_seconds() <= 0:
        raise ValueError("a recurring job's interval must be positive")
    if key is not None:
        existing = connection.execute(sa.select(jobs.c.pk).where(jobs.c.kind == kind.name, jobs.c.key == key)
                                      ).scalar_one_or_none()
        if existing is not None:
            raise Conflict(f"a {kind.name} job for {key!r} exists already (job {existing})", code="job_exists",
                           details={"job_id": existing, "kind": kind.name, "key": key})
    try:
        return connection.execute(jobs.insert().values(
            kind=kind.name, key=key, sandbox=sandbox, payload=payload, status=JobStatus.queued.value,
            run_at=run_at or now, interval_seconds=every.total_seconds() if every is not None else None, attempts=0,
            max_attempts=kind.max_attempts, cancel_requested=False, progress_done=0, created_at=now,
        ).returning(jobs.c.pk)).scalar_one()
    except sa.exc.IntegrityError as error:  # another transaction stored it since the check (uq_jobs_kind_key)
        if key is None:
            raise
        raise Conflict(f"a {kind.name} job for {key!r} exists already", code="job_exists",
                       details={"kind": kind.name, "key": key}) from error


def get_job(connection: sa.Connection, job_id: int) -> Job:
    row = connection.execute(sa.select(jobs).where(jobs.c.pk == job_id)).first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist", code="not_found", details={"job_id": job_id})
    return Job.from_row(row)


def _due(kinds: list[str], now: datetime) -> list:
    return [jobs.c.status == JobStatus.queued.value, jobs.c.run_at <= now, jobs.c.kind.in_(kinds)]


def claim_next(engine: sa.Engine, *, kinds: list[str], worker: str, now: datetime) -> Job | None:
    """Claim the job of ``kinds`` due first (see the module doc); None when none is due."""
    if not kinds:
        return None
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:  # a read: no write lock while there is nothing to do
            if connection.execute(sa.select(jobs.c.pk).where(*_due(kinds, now)).limit(1)).first() is None:
                return None
    candidate = (sa.select(jobs.c.pk).where(*_due(kinds, now)).order_by(jobs.c.run_at, jobs.c.pk).limit(1)
                 .with_for_update(skip_locked=True).scalar_subquery())
    with write_transaction(engine) as connection:
        row = connection.execute(jobs.update().where(jobs.c.pk == candidate, jobs.c.status == JobStatus.queued.value)
                                 .values(status=JobStatus.running.value, worker=worker, attempts=jobs.c.attempts + 1,
                                         started_at=now, heartbeat_at=now, finished_at=None, progress_done=0,
                                         progress_total=None, message=None)
                                 .returning(*jobs.c)).first()
    return Job.from_row(row) if row is not None else None


def unchanged(job: Job) -> list:
    """The job is still as read: same status, worker and attempt, no newer heartbeat."""
    c = jobs.c
    return [c.pk == job.pk, c.status == job.status.value, c.attempts == job.attempts,
            c.worker.is_(None) if job.worker is None else c.worker == job.worker,
            c.heartbeat_at.is_(None) if job.heartbeat_at is None else c.heartbeat_at <= job.heartbeat_at]


def cancel(connection: sa.Connection, *, job_id: int, now: datetime | None = None) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop (its worker sees it at
    its next heartbeat, stops between two steps and rolls back). 409 ``job_not_cancellable``
    for a job that has ended."""
    now = now or utcnow()
    job = get_job(connection, job_id)
    if job.status in ENDED:
        raise Conflict(f"job {job_id} has ended ({job.status.value}); there is nothing to cancel",
                       code="job_not_cancellable", details={"job_id": job_id, "status": job.status.value})
    if job.status == JobStatus.queued:
        connection.execute(jobs.update().where(*unchanged(job)).values(
            status=JobStatus.cancelled.value, finished_at=now, message="cancelled before it ran"))
    else:
        connection.execute(jobs.update().where(jobs.c.pk == job_id, jobs.c.status == JobStatus.running.value)
                           .values(cancel_requested=True))
    return get_job(connection, job_id)


def requeue(connection: sa.Connection, *, job_id: int, now: datetime | None = None,
            stale_after: float = STALE_AFTER_SECONDS) -> Job:
    """Run an ended job again — failed, cancelled, or (for a recurring one) succeeded — or a
    running one whose worker is gone (in the caller's transaction). 409 ``job_not_retryable``
    for a queued job or one a live worker runs; the details say why."""
    now = now or utcnow()
    job = get_job(connection, job_id)
    details: dict[str, Any] = {"job_id": job_id, "status": job.status.value}
    if job.status == JobStatus.queued:
        raise Conflict(f"job {job_id} is queued; a worker will start it", code="job_not_retryable", details=details)
    if job.status == JobStatus.running:
        reason = worker_gone(database=database_name(connection.engine), job_id=job_id, worker=job.worker,
                             heartbeat_at=job.heartbeat_at, now=now, stale_after=stale_after)
        if reason is None:
            heartbeat = job.heartbeat_at.isoformat() if job.heartbeat_at else None
            raise Conflict(f"job {job_id} is running", code="job_not_retryable",
                           details={**details, "attempts": job.attempts, "heartbeat_at": heartbeat})
    updated = connection.execute(jobs.update().where(*unchanged(job)).values(
        status=JobStatus.queued.value, run_at=now, worker=None, heartbeat_at=None, started_at=None, finished_at=None,
        cancel_requested=False, progress_done=0, progress_total=None, message=None,
        # a person asked for this run: it may fail once more before it is given up
        max_attempts=sa.func.max(jobs.c.max_attempts, jobs.c.attempts + 1) if connection.dialect.name == "sqlite"
        else sa.func.greatest(jobs.c.max_attempts, jobs.c.attempts + 1))).rowcount
    if not updated:
        raise Conflict(f"job {job_id} changed while it was being retried; read it and try again",
                       code="job_not_retryable", details=details)
    return get_job(connection, job_id)


def end_without_handler(connection: sa.Connection, *, job: Job, kind: JobKind | None, failure: Failure,
                        now: datetime) -> JobStatus | None:
    """A job its handler did not end (worker gone, shut down, an error, cancelled): queued again
    after its backoff while attempts remain (not when cancelled), else failed — or cancelled —
    for good, with ``kind.on_failure`` in the same transaction. Conditional on the job being as
    read (:func:`unchanged`); the status it was given, or None when it had changed."""
    message = f"{failure.cause.value}: {failure.detail}"[:2000]
    retry = failure.cause != Cause.cancelled and job.attempts < job.max_attempts
    if retry:
        backoff = kind.backoff(job.attempts) if kind is not None else timedelta(seconds=10)
        status, values = JobStatus.queued, {"run_at": now + backoff, "started_at": None, "finished_at": None}
    else:
        status = JobStatus.cancelled if failure.cause == Cause.cancelled else JobStatus.failed
        values = {"finished_at": now}
    updated = connection.execute(jobs.update().where(*unchanged(job)).values(
        status=status.value, worker=None, last_error=message, cancel_requested=False, **values)).rowcount
    if not updated:
        return None
    if not retry and kind is not None and kind.on_failure is not None:
        kind.on_failure(connection, job, failure)
    return status


def sweep(engine: sa.Engine, *, registry: Registry, now: datetime | None = None,
          stale_after: float = STALE_AFTER_SECONDS) -> dict[int, JobStatus]:
    """Take back the running jobs whose worker is gone (cdp/jobs/liveness.py): queued again
    after their backoff, or failed for good; what became of each."""
    now = now or utcnow()
    database = database_name(engine)
    with engine.connect() as connection:
        running = [Job.from_row(row) for row in connection.execute(
            sa.select(jobs).where(jobs.c.status == JobStatus.running.value))]
    gone = [(job, reason) for job in running
            if (reason := worker_gone(database=database, job_id=job.pk, worker=job.worker,
                                      heartbeat_at=job.heartbeat_at, now=now, stale_after=stale_after)) is not None]
    outcome: dict[int, JobStatus] = {}
    for job, reason in gone:
        with write_transaction(engine) as connection:
            status = end_without_handler(connection, job=job, kind=registry.get(job.kind),
                                         failure=Failure(Cause.worker_gone, reason), now=now)
        if status is not None:
            outcome[job.pk] = status
            log.warning("job %s (%s): %s; %s", job.pk, job.kind, reason,
                        "queued again" if status == JobStatus.queued else f"marked {status.value}")
    return outcome
