"""The job package on SQLite and on PostgreSQL: one claim per job under concurrent worker
processes, retries after their backoff, a dead worker's job taken back (a real process killed),
a silent worker's job taken back by the heartbeat rule, cancellation, timed and recurring jobs
(the clock injected), progress while a job runs, and fenced writes (a job taken from its worker
commits nothing). Each test uses kinds of its own, so the jobs of one test never run in another.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.jobs import (Cause, JobFailed, JobKind, JobStatus, Registry, Runner, cancel, enqueue, get_job, requeue,
                      sweep)
from cdp.storage.models import jobs

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def _name(what: str) -> str:
    return f"test.{what}.{uuid.uuid4().hex[:8]}"


def _enqueue(engine, kind: JobKind, **kwargs) -> int:
    with engine.begin() as connection:
        return enqueue(connection, kind=kind, payload=kwargs.pop("payload", {}), **kwargs)


def _job(engine, job_id: int):
    with engine.connect() as connection:
        return get_job(connection, job_id)


def _until(what: str, check, timeout: float = 30, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def _worker(url: str, kind: str, mode: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.jobs.worker", url, kind, mode, str(folder)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=open(folder / f"stderr-{mode}.log", "a"))


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def engine(migrated_engine):
    return migrated_engine


# ---- one claim per job ---------------------------------------------------------------------------

def test_each_job_is_claimed_once_by_concurrent_worker_processes(engine, tmp_path):
    name = _name("record")
    url = engine.url.render_as_string(hide_password=False)
    processes = [_worker(url, name, "record", tmp_path) for _ in range(2)]
    try:
        _until("both workers to be ready", lambda: len(list(tmp_path.glob("ready-*"))) == 2, timeout=60)
        kind = JobKind(name, run=lambda context: None)
        ids = [_enqueue(engine, kind) for _ in range(40)]

        def finished() -> bool:
            with engine.connect() as connection:
                return connection.execute(sa.select(sa.func.count()).select_from(jobs).where(
                    jobs.c.pk.in_(ids), jobs.c.status == "succeeded")).scalar_one() == len(ids)

        _until("every job to succeed", finished, timeout=120, every=0.05)
    finally:
        for process in processes:
            _stop(process)
    runs = {log.stem: [int(line) for line in log.read_text().split()] for log in tmp_path.glob("*.log")
            if log.stem.isdigit()}
    ran = sorted(job_id for job_ids in runs.values() for job_id in job_ids)
    assert ran == sorted(ids)  # every job ran exactly once
    assert len(runs) == 2 and all(runs.values()), {pid: len(job_ids) for pid, job_ids in runs.items()}
    with engine.connect() as connection:
        rows = connection.execute(sa.select(jobs.c.attempts, jobs.c.worker).where(jobs.c.pk.in_(ids))).all()
    assert {row.attempts for row in rows} == {1}
    assert {row.worker.split(":")[1] for row in rows} == set(runs)  # the worker recorded is the one that ran it


def test_a_claim_skips_a_job_locked_by_another_transaction(postgres_url_factory):
    """PostgreSQL: a row locked by another worker's claim is skipped, not waited for."""
    from cdp.jobs import claim_next
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory(), connect_args={"options": "-c lock_timeout=3000"})
    try:
        upgrade(engine)
        kind = JobKind(_name("locked"), run=lambda context: None)
        first, second = _enqueue(engine, kind, now=T0), _enqueue(engine, kind, now=T0)
        with engine.connect() as holder, holder.begin():
            locked = holder.execute(sa.select(jobs.c.pk).where(jobs.c.pk == first).with_for_update()).scalar_one()
            assert locked == first
            claimed = claim_next(engine, kinds=[kind.name], worker="other:1:x", now=T0)
            assert claimed is not None and claimed.pk == second and claimed.status == JobStatus.running
        assert claim_next(engine, kinds=[kind.name], worker="other:1:x", now=T0).pk == first
        assert claim_next(engine, kinds=[kind.name], worker="other:1:x", now=T0) is None
    finally:
        engine.dispose()


def test_a_keyed_job_stored_by_a_concurrent_transaction_is_a_conflict(postgres_url_factory):
    """PostgreSQL: two processes starting at once both find no job of a key and both insert it;
    the second insert waits for the first transaction and then violates the unique key. That is
    the same refusal as the check's (Conflict, 409 job_exists), not an IntegrityError that stops a
    server's start (`cdp serve --workers 2` on a fresh database)."""
    from cdp.errors import Conflict
    from cdp.segments.due import DUE_KIND, schedule_due_job
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    try:
        upgrade(engine)
        kind = JobKind(_name("keyed"), run=lambda context: None)
        outcome: list[object] = []
        with engine.connect() as first, first.begin():
            enqueue(first, kind=kind, payload={}, key="k")

            def second() -> None:
                with engine.connect() as connection, connection.begin():
                    try:
                        outcome.append(enqueue(connection, kind=kind, payload={}, key="k"))
                    except Conflict as conflict:
                        outcome.append(conflict)

            waiting = threading.Thread(target=second)
            waiting.start()
            time.sleep(0.5)  # the second has passed its check and waits on the first's key
            assert outcome == []
        waiting.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], Conflict) and outcome[0].code == "job_exists"

        # and the due job's scheduling at start-up takes that refusal as "scheduled already"
        registry = Registry([JobKind(DUE_KIND, run=lambda context: None)])
        with engine.connect() as first, first.begin():
            enqueue(first, kind=registry[DUE_KIND], payload={}, key=DUE_KIND, every=timedelta(seconds=30))
            failures: list[BaseException] = []

            def start() -> None:
                try:
                    schedule_due_job(engine, registry)
                except BaseException as error:  # noqa: BLE001 - a thread's exception, reported by the test
                    failures.append(error)

            starting = threading.Thread(target=start)
            starting.start()
            time.sleep(0.5)
        starting.join(10)
        assert not starting.is_alive() and failures == []
        with engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(jobs)
                                      .where(jobs.c.kind == DUE_KIND)).scalar_one() == 1
    finally:
        engine.dispose()


# ---- retries, backoff, failure -------------------------------------------------------------------

def test_a_failed_job_is_retried_after_its_backoff(engine):
    clock = Clock()
    attempts: list[int] = []

    def flaky(context) -> None:
        attempts.append(context.attempt)
        if context.attempt < 3:
            raise RuntimeError(f"the remote end is down (attempt {context.attempt})")

    kind = JobKind(_name("flaky"), run=flaky, max_attempts=3, backoff_seconds=10)
    runner = Runner(engine, Registry([kind]), clock=clock)
    job_id = _enqueue(engine, kind, now=clock())
    assert runner.run_once() == job_id
    job = _job(engine, job_id)
    assert (job.status, job.attempts, job.run_at) == (JobStatus.queued, 1, T0 + timedelta(seconds=10))
    assert job.last_error == "error: RuntimeError: the remote end is down (attempt 1)"
    clock.advance(seconds=9)
    assert runner.run_once() is None  # not due yet
    clock.advance(seconds=1)
    assert runner.run_once() == job_id
    job = _job(engine, job_id)
    assert (job.status, job.attempts, job.run_at) == (JobStatus.queued, 2, clock() + timedelta(seconds=20))
    clock.advance(seconds=19)
    assert runner.run_once() is None  # the backoff doubled
    clock.advance(seconds=1)
    assert runner.run_once() == job_id
    job = _job(engine, job_id)
    assert (job.status, job.attempts, job.finished_at) == (JobStatus.succeeded, 3, clock())
    assert attempts == [1, 2, 3]


def test_a_job_out_of_attempts_fails_for_good_and_its_domain_is_told(engine):
    clock = Clock()
    told = []

    def broken(context) -> None:
        raise ValueError("bad data")

    kind = JobKind(_name("broken"), run=broken, max_attempts=2, backoff_seconds=1,
                   on_failure=lambda connection, job, failure: told.append((job.pk, failure)))
    runner = Runner(engine, Registry([kind]), clock=clock)
    job_id = _enqueue(engine, kind, now=clock())
    runner.run_once()
    clock.advance(seconds=1)
    runner.run_once()
    job = _job(engine, job_id)
    assert (job.status, job.attempts, job.last_error) == (JobStatus.failed, 2, "error: ValueError: bad data")
    assert [(pk, failure.cause) for pk, failure in told] == [(job_id, Cause.error)]
    clock.advance(hours=1)
    assert runner.run_once() is None

    # a handler that knows a retry cannot help says so: failed at once, whatever attempts remain
    def refuse(context) -> None:
        raise JobFailed("the file is not a CSV file")

    hopeless = JobKind(_name("hopeless"), run=refuse, max_attempts=5)
    other = _enqueue(engine, hopeless, now=clock())
    Runner(engine, Registry([hopeless]), clock=clock).run_once()
    job = _job(engine, other)
    assert (job.status, job.attempts, job.last_error) == (JobStatus.failed, 1, "the file is not a CSV file")
    # a person may run it again
    with engine.begin() as connection:
        assert requeue(connection, job_id=other, now=clock()).status == JobStatus.queued


# ---- dead and silent workers ---------------------------------------------------------------------

def test_the_job_of_a_killed_worker_is_taken_back_and_run_again(engine, tmp_path):
    name = _name("block")
    url = engine.url.render_as_string(hide_password=False)
    kind = JobKind(name, run=lambda context: None, max_attempts=2, backoff_seconds=5)
    job_id = _enqueue(engine, kind)
    process = _worker(url, name, "block", tmp_path)
    try:
        _until("the worker to start the job", lambda: (tmp_path / f"started-{job_id}").exists(), timeout=60)
        running = _job(engine, job_id)
        assert running.status == JobStatus.running and running.worker.split(":")[1] == str(process.pid)
        first_beat = running.heartbeat_at
        _until("a heartbeat", lambda: _job(engine, job_id).heartbeat_at > first_beat)
    except BaseException:
        _stop(process)
        raise
    process.kill()  # SIGKILL: no shutdown of any kind
    process.wait()

    clock = Clock(datetime.now(timezone.utc))
    runner = Runner(engine, Registry([kind]), clock=clock)
    assert _job(engine, job_id).status == JobStatus.running  # nothing changes by itself
    assert runner.sweep().get(job_id) == JobStatus.queued  # its process is gone: at once, no 30 s wait
    job = _job(engine, job_id)
    assert job.status == JobStatus.queued and job.worker is None and job.attempts == 1
    assert f"worker_gone: worker {running.worker} no longer runs" == job.last_error
    assert job.run_at == clock() + timedelta(seconds=5)
    clock.advance(seconds=5)
    assert runner.run_once() == job_id
    job = _job(engine, job_id)
    assert (job.status, job.attempts) == (JobStatus.succeeded, 2)


def test_a_silent_worker_elsewhere_is_judged_by_its_heartbeat(engine):
    clock = Clock()
    told = []
    kind = JobKind(_name("silent"), run=lambda context: None, max_attempts=1,
                   on_failure=lambda connection, job, failure: told.append(failure))
    job_id = _enqueue(engine, kind, now=clock())
    with engine.begin() as connection:  # a worker on another host claimed it and beat at T0
        connection.execute(jobs.update().where(jobs.c.pk == job_id).values(
            status="running", worker="elsewhere:77:0badcafe", attempts=1, heartbeat_at=T0, started_at=T0))
    registry = Registry([kind])
    clock.advance(seconds=30)
    assert job_id not in sweep(engine, registry=registry, now=clock())
    with engine.begin() as connection:
        error = None
        try:
            requeue(connection, job_id=job_id, now=clock())
        except Exception as exc:  # noqa: BLE001
            error = exc
    assert error is not None and error.code == "job_not_retryable"
    clock.advance(seconds=1)
    assert sweep(engine, registry=registry, now=clock()).get(job_id) == JobStatus.failed
    job = _job(engine, job_id)
    assert job.status == JobStatus.failed and job.finished_at == clock()
    assert [(f.cause, f.detail) for f in told] == [
        (Cause.worker_gone, "no heartbeat from worker elsewhere:77:0badcafe for 31 s")]


# ---- cancellation --------------------------------------------------------------------------------

def test_cancelling_a_queued_job_and_a_running_one(engine):
    told = []
    started = threading.Event()

    def loop(context) -> None:
        started.set()
        while True:
            context.checkpoint()
            time.sleep(0.01)

    kind = JobKind(_name("loop"), run=loop, max_attempts=3,
                   on_failure=lambda connection, job, failure: told.append((job.pk, failure.cause)))
    queued = _enqueue(engine, kind, run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    with engine.begin() as connection:
        assert cancel(connection, job_id=queued).status == JobStatus.cancelled
    with engine.begin() as connection:
        with pytest.raises(Exception, match="has ended"):
            cancel(connection, job_id=queued)

    runner = Runner(engine, Registry([kind]), workers=1, poll_seconds=0.05, heartbeat_seconds=0.05)
    job_id = _enqueue(engine, kind)
    runner.start()
    try:
        assert started.wait(30)
        with engine.begin() as connection:
            asked = cancel(connection, job_id=job_id)
        assert asked.status == JobStatus.running and asked.cancel_requested
        job = _until("the job to stop", lambda: (j := _job(engine, job_id)).status != JobStatus.running and j)
    finally:
        runner.stop()
    assert (job.status, job.attempts, job.cancel_requested) == (JobStatus.cancelled, 1, False)
    assert job.last_error == "cancelled: cancelled while it ran"
    assert told == [(job_id, Cause.cancelled)]  # not retried although attempts remain
    assert _job(engine, queued).attempts == 0  # the cancelled queued job never ran


# ---- timed and recurring work --------------------------------------------------------------------

def test_a_scheduled_job_does_not_run_before_its_time(engine):
    clock = Clock()
    ran: list[datetime] = []
    kind = JobKind(_name("timed"), run=lambda context: ran.append(clock()))
    runner = Runner(engine, Registry([kind]), clock=clock)
    job_id = _enqueue(engine, kind, run_at=T0 + timedelta(minutes=10), now=clock())
    assert runner.run_once() is None
    clock.advance(minutes=9, seconds=59)
    assert runner.run_once() is None and _job(engine, job_id).status == JobStatus.queued
    clock.advance(seconds=1)
    assert runner.run_once() == job_id
    assert ran == [T0 + timedelta(minutes=10)] and _job(engine, job_id).status == JobStatus.succeeded


def test_a_recurring_job_runs_at_each_instant_and_skips_missed_ones(engine):
    clock = Clock()
    ran: list[datetime] = []
    kind = JobKind(_name("hourly"), run=lambda context: ran.append(clock()))
    runner = Runner(engine, Registry([kind]), clock=clock)
    job_id = _enqueue(engine, kind, every=timedelta(hours=1), now=clock())
    assert runner.run_once() == job_id
    job = _job(engine, job_id)
    assert (job.status, job.run_at, job.attempts) == (JobStatus.queued, T0 + timedelta(hours=1), 0)
    clock.advance(minutes=59)
    assert runner.run_once() is None
    clock.advance(minutes=1)
    assert runner.run_once() == job_id
    clock.advance(hours=5, minutes=30)  # the server was down for five instants: one run, then the next instant
    assert runner.run_once() == job_id
    assert runner.run_once() is None
    assert _job(engine, job_id).run_at == T0 + timedelta(hours=7)
    assert ran == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=6, minutes=30)]
    with pytest.raises(Exception, match="exists already"):
        with engine.begin() as connection:  # one job per kind and key
            enqueue(connection, kind=kind, payload={}, key="nightly")
            enqueue(connection, kind=kind, payload={}, key="nightly")


# ---- progress and fencing ------------------------------------------------------------------------

def test_progress_is_visible_while_the_job_runs(engine):
    halfway, release = threading.Event(), threading.Event()

    def work(context) -> None:
        context.progress(5, 10, "half of the rows", flush=True)
        halfway.set()
        assert release.wait(30)
        context.progress(10, 10, "done")

    kind = JobKind(_name("progress"), run=work)
    runner = Runner(engine, Registry([kind]), workers=1, poll_seconds=0.05, heartbeat_seconds=0.05)
    job_id = _enqueue(engine, kind)
    runner.start()
    try:
        assert halfway.wait(30)
        job = _job(engine, job_id)
        assert (job.status, job.progress_done, job.progress_total, job.message) == (
            JobStatus.running, 5, 10, "half of the rows")
        release.set()
        _until("the job to succeed", lambda: _job(engine, job_id).status == JobStatus.succeeded)
    finally:
        release.set()
        runner.stop()


def test_a_job_taken_from_its_worker_commits_nothing(engine):
    """The handler writes its outcome (here: a follow-up job) and ends its job in one
    transaction; when the job was taken meanwhile, that transaction rolls back."""
    from cdp.storage.database import write_transaction

    clock = Clock()
    follow_up = JobKind(_name("follow-up"), run=lambda context: None)
    taken = threading.Event()

    def work(context) -> None:
        with engine.begin() as connection:  # another judge takes the job: a new attempt elsewhere
            connection.execute(jobs.update().where(jobs.c.pk == context.job_id).values(
                worker="elsewhere:1:x", attempts=jobs.c.attempts + 1))
        taken.set()
        with write_transaction(engine) as connection:
            enqueue(connection, kind=follow_up, payload={"after": context.job_id}, now=clock())
            context.succeed(connection)

    kind = JobKind(_name("fenced"), run=work)
    job_id = _enqueue(engine, kind, now=clock())
    assert Runner(engine, Registry([kind]), clock=clock).run_once() == job_id
    assert taken.is_set()
    job = _job(engine, job_id)
    assert (job.status, job.worker, job.attempts) == (JobStatus.running, "elsewhere:1:x", 2)
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(jobs)
                                  .where(jobs.c.kind == follow_up.name)).scalar_one() == 0


def test_a_kind_is_registered_once():
    kind = JobKind("test.once", run=lambda context: None)
    registry = Registry([kind])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(JobKind("test.once", run=lambda context: None))
    with pytest.raises(ValueError, match="max_attempts"):
        JobKind("test.never", run=lambda context: None, max_attempts=0)
    assert kind.backoff(1) == timedelta(seconds=10) and kind.backoff(3) == timedelta(seconds=40)
    assert JobKind("test.capped", run=lambda context: None, max_backoff_seconds=60).backoff(20) == timedelta(minutes=1)
