"""The due wave: profiles whose streaming answers can change with time alone, re-evaluated at
their instant.

Streaming evaluation (cdp.segments.streaming) stores, for each profile, the next instant at which
one of its timed segments' answers can change without new data (``segment_due``); saving a timed
segment makes the sandbox's profiles due for that segment (``segment_due_saved``, migration
0023). Here: the save's scheduling (:func:`schedule_segment`), one wave of due re-evaluations
(:func:`run_due`, short transactions, savepoints on PostgreSQL), the queue's depth for /metrics
(:func:`due_depth`) and the recurring job that runs the waves (:func:`due_job_kind`,
:func:`schedule_due_job`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.errors import Conflict
from cdp.schema import Schema
from cdp.segments.reads import reads_of
from cdp.segments.streaming import StreamingEvaluator
from cdp.segments.streaming_plan import streaming_plan
from cdp.segments.timing import _instant
from cdp.storage.memberships import sqlite_instant
from cdp.storage.models import profiles, segment_due, segment_due_saved

log = logging.getLogger("cdp.segments")


def timed_streaming_segments(connection: sa.Connection, sandbox: str) -> set[int]:
    """The pks of the sandbox's active streaming segments whose answers can change with time
    alone: the segments a profile's stored instant stands for."""
    plan = streaming_plan(connection, sandbox)
    return {plan.refs[i].pk for i in plan.timed}


def schedule_segment(connection: sa.Connection, *, sandbox: str, segment_pk: int, key: str,
                     catalogue: Mapping[str, str], schema: Schema, at: datetime) -> None:
    """A streaming segment just saved and evaluated set-wise (its memberships as of ``at``, its
    ``evaluated_at`` set to ``at``): when its answers can change with time, every profile of the
    sandbox is due at ``at`` at the latest in ``segment_due_saved`` (an earlier row is kept), so
    the due job computes each one's next instant for the segments evaluated since — this one, not
    all of the profile's timed segments (migration 0023; one statement here, the work is the
    job's). The rows are written in profile order, the order in which a due wave's transaction
    takes them (:func:`run_due`): on PostgreSQL an upsert over the sandbox's rows in another order
    deadlocked with a wave holding some of them."""
    try:
        reads = reads_of(key, catalogue, schema)
    except PqlError:
        return
    if not reads.timed:
        return
    dialect = connection.dialect.name
    connection.exec_driver_sql(_SCHEDULE[dialect], {"sandbox": sandbox, "at": sqlite_instant(at)}
                               if dialect == "sqlite" else {"sandbox": sandbox, "at": at})


_SCHEDULE = {
    "sqlite": "INSERT INTO segment_due_saved (profile_pk, sandbox, due_at) SELECT pk, sandbox, :at FROM profiles "
              "WHERE sandbox = :sandbox ORDER BY pk ON CONFLICT (profile_pk) DO UPDATE SET due_at = "
              "min(segment_due_saved.due_at, excluded.due_at)",
    "postgresql": "INSERT INTO segment_due_saved (profile_pk, sandbox, due_at) SELECT pk, sandbox, %(at)s FROM profiles "
                  "WHERE sandbox = %(sandbox)s ORDER BY pk ON CONFLICT (profile_pk) DO UPDATE SET due_at = "
                  "LEAST(segment_due_saved.due_at, excluded.due_at)",
}


def run_due(connection_factory, *, now: datetime, limit: int = 1000, metrics: Any = None,
            budget: float = 0.025, batch: int = 50) -> int:
    """Re-evaluate the profiles whose instant has come (due_at ≤ now): up to ``limit`` profiles,
    oldest first, each all its timed streaming segments; returns how many were evaluated.

    Several profiles share a transaction (one commit, one look at the sandbox's plan, one check
    that they still exist) while it stays short: it ends after ``budget`` seconds of work or ``batch``
    profiles — on SQLite it holds the write lock that ingest requests wait for. On PostgreSQL each
    profile's re-evaluation is in a savepoint of its own: one that loses a race with an ingest
    writing the same profile (which re-evaluated it) is rolled back alone, its rows stay due and
    the next wave sees them. A crash loses at most the open transaction's work, whose rows are
    still due."""
    with connection_factory() as connection:
        # the oldest due of either kind (a profile due in both counts once)
        oldest: dict[int, tuple] = {}
        for query in _DUE_ROWS:
            for row in connection.execute(query, {"b_now": now, "b_limit": limit}):
                if row.profile_pk not in oldest or row.due_at < oldest[row.profile_pk][0]:
                    oldest[row.profile_pk] = (row.due_at, row.sandbox)
    rows = sorted(oldest.items(), key=lambda item: item[1][0])[:limit]
    # the wave's (oldest due) profiles in profile order: the order in which saving a segment
    # upserts their rows (schedule_segment), so that the two cannot deadlock on PostgreSQL
    items = sorted(((sandbox, pk) for pk, (_, sandbox) in rows), key=lambda item: item[1])
    done, position = 0, 0
    while position < len(items):
        chunk = items[position:position + batch]
        first, counted = position, done
        try:
            with connection_factory() as connection:
                savepoints = connection.dialect.name == "postgresql"
                existing = set(connection.execute(_EXISTING, {"b_pks": [pk for _, pk in chunk]}).scalars())
                evaluators: dict[str, StreamingEvaluator] = {}
                started = perf_counter()
                # the chunk's history rows moved once, at its end (StreamingEvaluator.deferred): the
                # transaction holds every profile's locks until it ends, so each profile's write
                # locking its own segments' rows would lock them in no one order
                with ExitStack() as deferring:
                    for sandbox, profile_pk in chunk:
                        position += 1
                        if profile_pk in existing:
                            evaluator = evaluators.get(sandbox)
                            if evaluator is None:
                                evaluator = evaluators[sandbox] = StreamingEvaluator(connection, sandbox=sandbox,
                                                                                     metrics=metrics)
                                deferring.enter_context(evaluator.deferred())
                            if not savepoints:
                                evaluator.due(profile_pk, now)
                            else:
                                moves = evaluator.moves
                                before = {key: delta[:] for key, delta in moves.items()}
                                try:
                                    with connection.begin_nested():
                                        evaluator.due(profile_pk, now)
                                except (sa.exc.IntegrityError, sa.exc.OperationalError) as error:
                                    moves.clear()  # the profile's deltas are rolled back with its savepoint
                                    moves.update(before)
                                    log.info("due re-evaluation of profile %s lost a race: %s", profile_pk,
                                             str(error).splitlines()[0])
                                    continue
                        done += 1
                        if perf_counter() - started > budget:
                            break
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as error:
            # the transaction itself failed (SQLite: the lock not had in time): none of its work
            # is kept, its rows stay due for the next wave
            log.info("due re-evaluation lost its transaction: %s", str(error).splitlines()[0])
            position, done = first + len(chunk), counted
    return done


_DUE_ROWS = [sa.select(table.c.sandbox, table.c.profile_pk, table.c.due_at)
             .where(table.c.due_at <= sa.bindparam("b_now"))
             .order_by(table.c.due_at).limit(sa.bindparam("b_limit")) for table in (segment_due, segment_due_saved)]
_EXISTING = sa.select(profiles.c.pk).where(profiles.c.pk.in_(sa.bindparam("b_pks", expanding=True)))


def due_depth(connection: sa.Connection, now: datetime) -> tuple[int, int]:
    """(profiles with a scheduled re-evaluation, of which due by ``now``): their own instant or a
    saved segment's (a profile with both counts once)."""
    both = sa.union(sa.select(segment_due.c.profile_pk, segment_due.c.due_at),
                    sa.select(segment_due_saved.c.profile_pk, segment_due_saved.c.due_at)).subquery()
    total, due = connection.execute(sa.select(
        sa.select(sa.func.count(sa.distinct(both.c.profile_pk))).scalar_subquery(),
        sa.select(sa.func.count(sa.distinct(both.c.profile_pk))).where(both.c.due_at <= now).scalar_subquery())).one()
    return total, due


# ---- the due job ---------------------------------------------------------------------------------

DUE_KIND = "segments.due"
DUE_EVERY = timedelta(seconds=30)


def due_job_kind(metrics: Any = None) -> Any:
    """Re-evaluates the profiles whose instant has come (all their timed streaming segments), at
    the runner's clock; recurring (:func:`schedule_due_job`)."""
    from cdp.jobs import JobKind

    def run(context: Any) -> None:
        from cdp.storage.database import write_transaction

        now = context.clock()
        if metrics is not None:
            with context.engine.connect() as connection:
                scheduled, overdue = due_depth(connection, now)
                oldest = min((at for at in (connection.execute(sa.select(sa.func.min(table.c.due_at))
                                                               .where(table.c.due_at <= now)).scalar()
                                            for table in (segment_due, segment_due_saved)) if at is not None),
                             default=None)
            metrics.due_queue(scheduled, overdue, (now - _instant(oldest)).total_seconds() if oldest else 0.0)
        while run_due(lambda: write_transaction(context.engine), now=now, metrics=metrics):
            pass  # in waves; each profile's re-evaluation commits on its own

    return JobKind(name=DUE_KIND, run=run, max_attempts=3, backoff_seconds=5.0,
                   description="streaming segments: profiles whose answer can change with time alone, re-evaluated")


def schedule_due_job(engine: sa.Engine, registry: Any, *, every: timedelta = DUE_EVERY) -> None:
    """Enqueue the recurring due job once (kept across restarts: a stored job of the kind is reused,
    its interval brought to ``every`` when the setting changed)."""
    from cdp.jobs.queue import enqueue
    from cdp.storage.models import jobs
    from cdp.storage.database import write_transaction

    try:
        with write_transaction(engine) as connection:
            stored = connection.execute(sa.select(jobs.c.pk, jobs.c.interval_seconds)
                                        .where(jobs.c.kind == DUE_KIND, jobs.c.key == DUE_KIND)).first()
            if stored is None:
                enqueue(connection, kind=registry[DUE_KIND], payload={}, key=DUE_KIND, every=every)
            elif stored.interval_seconds != every.total_seconds():
                connection.execute(jobs.update().where(jobs.c.pk == stored.pk)
                                   .values(interval_seconds=every.total_seconds()))
    except Conflict:  # another process starting on the same database stored it first (cdp serve --workers)
        return
    except (sa.exc.OperationalError, sa.exc.InternalError) as error:  # a database refusing writes: /healthz says so
        log.warning("the %s job could not be scheduled: %s", DUE_KIND, str(error).splitlines()[0])
