"""The identity graph's two statements per resolution that touch every identity of a request —
who owns them, and marking them seen — written once per dialect and sent straight to the driver
with the identities as ONE parameter, however many there are.

SQLAlchemy's expanding ``IN`` renders a placeholder per value and processes each on every call:
measured, a request of 500 records spent ~16 ms a statement doing so, several times what SQLite
spent running it. Here SQLite gets the pairs as one JSON text (``json_each``, the outer loop of a
``CROSS JOIN`` so that each pair is one probe of the unique index on sandbox, namespace and
value), PostgreSQL as two parallel arrays unnested into the pairs, each pair one probe of the
same index, each array sent as one array literal (cdp/identity/listed.py). The answers equal
the Core statements' (tests/test_identity_owners.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

import sqlalchemy as sa

from cdp.identity.listed import array_literal
from cdp.storage.database import sqlite_text
from cdp.storage.driver import driver


class Owner(NamedTuple):
    namespace: str
    value: str
    profile_pk: int
    pk: int  # the identity's key
    external_id: str  # the owner's id
    event_count: int  # the owner's events (profiles.event_count): the per-profile limit needs no COUNT


_SQLITE_OWNERS = """
    SELECT i.namespace, i.value, i.profile_pk, i.pk, p.external_id, p.event_count
    FROM json_each(?) AS j
    CROSS JOIN identities AS i ON i.sandbox = ? AND i.namespace = json_extract(j.value, '$[0]')
                                 AND i.value = json_extract(j.value, '$[1]')
    CROSS JOIN profiles AS p ON p.pk = i.profile_pk"""
# PostgreSQL, many pairs (a multi-record request, a batch): the pairs as two parallel arrays,
# unnested; each pair's key found by its own probe of the unique index (a scalar subquery per pair:
# never a hash join over the whole table), then the rows read, ordered and locked by key as in
# the few-pairs statement below. It was ``namespace = ANY(…) AND value = ANY(…)``: planned with
# ``sandbox = $1`` as the only index condition on a new database (no statistics), it read every
# identity of the sandbox and compared each with every value of the array — 240 ms a 500-record
# request at 12,000 identities, 244–956 µs a record of PostgreSQL's time in the identity-graph bench;
# a plain join of the unnested pairs was planned as a hash join over every identity of the sandbox
# (bench/RESULTS.md, session 12; tests/test_identity_owners_many.py).
_POSTGRESQL_OWNERS = """
    SELECT i.namespace, i.value, i.profile_pk, i.pk, p.external_id, p.event_count
    FROM identities AS i JOIN profiles AS p ON p.pk = i.profile_pk
    WHERE i.pk = ANY(ARRAY(
        SELECT (SELECT x.pk FROM identities AS x WHERE x.sandbox = %s AND x.namespace = w.namespace
                                                     AND x.value = w.value)
        FROM unnest(%s::varchar[], %s::varchar[]) AS w(namespace, value)))"""
# the owners and the identities locked as they are read (cdp/identity/graph.py: concurrency): a
# merge, split or deletion of an owner waits for us, or we for it — and then, the identity being
# locked too, PostgreSQL checks its newest version: an identity moved or gone meanwhile is not
# reported as owned (the claim that follows fails and the write is tried again). In key order.
# ``FOR KEY SHARE`` of the identities too, not the update lock that marking them seen takes later
# (mark_seen): a writer's locks then come in one order — new identities claimed (their unique
# index entries, sorted), then the existing ones locked for the touch (by key) — so one waiting in
# its claims holds no lock a toucher waits for. Taking NO KEY UPDATE here instead (one statement
# less) was tried: a writer holding it waited in its claim for a second one, which waited at its
# touch for the first (2 deadlocks in 6,000 single-record requests).
_POSTGRESQL_OWNERS_LOCKED = _POSTGRESQL_OWNERS + " ORDER BY p.pk, i.pk FOR KEY SHARE OF p, i"

_SQLITE_TOUCH = """
    UPDATE identities SET last_seen = ?
    WHERE pk IN (SELECT value FROM json_each(?)) AND (last_seen IS NULL OR last_seen < ?)"""
# PostgreSQL: the identities are locked in key order first (LockRows above the Sort), by a
# statement of its own, and then updated. A plain ``UPDATE … WHERE pk = ANY(…)`` locks them in the
# order its scan meets them (their place in the heap, which every update moves): two writers
# touching the same identities each held one the other waited for — a deadlock, broken only after
# deadlock_timeout (1 s; tests/test_identity_touch_lock_order.py). An ``UPDATE … FROM (SELECT …
# ORDER BY pk FOR NO KEY UPDATE)`` in one statement still deadlocked: its outer scan, on the
# statement's snapshot, meets the old version of a row the subquery locked in its newer one, and
# queues for it behind a third writer that waits for us.
_POSTGRESQL_LOCK_FOR_TOUCH = "SELECT pk FROM identities WHERE pk = ANY(%s::bigint[]) ORDER BY pk FOR NO KEY UPDATE"
_POSTGRESQL_TOUCH = """
    UPDATE identities SET last_seen = %s
    WHERE pk = ANY(%s::bigint[]) AND (last_seen IS NULL OR last_seen < %s)"""
# one identity (most events carry one): by key equality. ``pk = ANY($2)`` is estimated at ten keys,
# and the plan an ingest request's connection caches for it (plan_cache_mode = auto) was a
# sequential scan of identities while the table had no statistics yet (bench/RESULTS.md, session 11)
_POSTGRESQL_TOUCH_ONE = """
    UPDATE identities SET last_seen = %s
    WHERE pk = %s::bigint AND (last_seen IS NULL OR last_seen < %s)"""


# A few pairs (a streaming record carries one or two identities): each pair found by equality on
# all three columns of the unique index — one probe of it whatever PostgreSQL knows of the table.
# With ``namespace = ANY(…) AND value = ANY(…)`` the planner may instead take ``sandbox = $1`` alone
# as the index condition and filter the rest, and did while the tables had no statistics yet (a
# new database: autovacuum analyzes a table only after a minute): every identity of the sandbox
# read for one (EXPLAIN: "Index Cond: sandbox = … Rows Removed by Filter: 194"), per request,
# growing with the sandbox (bench/RESULTS.md, session 11). Two or more pairs: each pair's key by
# its own probe, the rows then read and locked by key as before (an OR of the pairs' equalities
# was planned as a sequential scan of all identities). The rows, their order and their locks are
# those of the ``ANY`` statement.
_PAIRS_AS_EQUALITIES = 4
_SELECT_OWNERS = ("SELECT i.namespace, i.value, i.profile_pk, i.pk, p.external_id, p.event_count "
                  "FROM identities AS i JOIN profiles AS p ON p.pk = i.profile_pk WHERE ")
_KEY_OF_PAIR = "(SELECT x.pk FROM identities AS x WHERE x.sandbox = %s AND x.namespace = %s AND x.value = %s)"


@functools.lru_cache(maxsize=2 * _PAIRS_AS_EQUALITIES)
def _owners_of_pairs(count: int, lock: bool) -> str:
    if count == 1:
        sql = _SELECT_OWNERS + "i.sandbox = %s AND i.namespace = %s AND i.value = %s"
    else:
        sql = _SELECT_OWNERS + "i.pk = ANY(ARRAY[" + ", ".join([_KEY_OF_PAIR] * count) + "])"
    return sql + (" ORDER BY p.pk, i.pk FOR KEY SHARE OF p, i" if lock else "")


def find_owners(connection: sa.Connection, sandbox: str, pairs: Sequence[tuple[str, str]], *,
                lock: bool = False) -> list[Owner]:
    """The stored identities among ``pairs`` (namespace, value) with their owners; ``lock``
    (PostgreSQL): the owners are locked ``FOR KEY SHARE``, in key order."""
    if not pairs:
        return []
    if connection.dialect.name == "sqlite":
        text = json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))
        return [Owner(*row) for row in driver(connection, _SQLITE_OWNERS, (text, sandbox), rows=True)]
    wanted = set(pairs)
    if len(wanted) <= _PAIRS_AS_EQUALITIES:
        parameters = tuple(x for namespace, value in sorted(wanted) for x in (sandbox, namespace, value))
        rows = driver(connection, _owners_of_pairs(len(wanted), lock), parameters, rows=True)
        return [Owner(*row) for row in rows]
    ordered = sorted(wanted)
    sql = _POSTGRESQL_OWNERS_LOCKED if lock else _POSTGRESQL_OWNERS
    rows = driver(connection, sql, (sandbox, array_literal([namespace for namespace, _ in ordered]),
                                    array_literal([value for _, value in ordered])), rows=True)
    return [Owner(*row) for row in rows]


# PostgreSQL: the touch as the first part of the statement that follows it (an event insert), one
# round trip less inside the time the identities are locked (cdp/ingestion/writer.py). The
# statement reads ``touched`` in an InitPlan, so the UPDATE runs to completion before that
# statement writes anything: the lock order stays the identities' first (an unreferenced
# data-modifying CTE would run only at the end, after the statement's own rows).
TOUCH_CTE = "WITH touched AS (" + _POSTGRESQL_TOUCH + " RETURNING 1)"
TOUCH_ONE_CTE = "WITH touched AS (" + _POSTGRESQL_TOUCH_ONE + " RETURNING 1)"
TOUCH_DONE = "(SELECT count(*) FROM touched) >= 0"


class PendingTouch(NamedTuple):
    """A PostgreSQL touch left for the next statement (:attr:`cte`: :data:`TOUCH_CTE` or, for one
    identity, :data:`TOUCH_ONE_CTE`), its rows locked already when there are several."""
    parameters: tuple
    cte: str = TOUCH_CTE
    statement: str = _POSTGRESQL_TOUCH


def mark_seen(connection: sa.Connection, identity_pks: Sequence[int], now: datetime, *,
              defer: bool = False) -> PendingTouch | None:
    """Set ``last_seen`` of the identities to ``now`` (where it is older); on PostgreSQL their rows
    locked in key order first. ``defer`` (PostgreSQL): lock them now but leave the update to the
    caller's next statement (returned: :data:`TOUCH_CTE`'s parameters)."""
    if not identity_pks:
        return None
    if connection.dialect.name == "sqlite":
        at = sqlite_text(now)
        driver(connection, _SQLITE_TOUCH, (at, json.dumps(sorted(identity_pks)), at))
        return None
    at = now.astimezone(timezone.utc)
    if len(identity_pks) == 1:  # one row has no order to get wrong (most events carry one identity)
        touch = PendingTouch((at, next(iter(identity_pks)), at), TOUCH_ONE_CTE, _POSTGRESQL_TOUCH_ONE)
    else:
        keys = array_literal(sorted(identity_pks))
        driver(connection, _POSTGRESQL_LOCK_FOR_TOUCH, (keys,), rows=True)
        touch = PendingTouch((at, keys, at))
    if defer:
        return touch
    run_touch(connection, touch)
    return None


def run_touch(connection: sa.Connection, pending: PendingTouch) -> None:
    """A deferred touch on its own (nothing followed it)."""
    driver(connection, pending.statement, pending.parameters)
