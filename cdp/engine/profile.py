"""Loaded profiles: the profile document of SPEC.md, parsed once and evaluated many times.

Attributes are flattened to dotted paths (``"loyalty.tier"``) with dates and datetimes parsed
(to aware UTC datetimes); events are sorted by (timestamp, id) and indexed by type, with a
parallel list of timestamps so that windows are found by binary search.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from sys import intern
from typing import Any, Mapping

from cdp.pqltypes import PqlType
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


# The values data may hold (docs/ingestion.md, "Values"): anything else is rejected where it enters
# (a record, a batch row, a profile document, a query parameter), with the reason.
DATE_RANGE = "0001-01-01 to 9999-12-31"
DATETIME_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z (the instant, in UTC)"
INTEGER_MIN, INTEGER_MAX = -(2**63), 2**63 - 1


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 text (or a datetime) to an aware UTC datetime; no offset means UTC. ValueError
    for anything else, and for an instant outside :data:`DATETIME_RANGE`."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) < 10:
            raise ValueError(f"not an ISO 8601 timestamp: {value[:64]!r}")
        try:
            result = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not an ISO 8601 timestamp: {value[:64]!r} ({exc}; datetimes run from "
                             f"{DATETIME_RANGE})") from None
    else:
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if result.tzinfo is None:
        return result.replace(tzinfo=timezone.utc)
    try:
        return result.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-05:00 is in year 10000 in UTC; 0001-01-01T00:00+01:00 in year 0
        shown = value[:64] if isinstance(value, str) else result.isoformat()
        raise ValueError(f"{shown!r} is outside the range of datetimes: {DATETIME_RANGE}") from None


def parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return parse_timestamp(value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"not a date YYYY-MM-DD: {value!r} ({exc}; dates run from {DATE_RANGE})") from None
    raise ValueError(f"expected a date YYYY-MM-DD, got {str(value)[:64]!r}")


def _integer(value: int) -> int:
    if not INTEGER_MIN <= value <= INTEGER_MAX:
        shown = str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
        raise ValueError(f"{shown} is outside the 64-bit integer range ({INTEGER_MIN} to {INTEGER_MAX})")
    return value


def _finite(value: float) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value} is not a number the data may hold: numbers are finite (NaN, Infinity and "
                         f"values beyond ±1.8e308, such as 1e400, are refused)")
    return value


def coerce(value: Any, type_: PqlType) -> Any:
    """A JSON value as the engine holds it, for a field of the given type; ValueError if it cannot be
    (the wrong type, a number that is not finite, an integer beyond 64 bits, a date or datetime out
    of range)."""
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
            return _integer(value)
        if isinstance(value, float):
            if value.is_integer():
                return _integer(int(value))
            _finite(value)
    elif name == "number":
        if isinstance(value, int) and not isinstance(value, bool):
            return _integer(value)
        if isinstance(value, float):
            return _finite(value)
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
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "…"
    raise ValueError(f"expected {type_}, got {type(value).__name__} {shown}")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects to dotted paths. An object set to null makes everything under it missing."""
    out: dict[str, Any] = {}
    stack = [(prefix, data)]
    while stack:
        base, obj = stack.pop()
        for key, value in obj.items():
            path = intern(f"{base}{key}")  # one string per path for every profile: lookups compare pointers
            if isinstance(value, dict):
                stack.append((path + ".", value))
            elif value is not None:
                out[path] = value
    return out


def load_profile(document: Mapping[str, Any], schema: Schema | None = None, *,
                 allowed_values: bool = True) -> LoadedProfile:
    """Parse a profile document (SPEC.md) once, validating values against the schema: their
    types and ranges, and (``allowed_values``) the schema's allowed values — not for a stored
    profile, which may hold a value from before the list changed."""
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
        problem = schema.value_problem(path, attributes[path]) if allowed_values else None
        if problem:
            raise ProfileError(f"profile {profile_id}: attribute `{path}`: {problem}")
    events: list[dict] = []
    raw_events = document.get("events") or []
    if not isinstance(raw_events, list):
        raise ProfileError(f"profile {profile_id}: `events` must be a list")
    for index, raw in enumerate(raw_events):
        events.append(_load_event(raw, schema, f"profile {profile_id}: events[{index}]", allowed_values))
    identities = document.get("identities") or []
    if not isinstance(identities, list):
        raise ProfileError(f"profile {profile_id}: `identities` must be a list")
    return LoadedProfile(profile_id, list(identities), attributes, events)


def _load_event(raw: Any, schema: Schema, where: str, allowed_values: bool) -> dict:
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
        problem = schema.value_problem(path, event[path]) if allowed_values and path not in BUILTIN_EVENT_FIELDS \
            else None
        if problem:
            raise ProfileError(f"{where}: field `{path}`: {problem}")
    for name in BUILTIN_EVENT_FIELDS:
        if event.get(name) is None:
            raise ProfileError(f"{where}: an event needs `{name}`")
    return event
