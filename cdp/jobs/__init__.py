"""Background work: one durable job table for everything that runs later — batch files today;
segment runs, scheduled re-evaluations, exports and webhook deliveries next (docs/jobs.md).

* :mod:`cdp.jobs.registry` — a job kind: its name, its handler, retries and backoff, and the hook
  that lets its domain record a failure. A domain adds work by registering a kind; the app
  assembles the registry (cdp/api/app.py).
* :mod:`cdp.jobs.queue` — the table's operations: :func:`enqueue` (now, at ``run_at``, or
  ``every`` an interval), :func:`claim_next` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the
  write lock on SQLite), :func:`cancel`, :func:`requeue`, :func:`sweep`.
* :mod:`cdp.jobs.runner` — :class:`Runner`: worker threads, heartbeats, the sweeper;
  :class:`JobContext`: what a handler gets (checkpoint, progress, fenced writes).
* :mod:`cdp.jobs.liveness` — when a running job's worker is gone.

Jobs survive a restart (they are rows), are claimed by one worker, retried with backoff, and
show their status and progress; every write a worker makes to its job is fenced by its attempt.
"""

from cdp.jobs.liveness import STALE_AFTER_SECONDS, worker_gone, worker_id
from cdp.jobs.queue import Job, JobStatus, cancel, claim_next, enqueue, get_job, requeue, sweep
from cdp.jobs.registry import Cause, Failure, JobKind, Registry
from cdp.jobs.runner import JobCancelled, JobContext, JobFailed, JobLost, JobStopped, Runner

__all__ = [
    "STALE_AFTER_SECONDS", "Cause", "Failure", "Job", "JobCancelled", "JobContext", "JobFailed", "JobKind", "JobLost",
    "JobStatus", "JobStopped", "Registry", "Runner", "cancel", "claim_next", "enqueue", "get_job", "requeue", "sweep",
    "worker_gone", "worker_id",
]
