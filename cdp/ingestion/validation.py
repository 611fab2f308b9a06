"""Validating one record against the schema in force — pure functions, no database.

Values are checked and converted with the engine's own ``coerce`` / ``parse_timestamp``
(cdp/engine/profile.py), so what ingestion accepts is exactly what the engine can evaluate:
numbers finite, integers 64-bit, dates and datetimes within years 1 to 9999 (in UTC), and a
field with allowed values (the schema's ``enums``) holding one of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Collection, Mapping
from typing import Any

from cdp.engine.profile import coerce, parse_timestamp
import cdp.ingestion as limits
from cdp.identity.namespaces import IdentityValueError, normalize
from cdp.ingestion import MAX_IDENTITIES_PER_RECORD, NAMESPACES
from cdp.schema import Schema
from cdp.schema.model import BUILTIN_EVENT_FIELDS


@dataclass
class ValidRecord:
    """A record that passed validation: identities as (namespace, id) pairs; for a profile
    record the attributes to set (path → engine value) and the paths/prefixes to remove; for an
    event record the event (id, type, ts and the other fields, path → engine value)."""

    identities: list[tuple[str, str]]
    set_attributes: dict[str, Any] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    event_id: str | None = None
    event_type: str | None = None
    ts: datetime | None = None
    event_fields: dict[str, Any] = field(default_factory=dict)
    observed_at: datetime | None = None  # a profile record's `timestamp`: when the source saw these values
    # the identities are normalised already and distinct (validate_record made them): the writer
    # only checks their namespaces against its own
    normalized: bool = False
    # the event's fields hold only JSON values (no date, datetime or list: nothing that
    # ``json_value`` converts), so they are stored as they are (the compiled validator knows it
    # from the schema; False: the writer looks)
    plain_fields: bool = field(default=False, compare=False)


def _error(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message}


def _unknown(path: str, fields: dict, what: str) -> str:
    suggestion = Schema.closest(fields, path) if fields else []
    hint = f" (did you mean {', '.join(map(repr, suggestion))}?)" if suggestion else ""
    return f"unknown {what} field {path!r} in the schema in force{hint}"


def _walk(obj: dict, fields: Mapping, objects: frozenset[str], where: str, prefix: str, errors: list, out: dict,
          removed: list | None, what: str, skip: tuple[str, ...] = (), schema: Schema | None = None) -> None:
    """Nested object → dotted paths checked against ``fields`` (leaf path → type) and the
    schema's allowed values."""
    for key, value in obj.items():
        if not isinstance(key, str) or not key:
            errors.append(_error(f"{where}{prefix}", "field names must be non-empty strings"))
            continue
        path = f"{prefix}{key}"
        if not prefix and key in skip:
            continue
        location = f"{where}{path}"
        type_ = fields.get(path)
        is_object = type_ is None and path in objects
        if type_ is None and not is_object:
            errors.append(_error(location, _unknown(path, fields, what)))
            continue
        if value is None:
            if removed is not None:
                removed.append(path)
            continue
        if isinstance(value, dict):
            if type_ is not None:
                errors.append(_error(location, f"expected {type_}, got an object"))
                continue
            _walk(value, fields, objects, where, path + ".", errors, out, removed, what, schema=schema)
            continue
        if type_ is None:
            errors.append(_error(location, f"{path!r} is an object of the schema (fields "
                                           f"{', '.join(sorted(k for k in fields if k.startswith(path + '.'))[:5])}), "
                                           f"got {type(value).__name__}"))
            continue
        try:
            out[path] = coerce(value, type_)
        except (ValueError, TypeError) as exc:
            errors.append(_error(location, str(exc)[:300]))
            continue
        problem = schema.value_problem(path, out[path]) if schema is not None else None
        if problem:
            del out[path]
            errors.append(_error(location, problem[:300]))


def _identities(record: dict, errors: list, namespaces: Collection[str]) -> list[tuple[str, str]]:
    """The record's (namespace, id) pairs, normalised (cdp/identity/namespaces.py), in order,
    without repeats."""
    raw = record.get("identities")
    if raw is None or raw == []:
        errors.append(_error("identities", "a record needs at least one identity ({\"namespace\", \"id\"})"))
        return []
    if not isinstance(raw, list):
        errors.append(_error("identities", "must be a list of {\"namespace\", \"id\"} objects"))
        return []
    if len(raw) > MAX_IDENTITIES_PER_RECORD:
        errors.append(_error("identities", f"{len(raw)} identities; at most {MAX_IDENTITIES_PER_RECORD} per record"))
        return []
    found: list[tuple[str, str]] = []
    for index, identity in enumerate(raw):
        where = f"identities[{index}]"
        if not isinstance(identity, dict):
            errors.append(_error(where, "must be an object {\"namespace\", \"id\"}"))
            continue
        extra = sorted(set(identity) - {"namespace", "id"})
        if extra:
            errors.append(_error(f"{where}.{extra[0]}", "unknown key; an identity has only namespace and id"))
        namespace, value = identity.get("namespace"), identity.get("id")
        if namespace not in namespaces:
            errors.append(_error(f"{where}.namespace", f"unknown namespace {str(namespace)[:64]!r}; one of "
                                                       f"{', '.join(namespaces)} (custom namespaces: POST "
                                                       f"/v1/identity/namespaces)"))
            continue
        try:
            normalized = normalize(namespace, value)
        except IdentityValueError as exc:
            errors.append(_error(f"{where}.id", f"invalid {namespace} identity: {exc}"))
            continue
        if (namespace, normalized) not in found:
            found.append((namespace, normalized))
    return found


def _compact_json() -> Any:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)`` from ONE C
    encoder made here (``json.dumps`` makes one per call: most of the cost of measuring a small
    record). No circular-reference check: records are decoded JSON (a cycle raises RecursionError)."""
    if json.encoder.c_make_encoder is None:  # no C speedups on this interpreter
        return lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    encode = json.encoder.c_make_encoder(None, str, json.encoder.encode_basestring, None, ":", ",",
                                         False, False, True)
    return lambda value: "".join(encode(value, 0))


_compact = _compact_json()


def record_size(record: Any) -> int:
    """The record's size as the limit counts it: bytes of its compact JSON (UTF-8)."""
    return len(_compact(record).encode())


def within_size(record: Any, limit: int) -> bool:
    """``record_size(record) <= limit``, without encoding the text when its length proves it (UTF-8
    takes at most 4 bytes a character)."""
    text = _compact(record)
    return len(text) * 4 <= limit or len(text.encode()) <= limit


def validate_record(record: Any, kind: str, schema: Schema, *, namespaces: Collection[str] = NAMESPACES,
                    size_bound: int | None = None) -> tuple[ValidRecord | None, list[dict[str, str]]]:
    """(the valid record, []) or (None, errors); each error is ``{"path", "message"}``.
    ``namespaces``: the identity namespaces of the sandbox (default: the built-in ones).
    ``size_bound``: an upper bound of :func:`record_size` the caller knows (a mapped CSV row):
    the record is measured only when the bound does not prove it within the limit.

    Runs the validator compiled for the schema (cdp/ingestion/compiled_validation.py), which
    answers exactly what :func:`interpret_record` — the specification — answers."""
    return _compiled.compiled_validator(schema, kind, namespaces)(record, size_bound)


def interpret_record(record: Any, kind: str, schema: Schema, *, namespaces: Collection[str] = NAMESPACES,
                     size_bound: int | None = None) -> tuple[ValidRecord | None, list[dict[str, str]]]:
    """What :func:`validate_record` answers, worked out by walking the record against the schema:
    the specification of validation, and the wording of every error."""
    if not isinstance(record, dict):
        return None, [_error("", "a record must be a JSON object")]
    size = 0 if size_bound is not None and size_bound <= limits.RECORD_MAX_BYTES else record_size(record)
    if size > limits.RECORD_MAX_BYTES:
        return None, [_error("", f"record_too_large: the record is {size} bytes; at most {limits.RECORD_MAX_BYTES}")]
    errors: list[dict[str, str]] = []
    body_key = "attributes" if kind == "profile" else "event"
    allowed = {"identities", body_key} | ({"timestamp"} if kind == "profile" else set())
    for key in sorted(set(record) - allowed):
        other = "event" if kind == "profile" else "attributes"
        hint = f" (a {kind} dataset takes `{body_key}`, not `{other}`)" if key == other else ""
        errors.append(_error(key, f"unknown key; a {kind} record has identities and {body_key}"
                                  + (" (and an optional timestamp)" if kind == "profile" else "") + hint))
    identities = _identities(record, errors, namespaces)
    valid = ValidRecord(identities=identities, normalized=True)
    if kind == "profile":
        attributes = record.get("attributes")
        if attributes is None:
            attributes = {}
        if not isinstance(attributes, dict):
            errors.append(_error("attributes", "must be an object"))
        else:
            fields = schema.profile
            _walk(attributes, fields, schema.profile_objects, "attributes.", "", errors, valid.set_attributes,
                  valid.removed, "profile", schema=schema)
            # a removed object removes every attribute under it
            valid.removed = [leaf for path in valid.removed
                             for leaf in ([path] if path in fields else sorted(f for f in fields
                                                                               if f.startswith(path + ".")))]
        if record.get("timestamp") is not None:
            try:
                valid.observed_at = parse_timestamp(record["timestamp"])
            except (ValueError, TypeError) as exc:
                errors.append(_error("timestamp", f"bad timestamp: {exc}"[:300]))
    else:
        event = record.get("event")
        if not isinstance(event, dict):
            errors.append(_error("event", "an event record needs an `event` object with id, type and timestamp"))
        else:
            for name in BUILTIN_EVENT_FIELDS:
                if event.get(name) is None:
                    errors.append(_error(f"event.{name}", f"an event needs `{name}`"))
            event_id, event_type = event.get("id"), event.get("type")
            if event_id is not None and (not isinstance(event_id, str) or not event_id or len(event_id) > 256
                                         or "\x00" in event_id):
                errors.append(_error("event.id", "an event id is a string of 1 to 256 characters"))
            if event_type is not None:
                if not isinstance(event_type, str) or not event_type or len(event_type) > 128:
                    errors.append(_error("event.type", "an event type is a string of 1 to 128 characters"))
                elif schema.event_types and event_type not in schema.event_types:
                    suggestion = Schema.closest(list(schema.event_types), event_type)
                    hint = f" (did you mean {', '.join(map(repr, suggestion))}?)" if suggestion else ""
                    errors.append(_error("event.type", f"unknown event type {event_type!r}{hint}"))
            if event.get("timestamp") is not None:
                try:
                    valid.ts = parse_timestamp(event["timestamp"])
                except (ValueError, TypeError) as exc:
                    errors.append(_error("event.timestamp", f"bad timestamp: {exc}"[:300]))
            valid.event_id, valid.event_type = event_id, event_type
            _walk(event, schema.event, schema.event_objects, "event.", "", errors, valid.event_fields, None, "event",
                  skip=tuple(BUILTIN_EVENT_FIELDS), schema=schema)
    if errors:
        return None, errors
    return valid, []


# at the end: the compiled validator imports this module's ValidRecord and interpret_record
from cdp.ingestion import compiled_validation as _compiled  # noqa: E402
