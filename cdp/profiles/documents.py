"""Stored profiles as profile documents (SPEC.md, "The profile document"): what the profile API
answers and what in-memory evaluation of a stored profile reads."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timezone
from operator import itemgetter
from sys import intern
from typing import Any

import sqlalchemy as sa

from cdp.engine.profile import INTEGER_MAX, INTEGER_MIN, LoadedProfile, ProfileError, coerce, flatten
from cdp.schema import Schema
from cdp.storage.driver import array_literal
from cdp.storage.models import events, identities, profiles


def api_value(value: Any, type_name: str | None) -> Any:
    """A value as stored in a JSON document, as the API shows it: datetimes ISO 8601 in UTC with
    ``Z`` (SQLite stores ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    if type_name == "number":
        return _number(value)
    if type_name in ("list<number>", "list<datetime>") and isinstance(value, list):
        return [api_value(v, type_name[5:-1]) for v in value]
    if type_name == "datetime" and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        parsed = parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
        return iso(parsed)
    return value


def _number(value: Any) -> Any:
    """PostgreSQL's jsonb writes a large number without an exponent (1e20 comes back as
    100000000000000000000): a number beyond the 64-bit integers is the decimal it was."""
    if isinstance(value, int) and not isinstance(value, bool) and not INTEGER_MIN <= value <= INTEGER_MAX:
        return float(value)
    return value


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted paths to nested objects (``{"loyalty.tier": "gold"}`` → ``{"loyalty": {"tier": "gold"}}``)."""
    out: dict[str, Any] = {}
    for path in sorted(flat):
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a leaf and an object of the same name: keep the leaf's path
                node = None
                break
            node = child
        if node is None:
            out[path] = flat[path]
        else:
            node[parts[-1]] = flat[path]
    return out


def attributes_document(flat: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    return nest({path: api_value(value, _type_name(schema.profile_type(path))) for path, value in flat.items()})


def event_document(row, schema: Schema) -> dict[str, Any]:
    fields = {path: api_value(value, _type_name(schema.event_type(path))) for path, value in (row.fields or {}).items()}
    return {"id": row.event_id, "type": row.type, "timestamp": iso(row.ts), **nest(fields)}


def _type_name(type_) -> str | None:
    return None if type_ is None else str(type_)


def profile_document(connection: sa.Connection, profile_pk: int, *, schema: Schema,
                     with_events: bool = True) -> dict[str, Any]:
    """The whole profile: id, identities, attributes and (oldest first) events."""
    row = connection.execute(sa.select(profiles.c.external_id, profiles.c.attributes)
                             .where(profiles.c.pk == profile_pk)).one()
    document: dict[str, Any] = {
        "id": row.external_id,
        "identities": [{"namespace": r.namespace, "id": r.value} for r in connection.execute(
            sa.select(identities.c.namespace, identities.c.value).where(identities.c.profile_pk == profile_pk)
            .order_by(identities.c.pk))],
        "attributes": attributes_document(row.attributes or {}, schema),
    }
    if with_events:
        document["events"] = [event_document(r, schema) for r in connection.execute(
            sa.select(events.c.event_id, events.c.type, events.c.ts, events.c.fields)
            .where(events.c.profile_pk == profile_pk).order_by(events.c.ts, events.c.pk))]
    return document


def stored_profile(connection: sa.Connection, profile_pk: int, *, schema: Schema,
                   event_types: Collection[str] | None = None) -> LoadedProfile:
    """A stored profile loaded for in-memory evaluation, straight from its rows: the same
    LoadedProfile as ``load_profile(profile_document(...), schema, allowed_values=False)``, without
    the round trip through the API's document (dates to ISO text and back, nested objects
    flattened again) and without identities (no expression reads them). ``event_types``: only
    the events of these types (what the segments to evaluate can read; see
    cdp.segments.reads.Reads), None for all. ONE statement, straight to the driver
    (:func:`profile_rows_sql`: the profile's row and its events' rows; SQLAlchemy Core's own work
    per statement was most of a small profile's load); sa.exc.NoResultFound for no such profile.
    Paths are interned: every profile shares its key strings, so the compiled predicates'
    dictionary lookups compare pointers."""
    dialect = connection.dialect.name
    rows = connection.exec_driver_sql(profile_rows_sql(dialect, event_types),
                                      profile_rows_parameters(dialect, profile_pk, event_types))
    return profile_from_rows(rows.fetchall(), schema, dialect)[0]


# The rows of :func:`profile_rows_sql`: (kind, a, b, c, at, n) — kind 0 the profile (external id,
# attributes, -, -, pk), kind 1 an event (event id, fields, type, time, pk); a caller may add
# branches of its own kinds (≥ 2) in the same columns, handed back by :func:`profile_from_rows`.
PROFILE_ROW, EVENT_ROW = 0, 1
_ROWS = {
    "sqlite": ("SELECT 0, external_id, attributes, NULL, NULL, pk FROM profiles WHERE pk = :profile",
               "SELECT 1, event_id, fields, type, ts, pk FROM events WHERE profile_pk = :profile",
               " AND type IN (SELECT value FROM json_each(:types))"),
    "postgresql": ("SELECT 0, external_id::text, attributes::text, NULL::text, NULL::timestamptz, pk FROM profiles "
                   "WHERE pk = %(profile)s",
                   "SELECT 1, event_id::text, fields::text, type::text, ts, pk FROM events WHERE profile_pk = %(profile)s",
                   " AND type = ANY(%(types)s::text[])"),
}


def profile_rows_sql(dialect: str, event_types: Collection[str] | None, extra: str = "") -> str:
    """One statement giving a profile's row and the rows of its events (of ``event_types``; None:
    all; empty: none), then ``extra`` (``UNION ALL SELECT …`` branches of the caller's, in the
    same columns), in no order: :func:`profile_from_rows` orders the events by time and pk (the
    order the Core queries gave) — in Python, where the statement's ``ORDER BY 1, 5, 6`` made
    SQLite sort every row of the union in a temporary B-tree (~11 of ~55 µs a read of a
    profile of ~20 rows, measured). Parameters: :func:`profile_rows_parameters`."""
    profile, events_sql, of_types = _ROWS[dialect]
    parts = [profile]
    if event_types is None:
        parts.append(events_sql)
    elif event_types:
        parts.append(events_sql + of_types)
    return " UNION ALL ".join(parts) + extra


def profile_rows_parameters(dialect: str, profile_pk: int, event_types: Collection[str] | None) -> dict[str, Any]:
    parameters: dict[str, Any] = {"profile": profile_pk}
    if event_types:
        key = (dialect, event_types if isinstance(event_types, frozenset) else frozenset(event_types))
        found = _TYPES.get(key)
        if found is None:  # the types sorted, as one text: JSON (SQLite), an array literal (PostgreSQL)
            ordered = sorted(event_types)
            found = json.dumps(ordered) if dialect == "sqlite" else array_literal(ordered)
            if len(_TYPES) > 10_000:
                _TYPES.clear()
            _TYPES[key] = found
        parameters["types"] = found
    return parameters


# profile_rows_parameters' text per set of event types (a plan's selections are a few sets)
_TYPES: dict[tuple, str] = {}


def profile_from_rows(rows: Iterable, schema: Schema, dialect: str) -> tuple[LoadedProfile, list]:
    """The LoadedProfile of :func:`profile_rows_sql`'s rows (driver forms: on SQLite JSON text and
    ``YYYY-MM-DD HH:MM:SS.ffffff`` text in UTC, on PostgreSQL objects and aware datetimes — made
    what the Core columns gave: documents, aware UTC datetimes), and the caller's rows (kind ≥ 2)."""
    sqlite = dialect == "sqlite"
    head = None
    stored: list = []
    rest: list = []
    for row in rows:
        kind = row[0]
        if kind == EVENT_ROW:
            stored.append(row)
        elif kind == PROFILE_ROW:
            head = row
        else:
            rest.append(row)
    if head is None:
        raise sa.exc.NoResultFound("No row was found when one was required")
    external_id = head[1]
    fingerprint = schema.fingerprint
    attributes = dict(_converted(head[2], fingerprint, schema.profile_type, external_id))
    event_type = schema.event_type
    # by time, then pk: on SQLite the stored text (bytewise, as SQLite's ORDER BY compared it), on
    # PostgreSQL aware datetimes (chronological, as timestamptz compares)
    stored.sort(key=_TIME_AND_PK)
    loaded = []
    for _, event_id, fields, type_, at, pk in stored:
        key = (fingerprint, pk, event_id, type_, at, fields)
        event = _LOADED_EVENTS.get(key)
        if event is None:
            event = {"id": event_id, "type": intern(type_), "timestamp": _utc(at, sqlite),
                     **_converted(fields, fingerprint, event_type, external_id)}
            if len(_LOADED_EVENTS) >= _CONVERTED_LIMIT:
                _LOADED_EVENTS.clear()
            _LOADED_EVENTS[key] = event
        loaded.append(event)
    return LoadedProfile(external_id, [], attributes, loaded), rest


_TIME_AND_PK = itemgetter(4, 5)

# An event as the engine holds it, memoised by everything its row holds (pk, id, type, time, the
# stored JSON text) and the schema's fingerprint — a pure function of them, so a hit is exactly
# what building it again gives; each ingest re-reads the profile's events of the types its
# segments read, most of them loaded before. The dicts are shared between loaded profiles: the
# engine reads events and never writes them.
_LOADED_EVENTS: dict[tuple, dict[str, Any]] = {}


# Stored documents as the engine holds them, memoised by their stored JSON text and the schema's
# fingerprint: a pure function of the two (an event's fields are never rewritten, and a profile's
# attributes change far less often than its events are read), so a hit is exactly what converting
# again gives — every ingest re-reads the profile's whole history, and most of a load was JSON
# parsing and value conversion of events seen before. Callers get a copy (a dict built from it).
_CONVERTED: dict[tuple[str, str], dict[str, Any]] = {}
_CONVERTED_LIMIT = 200_000


def _converted(stored: Any, fingerprint: str, type_of, profile_id: str) -> dict[str, Any]:
    if not isinstance(stored, str):  # an object as the driver gave it (no text to key on)
        return _stored_fields(stored, type_of, profile_id)
    key = (fingerprint, stored)
    found = _CONVERTED.get(key)
    if found is None:
        found = _stored_fields(json.loads(stored), type_of, profile_id)
        if len(_CONVERTED) >= _CONVERTED_LIMIT:
            _CONVERTED.clear()
        _CONVERTED[key] = found
    return found


def _utc(value: Any, sqlite: bool) -> datetime:
    """As UtcDateTime gives a stored instant: an aware datetime in UTC."""
    if sqlite and isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)


def _stored_fields(stored: Mapping[str, Any] | None, type_of, profile_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in (stored or {}).items():
        if value is None:
            continue
        if isinstance(value, dict):  # an object under a path the schema does not know: as flatten() does
            out.update(_stored_fields(flatten(value, path + "."), type_of, profile_id))
            continue
        out[intern(path)] = _stored_value(value, type_of(path), profile_id, path)
    return out


def _stored_value(value: Any, type_, profile_id: str, path: str) -> Any:
    if type_ is None:
        return value
    try:
        if type_.name == "number" or (type_.name == "list" and type_.element.name == "number"):
            value = api_value(value, str(type_))
        return coerce(value, type_)
    except ValueError as exc:
        raise ProfileError(f"profile {profile_id}: `{path}`: {exc}") from None
