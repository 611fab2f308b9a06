"""Merges of the identity graph, set-wise: every profile that a resolution merges away, moved into
its survivor with one statement per table for all of them (not one per merged profile).

What a merge does (cdp/identity/graph.py, module docstring): the merged profiles' identities,
events, attribute sources (per attribute and dataset the latest row is kept), graph-limit
reports, links and earlier merge records go to the survivor; values stored without a dataset fill
the survivor's gaps (merged profiles in key order); the merged profiles' segment memberships exit
(with their outbox rows) and the profiles are deleted; a ``profile_merges`` row keeps each merged
id — except for profiles made by the same transaction, which nobody has seen.

On PostgreSQL the caller holds ``FOR UPDATE`` locks on every profile involved (taken in key order
before anything is written), so nothing else writes their rows meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from cdp.identity import listed
from cdp.identity.attributes import apply_policy
from cdp.identity.settings import IdentitySettings
from cdp.storage.memberships import MEMBER, exit_all
from cdp.storage.database import sqlite_text
from cdp.storage.driver import driver

def merge_profiles(connection: sa.Connection, *, sandbox: str, survivor_of: Mapping[int, int], now: datetime,
                   settings: IdentitySettings, created_here: set[int]) -> dict[int, str | None]:
    """Merge each profile of ``survivor_of`` (merged profile → its survivor) into its survivor;
    returns merged profile → its id (None for profiles ``created_here``: made by this transaction,
    so no merge record is kept)."""
    merged = sorted(survivor_of)
    if not merged:
        return {}
    before = _merged_rows(connection, merged)
    recorded = [pk for pk in merged if pk not in created_here]
    moved_identities = dict(listed.run(connection, _IDENTITY_COUNTS, listed.keys(recorded)).all()) if recorded else {}
    moves = [(pk, survivor_of[pk]) for pk in merged]
    for table, column in _MOVED:
        _move(connection, table, column, column, moves)
    _merge_sources(connection, survivor_of)
    # values loaded without a dataset: the survivor's stay, the merged profiles' fill the gaps
    for pk in merged:
        legacy = before[pk].attributes
        if legacy:
            apply_policy(connection, profile_pk=survivor_of[pk], settings=settings, paths=set(), legacy=legacy)
    _exit_memberships(connection, sandbox, merged, now)
    listed.run(connection, "DELETE FROM profiles WHERE pk {list}", listed.keys(merged))
    listed.run(connection, "UPDATE profiles SET updated_at = ? WHERE pk {list}", _instant(connection, now),
               listed.keys(sorted(set(survivor_of.values()))))
    if recorded:
        _record_merges(connection, sandbox, now, [
            (survivor_of[pk], before[pk].external_id, moved_identities.get(pk, 0), before[pk].event_count)
            for pk in recorded])
    return {pk: None if pk in created_here else before[pk].external_id for pk in merged}


_RECORD_MERGES_SQLITE = ("INSERT INTO profile_merges (sandbox, survivor_pk, merged_external_id, merged_at, "
                         "identities_moved, events_moved) VALUES (?, ?, ?, ?, ?, ?)")
_RECORD_MERGES_POSTGRESQL = (
    "INSERT INTO profile_merges (sandbox, survivor_pk, merged_external_id, merged_at, identities_moved, events_moved) "
    "SELECT %s, r.survivor, r.merged, %s, r.identities, r.events FROM unnest(%s::bigint[], %s::varchar[], "
    "%s::integer[], %s::integer[]) WITH ORDINALITY AS r(survivor, merged, identities, events, n) ORDER BY r.n")


def _record_merges(connection: sa.Connection, sandbox: str, now: datetime,
                   rows: list[tuple[int, str, int, int]]) -> None:
    """The ``profile_merges`` rows (survivor, merged id, identities moved, events moved), in order, in
    one statement on the driver (Core's executemany of a merging 500-record request's ~29 rows took
    2.4 ms of the request, under cProfile, in the identity-graph bench on PostgreSQL: bench/RESULTS.md,
    session 17)."""
    if connection.dialect.name == "sqlite":
        at = sqlite_text(now)
        driver(connection, _RECORD_MERGES_SQLITE, [(sandbox, survivor, merged, at, identities, events)
                                                   for survivor, merged, identities, events in rows], many=True)
        return
    driver(connection, _RECORD_MERGES_POSTGRESQL, (
        sandbox, now, *(listed.array_literal(column) for column in zip(*rows))))


# what a merge moves to the survivor: (table, the column naming the profile)
_MOVED = (("identities", "profile_pk"), ("events", "profile_pk"), ("identity_removals", "profile_pk"),
          ("identity_links", "profile_pk"), ("profile_merges", "survivor_pk"))


def _move(connection: sa.Connection, table: str, column: str, key: str, moves: list[tuple[int, int]]) -> None:
    """``UPDATE table SET column = new WHERE key = old`` for every (old key, new profile) of
    ``moves`` in one statement: the pairs travel as one parameter (a JSON text on SQLite, two
    arrays on PostgreSQL) joined to the table (``UPDATE … FROM``; an index probe per pair)."""
    if not moves:
        return
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(
            f"UPDATE {table} SET {column} = m.new FROM (SELECT json_extract(value, '$[0]') AS old, "
            f"json_extract(value, '$[1]') AS new FROM json_each(?)) AS m WHERE {table}.{key} = m.old",
            (json.dumps(moves),))
    else:
        connection.exec_driver_sql(
            f"UPDATE {table} SET {column} = m.new FROM unnest(%s::bigint[], %s::bigint[]) AS m(old, new) "
            f"WHERE {table}.{key} = m.old", (listed.array_literal(old for old, _ in moves),
                                              listed.array_literal(new for _, new in moves)))


class _Merged(NamedTuple):
    external_id: str
    attributes: dict[str, Any]
    event_count: int


_IDENTITY_COUNTS = "SELECT profile_pk, count(*) FROM identities WHERE profile_pk {list} GROUP BY profile_pk"


def _instant(connection: sa.Connection, value: datetime) -> Any:
    """A datetime as a driver-level statement takes it (SQLite: the text SQLAlchemy stores)."""
    return sqlite_text(value) if connection.dialect.name == "sqlite" else value


def _merged_rows(connection: sa.Connection, merged: list[int]) -> dict[int, _Merged]:
    """The merged profiles' id, attributes and event count (read before anything moves)."""
    found = {}
    for pk, external_id, attributes, event_count in listed.run(
            connection, "SELECT pk, external_id, attributes, event_count FROM profiles WHERE pk {list}",
            listed.keys(merged)).all():
        if isinstance(attributes, str):  # SQLite: JSON text
            attributes = json.loads(attributes)
        found[pk] = _Merged(external_id, attributes or {}, event_count)
    return found


def _merge_sources(connection: sa.Connection, survivor_of: Mapping[int, int]) -> None:
    """Move the merged profiles' source rows to their survivors, keeping per (survivor, attribute,
    dataset) the latest row (observed last; ties: written last)."""
    involved = sorted({*survivor_of, *survivor_of.values()})
    # observed_at as stored: on SQLite text in one fixed form, which sorts as the instants do
    rows = listed.run(connection, "SELECT pk, profile_pk, path, dataset_pk, observed_at FROM attribute_sources "
                                  "WHERE profile_pk {list}", listed.keys(involved)).all()
    if not rows:
        return
    best: dict[tuple[int, str, int], Any] = {}
    for row in rows:
        key = (survivor_of.get(row.profile_pk, row.profile_pk), row.path, row.dataset_pk)
        if key not in best or (row.observed_at, row.pk) > (best[key].observed_at, best[key].pk):
            best[key] = row
    keep = {row.pk for row in best.values()}
    drop = sorted(row.pk for row in rows if row.pk not in keep)
    if drop:
        listed.run(connection, "DELETE FROM attribute_sources WHERE pk {list}", listed.keys(drop))
    _move(connection, "attribute_sources", "profile_pk", "pk", sorted(
        (row.pk, survivor_of[row.profile_pk]) for row in best.values() if row.profile_pk in survivor_of))


def _exit_memberships(connection: sa.Connection, sandbox: str, merged: list[int], now: datetime) -> None:
    """The merged profiles' memberships exit (outbox rows, history) and go, with their due rows."""
    members = listed.run(connection, "SELECT DISTINCT profile_pk FROM memberships WHERE profile_pk {list} "
                                     "AND status {list}", listed.keys(merged),
                         listed.Many(list(MEMBER), "varchar")).scalars().all()
    for pk in sorted(members):  # rare (a merged profile in a segment): exit_all per profile
        exit_all(connection, sandbox=sandbox, profile_pk=pk, now=now, source="merge")
    listed.run(connection, "DELETE FROM segment_due WHERE profile_pk {list}", listed.keys(merged))
    listed.run(connection, "DELETE FROM memberships WHERE profile_pk {list}", listed.keys(merged))
