"""The re-evaluation job (``identity.reevaluate``): the sandbox's linking rules applied to every
graph now (cdp/identity/reevaluation.py), then the memberships of every profile it changed
re-evaluated — batch and streaming segments, entries and exits to the outbox — in the same
transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cdp.identity.reevaluation import KIND_NAME, reevaluate_sandbox
from cdp.jobs.queue import enqueue
from cdp.jobs.registry import JobKind
from cdp.segments.membership import MembershipRefresher
from cdp.segments.reads import Change
from cdp.segments.streaming import StreamingEvaluator
from cdp.storage.database import write_transaction


def _run(context: Any) -> None:
    sandbox = context.job.sandbox
    with write_transaction(context.engine) as connection:
        now = context.clock()
        groups, changed = reevaluate_sandbox(connection, sandbox=sandbox, now=now, checkpoint=context.checkpoint)
        memberships = MembershipRefresher(connection, sandbox=sandbox)
        streaming = StreamingEvaluator(connection, sandbox=sandbox)
        # the history rows moved once, at the end, in one order (as a request of several records:
        # cdp/segments/streaming.py profiles_changed): no deadlock with concurrent writers
        with streaming.deferred():
            for profile_pk in sorted(changed):
                memberships.refresh(profile_pk, now)
                streaming.profile_changed(profile_pk, Change(everything=True), now)
        context.succeed(connection, f"{groups} graph(s) changed by the linking rules; {len(changed)} profile(s) "
                                    f"rewritten")


KIND = JobKind(name=KIND_NAME, run=_run, max_attempts=3, backoff_seconds=5.0,
               description="the sandbox's identity linking rules applied to every graph")


def queue_reevaluation(connection: sa.Connection, *, sandbox: str) -> int:
    """Queue a re-evaluation of the sandbox's graphs (in the caller's transaction); the job's id."""
    return enqueue(connection, kind=KIND, payload={}, sandbox=sandbox)
