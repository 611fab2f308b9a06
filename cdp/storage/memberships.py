"""Writes of membership rows that live below the domain packages: the exits of a profile that is
about to disappear (merged away by the identity graph, deleted for privacy) and the hourly
segment history. The identity graph and the profile service call :func:`exit_all`; the segments
package (cdp/segments) builds everything else on these."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from cdp.storage.database import note_outbox_written
from cdp.storage.driver import array_literal, driver
from cdp.storage.models import membership_changes, memberships, profiles, segment_due, segment_history, segments

MEMBER = ("realized", "existing")  # the statuses of a current member; exited is not


def hour_of(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def record_history(connection: sa.Connection, *, segment_pk: int, at: datetime, entered: int, exited: int,
                   size: int | None = None) -> None:
    """Add entries and exits to the segment's row for the hour of ``at``; ``size`` is the size
    after the change (None: the last known size plus entries minus exits)."""
    hour = hour_of(at)
    row = connection.execute(sa.select(segment_history).where(
        segment_history.c.segment_pk == segment_pk, segment_history.c.at == hour)).first()
    if row is not None:
        new_size = size if size is not None else row.size + entered - exited
        connection.execute(segment_history.update().where(
            segment_history.c.segment_pk == segment_pk, segment_history.c.at == hour).values(
            size=new_size, entered=segment_history.c.entered + entered, exited=segment_history.c.exited + exited))
        return
    if size is None:
        size = connection.execute(sa.select(sa.func.count()).select_from(memberships).where(
            memberships.c.segment_pk == segment_pk, memberships.c.status.in_(MEMBER))).scalar_one()
    connection.execute(segment_history.insert().values(segment_pk=segment_pk, at=hour, size=size, entered=entered,
                                                       exited=exited))


def exit_all(connection: sa.Connection, *, sandbox: str, profile_pk: int, now: datetime, source: str) -> int:
    """A profile about to disappear (merged away, deleted): each of its memberships exits, with an
    outbox row, before the rows go. Returns how many exited."""
    rows = connection.execute(
        sa.select(memberships.c.segment_pk, segments.c.key, profiles.c.external_id)
        .join(segments, segments.c.pk == memberships.c.segment_pk)
        .join(profiles, profiles.c.pk == memberships.c.profile_pk)
        .where(memberships.c.profile_pk == profile_pk, memberships.c.status.in_(MEMBER))).all()
    if rows:
        note_outbox_written(connection)  # the delivery loop is woken after the commit (cdp/api)
        connection.execute(membership_changes.insert(), [
            {"sandbox": sandbox, "segment_pk": r.segment_pk, "segment_key": r.key, "profile_pk": profile_pk,
             "profile_id": r.external_id, "status": "exited", "at": now, "source": source} for r in rows])
        connection.execute(memberships.update().where(memberships.c.profile_pk == profile_pk,
                                                      memberships.c.status.in_(MEMBER))
                           .values(status="exited", exited_at=now, updated_at=now))
        for r in rows:
            record_history(connection, segment_pk=r.segment_pk, at=now, entered=0, exited=1)
    connection.execute(segment_due.delete().where(segment_due.c.profile_pk == profile_pk))
    return len(rows)


# ---- one profile's changes, set-wise, straight to the driver ------------------------------------
#
# Streaming evaluation (and a merge's refresh) writes, per profile, a few membership changes — each
# with its outbox row and its hour's history — and the profile's next-change instant (one per
# profile: the earliest over its timed streaming segments, migration 0018). Through
# SQLAlchemy Core each statement cost ~100 µs of Python (compilation lookups, a type processor per
# parameter, an expanding IN rendered per call), more than SQLite spends on it; these statements are
# written once per dialect, their parameters prepared the way the column types store them (UTC
# instants — SQLite's text form —), and sent to the DBAPI cursor by :func:`driver` (errors still
# come as SQLAlchemy's, so callers that tell a lost race from a failure keep working).
#
# SQLite: one ``executemany`` per table (a loop in C). PostgreSQL: ONE statement for the whole
# profile — the memberships upserted, the outbox rows inserted, the hour's history rows moved and
# the instant lowered or deleted, in data-modifying CTEs over the rows sent as one JSON
# parameter — one round trip instead of one per table. The hour's history rows, which concurrent
# writers share, are locked in segment order (``FOR UPDATE`` below a sort) before they are moved:
# one order for every writer, as the executemany in segment order gave.
#
# That order is one statement's: a transaction writing SEVERAL profiles (a request of several
# records, a due wave) locked the rows of its first profile's segments, then of its second's — two
# such writers each held a row the other's next profile needed (PostgreSQL: ``deadlock detected …
# while locking tuple … in relation "segment_history"``, 645 in 1,200 transactions of 3 profiles
# each, 4 writers, 8 segments; none in 8,000 of one profile). Such a writer passes ``moves``: its
# profiles' history deltas are summed there and moved once, at the end, by :func:`move_history`
# — every row it locks then in (hour, segment) order, as one profile's write locks them.

HistoryMoves = dict[tuple[datetime, int], list[int]]  # (hour, segment pk) -> [entered, exited]

Change = tuple[int, str, bool]  # (segment pk, segment key, entered: True, exited: False)

_MEMBER_SQL = "('realized', 'existing')"
_UPSERT_MEMBERSHIP_SET = ("ON CONFLICT (segment_pk, profile_pk) DO UPDATE SET status = excluded.status, "
                          "entered_at = CASE WHEN excluded.status = 'realized' THEN excluded.entered_at "
                          "ELSE memberships.entered_at END, exited_at = excluded.exited_at, "
                          "updated_at = excluded.updated_at")

_SQLITE = {
    # a first entry inserts the row; a re-entry or an exit updates the row kept since (an exit's
    # entered_at is not used: the member's row exists)
    "memberships": "INSERT INTO memberships (segment_pk, profile_pk, status, entered_at, exited_at, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) " + _UPSERT_MEMBERSHIP_SET,
    "outbox": "INSERT INTO membership_changes (sandbox, segment_pk, segment_key, profile_pk, profile_id, status, at, "
              "source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "history": "UPDATE segment_history SET size = size + ? - ?, entered = entered + ?, exited = exited + ? "
               "WHERE segment_pk = ? AND at = ?",
    # an instant only ever moves earlier here (the stored text forms compare as the instants do)
    "due": "INSERT INTO segment_due (profile_pk, sandbox, due_at) VALUES (?, ?, ?) "
           "ON CONFLICT (profile_pk) DO UPDATE SET due_at = min(segment_due.due_at, excluded.due_at)",
    "undue": "DELETE FROM segment_due WHERE profile_pk = ?",
    "hour_rows": "SELECT segment_pk FROM segment_history WHERE at = ? AND segment_pk IN (SELECT value FROM json_each(?))",
    "sizes": "SELECT segment_pk, count(*) FROM memberships WHERE status IN " + _MEMBER_SQL +
             " AND segment_pk IN (SELECT value FROM json_each(?)) GROUP BY segment_pk",
    "history_insert": "INSERT INTO segment_history (segment_pk, at, size, entered, exited) VALUES (?, ?, ?, ?, ?)",
    "state": "SELECT segment_pk, NULL FROM memberships WHERE profile_pk = ? AND status IN " + _MEMBER_SQL +
             " UNION ALL SELECT NULL, due_at FROM segment_due WHERE profile_pk = ?",
}

_POSTGRESQL_CHANGES = (
    "changed AS (SELECT (r->>0)::bigint AS segment_pk, r->>1 AS segment_key, (r->>2)::boolean AS entered, n "
    "FROM jsonb_array_elements(%(changes)s::jsonb) WITH ORDINALITY AS e(r, n)), "
    "m AS (INSERT INTO memberships (segment_pk, profile_pk, status, entered_at, exited_at, updated_at) "
    "SELECT segment_pk, %(profile)s, CASE WHEN entered THEN 'realized' ELSE 'exited' END, %(now)s, "
    "CASE WHEN entered THEN NULL ELSE %(now)s::timestamptz END, %(now)s FROM changed ORDER BY n "
    + _UPSERT_MEMBERSHIP_SET + " RETURNING 1), "
    "o AS (INSERT INTO membership_changes (sandbox, segment_pk, segment_key, profile_pk, profile_id, status, at, "
    "source) SELECT %(sandbox)s, segment_pk, segment_key, %(profile)s, %(profile_id)s, "
    "CASE WHEN entered THEN 'entered' ELSE 'exited' END, %(now)s, %(source)s FROM changed ORDER BY n RETURNING 1)")
# the hour's history rows of the changed segments, locked in segment order, then moved
_POSTGRESQL_MOVED = (
    "locked AS (SELECT h.segment_pk FROM segment_history h JOIN changed c ON c.segment_pk = h.segment_pk "
    "WHERE h.at = %(hour)s ORDER BY h.segment_pk FOR UPDATE OF h), "
    "moved AS (UPDATE segment_history h SET size = h.size + c.entered::int - (NOT c.entered)::int, "
    "entered = h.entered + c.entered::int, exited = h.exited + (NOT c.entered)::int "
    "FROM changed c, locked l WHERE l.segment_pk = c.segment_pk AND h.segment_pk = c.segment_pk "
    "AND h.at = %(hour)s RETURNING h.segment_pk)")
# :func:`move_history`: summed deltas (segment pk, entered, exited) of one hour, in segment order
_POSTGRESQL_MOVE = (
    "WITH d AS (SELECT (r->>0)::bigint AS segment_pk, (r->>1)::bigint AS entered, (r->>2)::bigint AS exited "
    "FROM jsonb_array_elements(%(moves)s::jsonb) AS e(r)), "
    "locked AS (SELECT h.segment_pk FROM segment_history h JOIN d ON d.segment_pk = h.segment_pk "
    "WHERE h.at = %(hour)s ORDER BY h.segment_pk FOR UPDATE OF h) "
    "UPDATE segment_history h SET size = h.size + d.entered - d.exited, entered = h.entered + d.entered, "
    "exited = h.exited + d.exited FROM d, locked l WHERE l.segment_pk = d.segment_pk "
    "AND h.segment_pk = d.segment_pk AND h.at = %(hour)s RETURNING h.segment_pk")
_POSTGRESQL_DUE = (
    "due AS (INSERT INTO segment_due (profile_pk, sandbox, due_at) VALUES (%(profile)s, %(sandbox)s, %(due)s) "
    "ON CONFLICT (profile_pk) DO UPDATE SET due_at = LEAST(segment_due.due_at, excluded.due_at) RETURNING 1)")
_POSTGRESQL_UNDUE = "undue AS (DELETE FROM segment_due WHERE profile_pk = %(profile)s RETURNING 1)"
_POSTGRESQL = {
    "hour_rows": "SELECT segment_pk FROM segment_history WHERE at = %(hour)s AND segment_pk = ANY(%(keys)s::bigint[])",
    "sizes": "SELECT segment_pk, count(*) FROM memberships WHERE status IN " + _MEMBER_SQL +
             " AND segment_pk = ANY(%(keys)s::bigint[]) GROUP BY segment_pk",
    "history_insert": "INSERT INTO segment_history (segment_pk, at, size, entered, exited) "
                      "SELECT * FROM unnest(%(keys)s::bigint[], %(ats)s::timestamptz[], %(sizes)s::bigint[], "
                      "%(entered)s::bigint[], %(exited)s::bigint[])",
    "state": "SELECT segment_pk, NULL::timestamptz FROM memberships WHERE profile_pk = %(profile)s AND status IN "
             + _MEMBER_SQL + " UNION ALL SELECT NULL, due_at FROM segment_due WHERE profile_pk = %(profile)s",
}
_postgresql_writes: dict[tuple[bool, bool, bool, bool], str] = {}


def _postgresql_write(changes: bool, due: bool, undue: bool, moved: bool = True) -> str:
    """The one statement writing a profile's changes and instant (the parts it has); ``moved``:
    with the changes' history rows moved (else :func:`move_history` moves them later)."""
    key = (changes, due, undue, moved)
    found = _postgresql_writes.get(key)
    if found is None:
        moves = changes and moved
        parts = [part for present, part in ((changes, _POSTGRESQL_CHANGES), (moves, _POSTGRESQL_MOVED),
                                            (due, _POSTGRESQL_DUE), (undue, _POSTGRESQL_UNDUE)) if present]
        # the history rows moved: which segments had their hour's row
        tail = "SELECT segment_pk FROM moved" if moves else "SELECT 1 WHERE false"
        found = _postgresql_writes[key] = "WITH " + ", ".join(parts) + " " + tail
    return found


_sqlite_instants: dict[datetime, str] = {}


def sqlite_instant(at: datetime) -> str:
    """The text SQLite stores for ``at`` (memoised: a write stamps many rows with few instants)."""
    found = _sqlite_instants.get(at)
    if found is None:
        from cdp.storage.database import sqlite_text

        if len(_sqlite_instants) > 4096:
            _sqlite_instants.clear()
        found = _sqlite_instants[at] = sqlite_text(at)
    return found


def profile_state(connection: sa.Connection, profile_pk: int) -> tuple[set[int], Any]:
    """One read of a profile's state: the segments it is a current member of, and its stored
    next-change instant (None: none) — as the driver gives it (SQLite: the stored text, to be
    compared with :func:`due_form`; PostgreSQL: an aware datetime)."""
    members: set[int] = set()
    due: Any = None
    if connection.dialect.name == "sqlite":
        rows = driver(connection, _SQLITE["state"], (profile_pk, profile_pk), rows=True)
    else:
        rows = driver(connection, _POSTGRESQL["state"], {"profile": profile_pk}, rows=True)
    for segment_pk, at in rows:
        if at is None:
            members.add(segment_pk)
        else:
            due = at
    return members, due


# profile_state's rows as branches of cdp.profiles.documents.profile_rows_sql (its columns: kind,
# a, b, c, at, n): kind 2 a segment the profile is a current member of (n), kind 3 the profile's
# stored instant (at), kind 4 its instant in segment_due_saved (at: segments saved, not yet
# evaluated for it; migration 0023) — so that streaming reads a profile and its state in ONE statement
MEMBER_ROW, DUE_ROW, SAVED_ROW = 2, 3, 4
_STATE_ROWS = {
    "sqlite": (" UNION ALL SELECT 2, NULL, NULL, NULL, NULL, segment_pk FROM memberships WHERE profile_pk = :profile "
               "AND status IN " + _MEMBER_SQL + " AND segment_pk IN (SELECT value FROM json_each(:evaluated)) "
               "UNION ALL SELECT 3, NULL, NULL, NULL, due_at, NULL FROM segment_due WHERE profile_pk = :profile "
               "UNION ALL SELECT 4, NULL, NULL, NULL, due_at, NULL FROM segment_due_saved WHERE profile_pk = :profile"),
    "postgresql": (" UNION ALL SELECT 2, NULL::text, NULL::text, NULL::text, NULL::timestamptz, segment_pk "
                   "FROM memberships WHERE profile_pk = %(profile)s AND status IN " + _MEMBER_SQL +
                   " AND segment_pk = ANY(%(evaluated)s::bigint[]) "
                   "UNION ALL SELECT 3, NULL::text, NULL::text, NULL::text, due_at, NULL::bigint FROM segment_due "
                   "WHERE profile_pk = %(profile)s "
                   "UNION ALL SELECT 4, NULL::text, NULL::text, NULL::text, due_at, NULL::bigint FROM segment_due_saved "
                   "WHERE profile_pk = %(profile)s"),
}


def state_rows_sql(dialect: str) -> str:
    """The ``UNION ALL`` branches giving :func:`profile_state`'s rows in the profile load's columns,
    for the segments about to be evaluated only (parameters ``profile`` and ``evaluated``:
    :func:`state_rows_parameters`)."""
    return _STATE_ROWS[dialect]


def state_rows_parameters(dialect: str, evaluated: list[int]) -> dict[str, Any]:
    """``evaluated``: the segments whose membership is wanted."""
    return {"evaluated": json.dumps(evaluated) if dialect == "sqlite" else array_literal(evaluated)}


def state_from_rows(rows: Iterable) -> tuple[set[int], Any, Any]:
    """(current memberships, stored instant, instant in ``segment_due_saved``) from the rows of
    :func:`state_rows_sql`, the first two in the forms :func:`profile_state` gives (None: none)."""
    members: set[int] = set()
    due: Any = None
    saved: Any = None
    for row in rows:
        if row[0] == MEMBER_ROW:
            members.add(row[5])
        elif row[0] == DUE_ROW:
            due = row[4]
        elif row[0] == SAVED_ROW:
            saved = row[4]
    return members, due, saved


def due_form(connection: sa.Connection):
    """How :func:`profile_state` gives a stored instant, to compare a computed one with it."""
    return sqlite_instant if connection.dialect.name == "sqlite" else (lambda at: at)


def write_profile(connection: sa.Connection, *, sandbox: str, profile_pk: int, profile_id: str, now: datetime,
                  source: str, changes: Sequence[Change] = (), due: datetime | None = None,
                  undue: bool = False, moves: HistoryMoves | None = None) -> None:
    """Write one profile's membership ``changes`` — each its membership row (entry: realized now,
    first or again; exit: exited now), its outbox row and its hour's history (size, entered,
    exited moved; a segment's first change of the hour inserts the row with the counted size) —
    and its next-change instant: ``due`` stored, or kept when the stored one is earlier (an
    instant only moves earlier here); ``undue``: the stored one deleted. The changes in segment
    order (one order for every writer). ``moves``: the history deltas are added there instead,
    for :func:`move_history` to move (a transaction writing several profiles)."""
    changes = sorted(changes)
    if not (changes or due is not None or undue):
        return
    hour = hour_of(now)
    if changes:
        note_outbox_written(connection)  # the delivery loop is woken after the commit (cdp/api)
    if moves is not None:
        for pk, _, entered in changes:
            delta = moves.setdefault((hour, pk), [0, 0])
            delta[0 if entered else 1] += 1
    if connection.dialect.name == "sqlite":
        moved = _write_sqlite(connection, sandbox, profile_pk, profile_id, now, source, changes, due, undue, hour,
                              moves is None)
    else:
        moved = {row[0] for row in driver(connection, _postgresql_write(bool(changes), due is not None, undue,
                                                                        moves is None), {
            "changes": json.dumps([[pk, key, entered] for pk, key, entered in changes]), "due": due,
            "profile": profile_pk, "profile_id": profile_id, "sandbox": sandbox, "now": now, "hour": hour,
            "source": source}, rows=True)}
        if moves is not None:
            moved = None  # nothing moved here: move_history moves them
    if moved is not None and len(moved) < len(changes):
        _first_of_the_hour(connection, [(pk, int(entered), int(not entered)) for pk, _, entered in changes
                                        if pk not in moved], hour)


def move_history(connection: sa.Connection, moves: HistoryMoves) -> None:
    """Move the history rows of ``moves`` (what :func:`write_profile` added there; emptied): each
    hour's existing rows locked in segment order and moved in one statement, the rows of segments
    changing for the first time in the hour then inserted with the counted size — the hours in
    order, so that every writer locks the rows it shares in (hour, segment) order."""
    by_hour: dict[datetime, list[tuple[int, int, int]]] = {}
    for (hour, pk), (entered, exited) in sorted(moves.items()):
        by_hour.setdefault(hour, []).append((pk, entered, exited))
    moves.clear()
    for hour, rows in by_hour.items():
        if connection.dialect.name == "sqlite":
            hour_text = sqlite_instant(hour)
            bumped = driver(connection, _SQLITE["history"], [
                (entered, exited, entered, exited, pk, hour_text) for pk, entered, exited in rows], many=True)
            if bumped == len(rows):
                continue
            moved = {row[0] for row in driver(connection, _SQLITE["hour_rows"],
                                              (hour_text, json.dumps([pk for pk, _, _ in rows])), rows=True)}
        else:
            moved = {row[0] for row in driver(connection, _POSTGRESQL_MOVE, {
                "moves": json.dumps(rows), "hour": hour}, rows=True)}
        if len(moved) < len(rows):
            _first_of_the_hour(connection, [row for row in rows if row[0] not in moved], hour)


def _write_sqlite(connection: sa.Connection, sandbox: str, profile_pk: int, profile_id: str, now: datetime,
                  source: str, changes: list[Change], due: datetime | None, undue: bool,
                  hour: datetime, history: bool = True) -> set[int] | None:
    """The SQLite statements of :func:`write_profile`; returns the segments whose hour's history
    row was moved (None: all of them, as SQLite's rowcount says, or ``history`` false: none
    moved here)."""
    at = sqlite_instant(now)
    if undue:
        driver(connection, _SQLITE["undue"], (profile_pk,))
    if due is not None:
        driver(connection, _SQLITE["due"], (profile_pk, sandbox, sqlite_instant(due)))
    if not changes:
        return None
    driver(connection, _SQLITE["memberships"], [
        (pk, profile_pk, "realized" if entered else "exited", at, None if entered else at, at)
        for pk, _, entered in changes], many=True)
    driver(connection, _SQLITE["outbox"], [
        (sandbox, pk, key, profile_pk, profile_id, "entered" if entered else "exited", at, source)
        for pk, key, entered in changes], many=True)
    if not history:
        return None
    hour_text = sqlite_instant(hour)
    bumped = driver(connection, _SQLITE["history"], [
        (int(entered), int(not entered), int(entered), int(not entered), pk, hour_text) for pk, _, entered in changes],
        many=True)
    if bumped == len(changes):
        return None  # every segment had its row for the hour (the common case)
    return {row[0] for row in driver(connection, _SQLITE["hour_rows"], (hour_text, json.dumps([c[0] for c in changes])),
                                     rows=True)}


def _first_of_the_hour(connection: sa.Connection, rows: list[tuple[int, int, int]], hour: datetime) -> None:
    """The hour's history rows (segment pk, entered, exited) of segments changing for the first
    time this hour: the size is the members counted after the change (the memberships are
    written)."""
    keys = [pk for pk, _, _ in rows]
    if connection.dialect.name == "sqlite":
        sizes = dict(driver(connection, _SQLITE["sizes"], (json.dumps(keys),), rows=True))
        hour_text = sqlite_instant(hour)
        driver(connection, _SQLITE["history_insert"], [
            (pk, hour_text, sizes.get(pk, 0), entered, exited) for pk, entered, exited in rows], many=True)
        return
    sizes = dict(driver(connection, _POSTGRESQL["sizes"], {"keys": keys}, rows=True))
    driver(connection, _POSTGRESQL["history_insert"], {
        "keys": keys, "ats": [hour] * len(keys), "sizes": [sizes.get(pk, 0) for pk in keys],
        "entered": [entered for _, entered, _ in rows], "exited": [exited for _, _, exited in rows]})
