"""Loaded profiles: the profile document of SPEC.md, parsed once and evaluated many times.

Attributes are flattened to dotted paths (``"loyalty.tier"``) with dates and datetimes parsed
(to aware UTC datetimes); events are sorted by (timestamp, id) and indexed by type, with a
parallel list of timestamps so that windows are found by binary search.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Mapping

from cdp.dsl.types import PqlType
from cdp.schema import Schema, luma_schema
from cdp.schema.model import BUILTIN_EVENT_FIELDS


class ProfileError(ValueError):
    """A profile document that does not fit the schema; the message names the profile and path."""


_EMPTY: tuple[list, list] = ([], [])


class LoadedProfile:
    __slots__ = ("id", "identities", "attributes", "events", "timestamps", "by_type")

    def __init__(self, id: str, identities: list[dict], attributes: dict[str, Any], events: list[dict]):
        self.id = id
        self.identities = identities
        self.attributes = attributes
        events.sort(key=_event_order)
        self.events = events
        self.timestamps = [e["timestamp"] for e in events]
        by_type: dict[str, tuple[list, list]] = {}
        for event in events:
            bucket = by_type.get(event["type"])
            if bucket is None:
                bucket = by_type[event["type"]] = ([], [])
            bucket[0].append(event)
            bucket[1].append(event["timestamp"])
        self.by_type = by_type

    def events_of_type(self, event_type: str) -> tuple[list, list]:
        return self.by_type.get(event_type, _EMPTY)

    def __repr__(self) -> str:
        return f"LoadedProfile(id={self.id!r}, attributes={len(self.attributes)}, events={len(self.events)})"


def _event_order(event: dict) -> tuple:
    return (event["timestamp"], event["id"])


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 text (or a datetime) to an aware UTC datetime; no offset means UTC."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) < 10:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
        result = datetime.fromisoformat(text)
    else:
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if result.tzinfo is None:
        return result.replace(tzinfo=timezone.utc)
    return result.astimezone(timezone.utc)


def parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return parse_timestamp(value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        return date.fromisoformat(value.strip())
    raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")


def coerce(value: Any, type_: PqlType) -> Any:
    """A JSON value as the engine holds it, for a field of the given type; ValueError if it cannot be."""
    if value is None:
        return None
    name = type_.name
    if name == "string":
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("a string may not hold the NUL character")
            return value
    elif name == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif name == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif name == "boolean":
        if isinstance(value, bool):
            return value
    elif name == "date":
        return parse_date(value)
    elif name == "datetime":
        return parse_timestamp(value)
    elif name == "list":
        if isinstance(value, (list, tuple)):
            return tuple(coerce(v, type_.element) for v in value)
    raise ValueError(f"expected {type_}, got {type(value).__name__} {value!r}")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects to dotted paths. An object set to null makes everything under it missing."""
    out: dict[str, Any] = {}
    stack = [(prefix, data)]
    while stack:
        base, obj = stack.pop()
        for key, value in obj.items():
            path = f"{base}{key}"
            if isinstance(value, dict):
                stack.append((path + ".", value))
            elif value is not None:
                out[path] = value
    return out


def load_profile(document: Mapping[str, Any], schema: Schema | None = None) -> LoadedProfile:
    """Parse a profile document (SPEC.md) once, validating values against the schema."""
    schema = schema or luma_schema()
    if not isinstance(document, Mapping):
        raise ProfileError("a profile document must be a JSON object")
    profile_id = document.get("id")
    if not isinstance(profile_id, str) or not profile_id:
        raise ProfileError("a profile document needs a non-empty string `id`")
    attributes_doc = document.get("attributes") or {}
    if not isinstance(attributes_doc, Mapping):
        raise ProfileError(f"profile {profile_id}: `attributes` must be an object")
    attributes: dict[str, Any] = {}
    for path, value in flatten(attributes_doc).items():
        type_ = schema.profile_type(path)
        if type_ is None:
            attributes[path] = value  # not in the schema: kept, but no expression can name it
            continue
        try:
            attributes[path] = coerce(value, type_)
        except ValueError as exc:
            raise ProfileError(f"profile {profile_id}: attribute `{path}`: {exc}") from None
    events: list[dict] = []
    raw_events = document.get("events") or []
    if not isinstance(raw_events, list):
        raise ProfileError(f"profile {profile_id}: `events` must be a list")
    for index, raw in enumerate(raw_events):
        events.append(_load_event(raw, schema, f"profile {profile_id}: events[{index}]"))
    identities = document.get("identities") or []
    if not isinstance(identities, list):
        raise ProfileError(f"profile {profile_id}: `identities` must be a list")
    return LoadedProfile(profile_id, list(identities), attributes, events)


def _load_event(raw: Any, schema: Schema, where: str) -> dict:
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{where}: an event must be an object")
    event: dict[str, Any] = {}
    for path, value in flatten(raw).items():
        type_ = schema.event_type(path)
        if type_ is None:
            event[path] = value
            continue
        try:
            event[path] = coerce(value, type_)
        except ValueError as exc:
            raise ProfileError(f"{where}: field `{path}`: {exc}") from None
    for name in BUILTIN_EVENT_FIELDS:
        if event.get(name) is None:
            raise ProfileError(f"{where}: an event needs `{name}`")
    return event
