"""Stored profiles as profile documents (SPEC.md, "The profile document"): what the profile API
answers and what in-memory evaluation of a stored profile reads."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from sys import intern
from typing import Any

import sqlalchemy as sa

from cdp.engine.profile import INTEGER_MAX, INTEGER_MIN, LoadedProfile, ProfileError, coerce, flatten
from cdp.schema import Schema
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
    cdp.segments.reads.Reads), None for all. One query for the profile, one for its events
    (none when no event type is wanted). Paths are interned: every profile shares its key
    strings, so the compiled predicates' dictionary lookups compare pointers."""
    row = connection.execute(_PROFILE, {"b_profile": profile_pk}).one()
    attributes = _stored_fields(row.attributes, schema.profile_type, row.external_id)
    loaded: list[dict] = []
    if event_types is None or event_types:
        if event_types is None:
            found = connection.execute(_EVENTS, {"b_profile": profile_pk})
        else:
            found = connection.execute(_EVENTS_OF_TYPES, {"b_profile": profile_pk, "b_types": sorted(event_types)})
        for r in found:
            loaded.append({"id": r.event_id, "type": intern(r.type), "timestamp": r.ts,
                           **_stored_fields(r.fields, schema.event_type, row.external_id)})
    return LoadedProfile(row.external_id, [], attributes, loaded)


_PROFILE = sa.select(profiles.c.external_id, profiles.c.attributes).where(profiles.c.pk == sa.bindparam("b_profile"))
_EVENTS = sa.select(events.c.event_id, events.c.type, events.c.ts, events.c.fields).where(
    events.c.profile_pk == sa.bindparam("b_profile")).order_by(events.c.ts, events.c.pk)
_EVENTS_OF_TYPES = _EVENTS.where(events.c.type.in_(sa.bindparam("b_types", expanding=True)))


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
