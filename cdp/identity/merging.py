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
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cdp.identity.attributes import apply_policy
from cdp.identity.settings import IdentitySettings
from cdp.storage.memberships import MEMBER, exit_all
from cdp.storage.models import attribute_sources, identities, memberships, profile_merges, profiles, segment_due

_PER_STATEMENT = 400  # merged profiles per statement: three parameters each, far below SQLite's limit


def merge_profiles(connection: sa.Connection, *, sandbox: str, survivor_of: Mapping[int, int], now: datetime,
                   settings: IdentitySettings, created_here: set[int]) -> dict[int, str | None]:
    """Merge each profile of ``survivor_of`` (merged profile → its survivor) into its survivor;
    returns merged profile → its id (None for profiles ``created_here``: made by this transaction,
    so no merge record is kept)."""
    merged = sorted(survivor_of)
    if not merged:
        return {}
    before = _merged_rows(connection, merged)
    moved_identities = _counts(connection, identities.c.profile_pk,
                               [pk for pk in merged if pk not in created_here])
    moves = [(pk, survivor_of[pk]) for pk in merged]
    for table, column in _MOVED:
        _move(connection, table, column, column, moves)
    _merge_sources(connection, survivor_of)
    # values loaded without a dataset: the survivor's stay, the merged profiles' fill the gaps
    for pk in merged:
        legacy = dict(before[pk].attributes or {})
        if legacy:
            apply_policy(connection, profile_pk=survivor_of[pk], settings=settings, paths=set(), legacy=legacy)
    _exit_memberships(connection, sandbox, merged, now)
    for chunk in _chunks(merged):
        connection.execute(profiles.delete().where(profiles.c.pk.in_(chunk)))
    for chunk in _chunks(sorted(set(survivor_of.values()))):
        connection.execute(profiles.update().where(profiles.c.pk.in_(chunk)).values(updated_at=now))
    recorded = [pk for pk in merged if pk not in created_here]
    if recorded:
        connection.execute(profile_merges.insert(), [
            {"sandbox": sandbox, "survivor_pk": survivor_of[pk], "merged_external_id": before[pk].external_id,
             "merged_at": now, "identities_moved": moved_identities.get(pk, 0),
             "events_moved": before[pk].event_count} for pk in recorded])
    return {pk: None if pk in created_here else before[pk].external_id for pk in merged}


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
            f"WHERE {table}.{key} = m.old", ([old for old, _ in moves], [new for _, new in moves]))


def _chunks(keys: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(keys), _PER_STATEMENT):
        yield keys[start:start + _PER_STATEMENT]


def _merged_rows(connection: sa.Connection, merged: list[int]) -> dict[int, Any]:
    """The merged profiles' id, attributes and event count (read before anything moves)."""
    found = {}
    for chunk in _chunks(merged):
        for row in connection.execute(sa.select(profiles.c.pk, profiles.c.external_id, profiles.c.attributes,
                                                profiles.c.event_count).where(profiles.c.pk.in_(chunk))):
            found[row.pk] = row
    return found


def _counts(connection: sa.Connection, column: sa.Column, keys: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for chunk in _chunks(keys):
        counts.update(connection.execute(sa.select(column, sa.func.count()).where(column.in_(chunk))
                                         .group_by(column)).all())
    return counts


def _merge_sources(connection: sa.Connection, survivor_of: Mapping[int, int]) -> None:
    """Move the merged profiles' source rows to their survivors, keeping per (survivor, attribute,
    dataset) the latest row (observed last; ties: written last)."""
    involved = sorted({*survivor_of, *survivor_of.values()})
    rows = []
    for chunk in _chunks(involved):
        rows += connection.execute(sa.select(attribute_sources.c.pk, attribute_sources.c.profile_pk,
                                             attribute_sources.c.path, attribute_sources.c.dataset_pk,
                                             attribute_sources.c.observed_at)
                                   .where(attribute_sources.c.profile_pk.in_(chunk))).all()
    if not rows:
        return
    best: dict[tuple[int, str, int], Any] = {}
    for row in rows:
        key = (survivor_of.get(row.profile_pk, row.profile_pk), row.path, row.dataset_pk)
        if key not in best or (row.observed_at, row.pk) > (best[key].observed_at, best[key].pk):
            best[key] = row
    keep = {row.pk for row in best.values()}
    drop = sorted(row.pk for row in rows if row.pk not in keep)
    for chunk in _chunks(drop):
        connection.execute(attribute_sources.delete().where(attribute_sources.c.pk.in_(chunk)))
    _move(connection, "attribute_sources", "profile_pk", "pk", sorted(
        (row.pk, survivor_of[row.profile_pk]) for row in best.values() if row.profile_pk in survivor_of))


def _exit_memberships(connection: sa.Connection, sandbox: str, merged: list[int], now: datetime) -> None:
    """The merged profiles' memberships exit (outbox rows, history) and go, with their due rows."""
    members = []
    for chunk in _chunks(merged):
        members += connection.execute(sa.select(memberships.c.profile_pk).distinct().where(
            memberships.c.profile_pk.in_(chunk), memberships.c.status.in_(MEMBER))).scalars().all()
    for pk in sorted(members):  # rare (a merged profile in a segment): exit_all per profile
        exit_all(connection, sandbox=sandbox, profile_pk=pk, now=now, source="merge")
    for chunk in _chunks(merged):
        connection.execute(segment_due.delete().where(segment_due.c.profile_pk.in_(chunk)))
        connection.execute(memberships.delete().where(memberships.c.profile_pk.in_(chunk)))
