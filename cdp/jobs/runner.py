"""The runner: worker threads that claim due jobs and run them, a heartbeat per running job, and
a sweeper that takes jobs back from gone workers.

A job goes queued → running → succeeded | failed | cancelled (a failure with attempts left goes
back to queued, due after its backoff; a recurring job goes back to queued, due at its next
instant). While it runs, a heartbeat thread sets ``heartbeat_at`` — and the progress the handler
reported — every ``heartbeat_seconds``, and learns whether it was asked to cancel.

Fencing: every write a worker makes to its job (heartbeat, progress, outcome) holds only while
the job is still running by this worker and attempt (:meth:`JobContext.hold`). A handler that
ends its job inside its own transaction (:meth:`JobContext.succeed`, :meth:`JobContext.fail`)
writes its domain's outcome and the job's in one commit; when the job was taken from the worker
meanwhile (judged gone), that write finds nothing and raises :class:`JobLost`, so the
transaction rolls back: a job's work is committed by one attempt at most.

Time comes from ``clock`` (tests inject one); the functions of cdp/jobs/queue.py take ``now``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa

from cdp.jobs import liveness, queue
from cdp.jobs.liveness import STALE_AFTER_SECONDS, database_name, worker_id
from cdp.jobs.queue import Job, JobStatus, end_without_handler, utcnow
from cdp.jobs.registry import Cause, Failure, JobKind, Registry
from cdp.storage.database import write_transaction
from cdp.storage.models import jobs

log = logging.getLogger("cdp.jobs")

HEARTBEAT_SECONDS = 2.0
SWEEP_SECONDS = 30.0
POLL_SECONDS = 1.0


class JobStopped(Exception):
    """The server is shutting down: the handler stops between two steps and rolls back."""


class JobCancelled(Exception):
    """Someone cancelled the job: the handler stops between two steps and rolls back."""


class JobLost(Exception):
    """The job was taken from this worker (judged gone): its transaction must roll back."""


class JobFailed(Exception):
    """Raised by a handler: the job fails for good, no retry; ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class JobContext:
    """What a handler gets: the job, a checkpoint, progress, and fenced writes."""

    def __init__(self, engine: sa.Engine, job: Job, clock: Callable[[], datetime], stopping: threading.Event):
        self.engine = engine
        self.job = job
        self.clock = clock
        self.sqlite = engine.dialect.name == "sqlite"
        self._stopping = stopping
        self.cancelled = threading.Event()  # set by the heartbeat when a cancel was requested
        self.lost = threading.Event()  # set by the heartbeat when the job is no longer ours
        self.done = threading.Event()
        self.ended = False  # the handler ended the job itself (succeed / fail)
        self._exclusive = threading.Event()  # SQLite: the handler holds the write lock; no heartbeat
        self._progress_lock = threading.Lock()
        self._progress: tuple[int, int | None, str | None] | None = None

    @property
    def job_id(self) -> int:
        return self.job.pk

    @property
    def payload(self) -> dict:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def checkpoint(self) -> None:
        """Raise when the job must stop here: shut down, cancelled, or taken from this worker."""
        if self.lost.is_set():
            raise JobLost
        if self._stopping.is_set():
            raise JobStopped
        if self.cancelled.is_set():
            raise JobCancelled

    # ---- fenced writes -------------------------------------------------------------------------

    def _ours(self) -> list:
        c = jobs.c
        return [c.pk == self.job.pk, c.status == JobStatus.running.value, c.worker == self.job.worker,
                c.attempts == self.job.attempts]

    def hold(self, connection: sa.Connection, **values) -> None:
        """In the caller's transaction: the job is still this worker's (else :class:`JobLost`),
        with ``values`` written to it."""
        values.setdefault("heartbeat_at", self.clock())
        if connection.execute(jobs.update().where(*self._ours()).values(**values)).rowcount != 1:
            raise JobLost

    def succeed(self, connection: sa.Connection, message: str | None = None) -> None:
        """In the caller's transaction: the job succeeded (a recurring one is queued for its next
        instant). Commits with the caller's work, or not at all."""
        self.hold(connection, **{**self._pending_progress(), **_success_values(self.job, self.clock(), message)})
        self.ended = True

    def fail(self, connection: sa.Connection, message: str) -> None:
        """In the caller's transaction: the job failed for good (no retry); ``message`` says why."""
        self.hold(connection, status=JobStatus.failed.value, finished_at=self.clock(), last_error=message[:2000],
                  message=message[:2000])
        self.ended = True

    def progress(self, done: int, total: int | None = None, message: str | None = None, *, flush: bool = False
                 ) -> None:
        """How far the work is: written with the next heartbeat (the handler's thread never waits
        for the database to report progress), or at once with ``flush``."""
        with self._progress_lock:
            self._progress = (done, total, message)
        if flush and not self._exclusive.is_set():
            with write_transaction(self.engine) as connection:
                self.hold(connection, **self._pending_progress())

    def _pending_progress(self) -> dict:
        with self._progress_lock:
            pending, self._progress = self._progress, None
        if pending is None:
            return {}
        done, total, message = pending
        values = {"progress_done": done, "progress_total": total}
        if message is not None:
            values["message"] = message[:2000]
        return values

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Around work that holds SQLite's write lock for long: the heartbeat waits (it could not
        write anyway; liveness rules 1 and 2 vouch for this worker meanwhile)."""
        if self.sqlite:
            self._exclusive.set()
        try:
            yield
        finally:
            self._exclusive.clear()

    # ---- the heartbeat thread ------------------------------------------------------------------

    def beat(self, every: float) -> None:
        while not self.done.wait(every):
            if self._exclusive.is_set():
                continue
            try:
                with write_transaction(self.engine) as connection:
                    row = connection.execute(jobs.update().where(*self._ours())
                                             .values(heartbeat_at=self.clock(), **self._pending_progress())
                                             .returning(jobs.c.cancel_requested)).first()
            except sa.exc.SQLAlchemyError as exc:  # busy or unreachable: the next beat tries again
                log.warning("job %s: heartbeat failed: %s", self.job.pk, str(getattr(exc, "orig", exc))[:200])
                continue
            if row is None:
                if not self.done.is_set() and not self.ended:
                    log.warning("job %s: it was taken from this worker (attempt %s)", self.job.pk, self.job.attempts)
                    self.lost.set()
                return
            if row.cancel_requested:
                self.cancelled.set()


def _success_values(job: Job, now: datetime, message: str | None) -> dict:
    if job.interval_seconds:
        interval = timedelta(seconds=job.interval_seconds)
        next_run = job.run_at + interval
        if next_run <= now:  # missed instants are not made up one by one: the next one after now
            next_run += interval * ((now - next_run) // interval + 1)
        return {"status": JobStatus.queued.value, "run_at": next_run, "attempts": 0, "worker": None,
                "finished_at": now, "message": message, "last_error": None}
    return {"status": JobStatus.succeeded.value, "finished_at": now, "message": message}


class Runner:
    """Runs the jobs of ``registry`` on ``engine``: ``workers`` threads, a sweeper, heartbeats.

    :meth:`start` takes back the jobs of gone workers first (synchronously: after a restart, a
    read of a job already tells what happened to it), then starts the threads. :meth:`wake`
    makes idle workers look for due jobs now (call it after a transaction that enqueued one
    commits); otherwise they look every ``poll_seconds``. :meth:`stop` asks running handlers to
    stop between two steps and waits for them."""

    def __init__(self, engine: sa.Engine, registry: Registry, *, workers: int = 2,
                 clock: Callable[[], datetime] = utcnow, poll_seconds: float = POLL_SECONDS, heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 sweep_seconds: float = SWEEP_SECONDS, stale_after: float = STALE_AFTER_SECONDS):
        self.engine = engine
        self.registry = registry
        self.workers = workers
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.sweep_seconds = sweep_seconds
        self.stale_after = stale_after
        self.database = database_name(engine)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.sweep()
        except Exception:  # noqa: BLE001 - the service still starts; the sweeper tries again
            log.exception("taking back the jobs of gone workers at start failed")
        for number in range(self.workers):
            self._spawn(self._work, f"cdp-jobs-worker-{number}")
        self._spawn(self._sweep_forever, "cdp-jobs-sweeper")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def alive(self) -> bool:
        """Started, not stopped, and every thread still running (/healthz)."""
        return bool(self._threads) and not self._stopping.is_set() and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = self.run_once()
            except Exception as exc:  # noqa: BLE001 - a worker outlives a failed claim (busy database …)
                log.warning("claiming a job failed: %s", str(getattr(exc, "orig", exc))[:200])
                ran = None
            if ran is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _sweep_forever(self) -> None:
        while not self._stopping.wait(self.sweep_seconds):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001
                log.warning("sweeping jobs failed: %s", str(getattr(exc, "orig", exc))[:200])

    def sweep(self) -> dict[int, JobStatus]:
        return queue.sweep(self.engine, registry=self.registry, now=self.clock(), stale_after=self.stale_after)

    # ---- one job -------------------------------------------------------------------------------

    def run_once(self) -> int | None:
        """Claim the job due first and run it to its end in this thread; its id, or None when no
        job is due."""
        worker = worker_id()
        with liveness.running_lock:  # liveness rule 1 waits while a claim is in flight
            liveness.claiming += 1
        try:
            job = queue.claim_next(self.engine, kinds=self.registry.names(), worker=worker, now=self.clock())
            if job is None:
                return None
            context = JobContext(self.engine, job, self.clock, self._stopping)
            with liveness.running_lock:
                liveness.running[(self.database, job.pk)] = context
        finally:
            with liveness.running_lock:
                liveness.claiming -= 1
        try:
            self._execute(self.registry[job.kind], context)
        finally:
            context.done.set()
            with liveness.running_lock:
                liveness.running.pop((self.database, job.pk), None)
        return job.pk

    def _execute(self, kind: JobKind, context: JobContext) -> None:
        job = context.job
        heartbeat = threading.Thread(target=context.beat, args=(self.heartbeat_seconds,),
                                     name=f"cdp-job-{job.pk}-heartbeat", daemon=True)
        heartbeat.start()
        failure: Failure | None = None
        try:
            kind.run(context)
            if not context.ended:
                with write_transaction(self.engine) as connection:
                    context.succeed(connection)
            return
        except JobLost:
            log.warning("job %s (%s): attempt %s was taken from this worker; its changes were rolled back", job.pk,
                        job.kind, job.attempts)
            return
        except JobFailed as exc:
            try:
                with write_transaction(self.engine) as connection:
                    context.fail(connection, exc.message)
            except JobLost:
                log.warning("job %s: not marked failed (%s): it was no longer this worker's", job.pk, exc.message)
            return
        except JobStopped:
            failure = Failure(Cause.shutdown, "the server was shut down")
        except JobCancelled:
            failure = Failure(Cause.cancelled, "cancelled while it ran")
        except Exception as exc:  # noqa: BLE001 - a job must end, whatever happens
            log.error("job %s (%s) failed unexpectedly", job.pk, job.kind, exc_info=exc)
            failure = Failure(Cause.error, f"{type(exc).__name__}: {str(exc)[:500]}")
        finally:
            context.done.set()
        try:
            with write_transaction(self.engine) as connection:
                current = connection.execute(sa.select(jobs).where(*context._ours())).first()
                if current is None:
                    log.warning("job %s: not ended (%s): it was no longer this worker's", job.pk, failure.detail)
                    return
                end_without_handler(connection, job=Job.from_row(current), kind=kind, failure=failure, now=self.clock())
        except Exception:  # noqa: BLE001
            log.exception("could not record the end of job %s", job.pk)
