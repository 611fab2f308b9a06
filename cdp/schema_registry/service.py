"""Reading and replacing the schema in force of a sandbox.

Storage: one row per sandbox in ``sandbox_schemas`` with ``Schema.to_dict()`` as JSON; no row
means the Luma schema. Fields come back sorted by path (PostgreSQL's JSONB does not keep key
order, so we never promise one).

Compatibility rule (kept simple and explicit):

* adding profile fields, event fields, event types or enum values is always compatible;
  changing enums (the allowed values of a field) is always compatible: stored data is kept as it
  is and evaluated as it is, ingestion refuses values outside the new list from then on, and a
  stored segment comparing with a value no longer listed still checks (with an ``unlisted_value``
  warning, never an error);
* removing or retyping a field, or removing an event type, is refused when the sandbox stores
  any profile or event, and removing a field is refused when a dataset of the sandbox labels it;
* any change is refused when a segment stored in the sandbox would no longer check against the
  new schema.

A refusal is a 409 ``schema_incompatible`` whose details list each refused field with the change
(``removed`` / ``retyped`` from → to) and the reasons, and each segment with its errors. To make
such a change: add a new field instead, or move the data out first.

Schema objects are shared: the same document always yields the same :class:`Schema` instance
(kept for the life of the process), because compiled predicates are cached per schema object.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from cdp.dsl import PqlError, check
from cdp.errors import Conflict, Unprocessable
from cdp.sandboxes.service import stored_record_counts
from cdp.schema import Schema, SchemaError, luma_schema
from cdp.schema_registry.models import SchemaRead, SchemaReplace
from cdp.storage.models import datasets, sandbox_schemas, segments

MAX_FIELDS = 5000
MAX_EVENT_TYPES = 1000
MAX_ALLOWED_VALUES = 10_000
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEMAS: dict[str, Schema] = {}
_SCHEMAS_LOCK = threading.Lock()


def _key(document: dict) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def schema_from_document(document: dict) -> Schema:
    """The (shared) Schema for a stored document."""
    key = _key(document)
    found = _SCHEMAS.get(key)
    if found is not None:
        return found
    schema = Schema.from_dict(document)
    with _SCHEMAS_LOCK:
        return _SCHEMAS.setdefault(key, schema)


with _SCHEMAS_LOCK:  # the default document maps to the default object
    _SCHEMAS[_key(luma_schema().to_dict())] = luma_schema()


def get_schema(*, connection: sa.Connection, sandbox: str) -> Schema:
    """The schema in force in the sandbox (what the checker and the ingestion validator read)."""
    row = connection.execute(sa.select(sandbox_schemas.c.document)
                             .where(sandbox_schemas.c.sandbox == sandbox)).first()
    return luma_schema() if row is None else schema_from_document(row.document)


def _as_read(sandbox: str, schema: Schema, version: int, updated_at: datetime | None) -> SchemaRead:
    data = schema.to_dict()
    return SchemaRead(
        sandbox=sandbox, version=version, is_default=version == 0, updated_at=updated_at,
        profile=dict(sorted(data["profile"].items())), event=dict(sorted(data["event"].items())),
        event_types=data["event_types"], enums=dict(sorted(data["enums"].items())))


def read_schema(*, connection: sa.Connection, sandbox: str) -> SchemaRead:
    row = connection.execute(sa.select(sandbox_schemas).where(sandbox_schemas.c.sandbox == sandbox)).first()
    if row is None:
        return _as_read(sandbox, luma_schema(), 0, None)
    return _as_read(sandbox, schema_from_document(row.document), row.version, row.updated_at)


def build_schema(spec: SchemaReplace) -> Schema:
    """Validate a schema document; Unprocessable (``invalid_schema``) lists every problem."""
    errors: list[str] = []
    for kind, fields in (("profile", spec.profile), ("event", spec.event)):
        if len(fields) > MAX_FIELDS:
            errors.append(f"{kind}: {len(fields)} fields; at most {MAX_FIELDS} are allowed")
        for path in fields:
            if not path or not all(_SEGMENT.fullmatch(part) for part in path.split(".")):
                errors.append(f"{kind} field {path[:120]!r}: a path is dot-separated names of letters, digits and "
                              f"'_', not starting with a digit")
    if len(spec.event_types) > MAX_EVENT_TYPES:
        errors.append(f"event_types: {len(spec.event_types)} types; at most {MAX_EVENT_TYPES} are allowed")
    seen: set[str] = set()
    for name in spec.event_types:
        if not name or len(name) > 128:
            errors.append(f"event type {name[:130]!r}: 1 to 128 characters")
        if name in seen:
            errors.append(f"event type {name!r} is listed twice")
        seen.add(name)
    for path, values in spec.enums.items():
        if path not in spec.profile and path not in spec.event:
            errors.append(f"enums: {path[:120]!r} is not a profile or event field of this schema")
            continue
        types = {t.strip() for t in (spec.profile.get(path), spec.event.get(path)) if t is not None}
        if not types <= {"string", "list<string>"}:
            errors.append(f"enums: {path[:120]!r} is of type {' and '.join(sorted(types))}; allowed values are "
                          f"for string and list<string> fields")
        if not values or len(values) > MAX_ALLOWED_VALUES:
            errors.append(f"enums: {path[:120]!r} lists {len(values)} values; 1 to {MAX_ALLOWED_VALUES}")
        elif len(set(values)) != len(values):
            errors.append(f"enums: {path[:120]!r} lists a value twice")
        elif any(not v or len(v) > 256 for v in values):
            errors.append(f"enums: {path[:120]!r}: each value is 1 to 256 characters")
    schema = None
    if not errors:
        try:
            schema = Schema.from_dict(spec.model_dump())
        except (SchemaError, ValueError) as exc:
            errors.append(str(exc))
    if errors:
        raise Unprocessable(f"invalid schema: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                            code="invalid_schema", details={"errors": errors})
    return schema_from_document(schema.to_dict())


def field_changes(old: Schema, new: Schema) -> list[dict[str, Any]]:
    """Removed and retyped fields and removed event types, old → new (additions are not listed)."""
    changes: list[dict[str, Any]] = []
    for kind, before, after in (("profile", old.profile, new.profile), ("event", old.event, new.event)):
        for path, type_ in sorted(before.items()):
            if path not in after:
                changes.append({"kind": kind, "field": path, "change": "removed", "from": str(type_)})
            elif after[path] != type_:
                changes.append({"kind": kind, "field": path, "change": "retyped", "from": str(type_),
                                "to": str(after[path])})
    for name in old.event_types:
        if name not in new.event_types:
            changes.append({"kind": "event_type", "field": name, "change": "removed"})
    return changes


def _labelled_fields(connection: sa.Connection, sandbox: str) -> dict[tuple[str, str], list[str]]:
    """(kind, field) → names of the datasets that label the field."""
    found: dict[tuple[str, str], list[str]] = {}
    rows = connection.execute(sa.select(datasets.c.name, datasets.c.kind, datasets.c.field_labels)
                              .where(datasets.c.sandbox == sandbox).order_by(datasets.c.pk))
    for row in rows:
        for path in row.field_labels or {}:
            found.setdefault((row.kind, path), []).append(row.name)
    return found


def _broken_segments(connection: sa.Connection, sandbox: str, schema: Schema) -> list[dict[str, Any]]:
    rows = connection.execute(sa.select(segments.c.key, segments.c.expression)
                              .where(segments.c.sandbox == sandbox).order_by(segments.c.key)).all()
    catalogue = {row.key: row.expression for row in rows}
    broken = []
    for key, expression in catalogue.items():
        try:
            check(expression, schema, segments=catalogue, key=key)
        except PqlError as exc:
            broken.append({"key": key, "errors": [d.to_dict() for d in exc.errors]})
    return broken


def compatibility_problems(*, connection: sa.Connection, sandbox: str, old: Schema,
                           new: Schema) -> dict[str, Any] | None:
    """None when ``new`` may replace ``old`` in the sandbox; else the details of the refusal."""

    changes = field_changes(old, new)
    stored = stored_record_counts(connection=connection, sandbox=sandbox) if changes else {"profiles": 0, "events": 0}
    labelled = _labelled_fields(connection, sandbox) if changes else {}
    refused = []
    for change in changes:
        reasons = []
        if stored["profiles"] or stored["events"]:
            reasons.append(f"sandbox {sandbox!r} stores {stored['profiles']} profiles and {stored['events']} events "
                           f"written under the current schema")
        if change["change"] == "removed" and change["kind"] != "event_type":
            for name in labelled.get((change["kind"], change["field"]), []):
                reasons.append(f"dataset {name!r} labels this field")
        if reasons:
            refused.append({**change, "reasons": reasons})
    broken = _broken_segments(connection, sandbox, new)
    if not refused and not broken:
        return None
    details: dict[str, Any] = {"sandbox": sandbox, "stored": stored, "fields": refused}
    if broken:
        details["segments"] = broken
    return details


def replace_schema(*, connection: sa.Connection, sandbox: str, spec: SchemaReplace) -> SchemaRead:
    new = build_schema(spec)
    row = connection.execute(sa.select(sandbox_schemas).where(sandbox_schemas.c.sandbox == sandbox)
                             .with_for_update()).first()
    old = luma_schema() if row is None else schema_from_document(row.document)
    problems = compatibility_problems(connection=connection, sandbox=sandbox, old=old, new=new)
    if problems is not None:
        parts = []
        if problems["fields"]:
            parts.append(f"it removes or retypes {len(problems['fields'])} field(s) that stored data depends on "
                         f"({', '.join(c['field'] for c in problems['fields'][:5])})")
        if problems.get("segments"):
            parts.append(f"{len(problems['segments'])} stored segment(s) would no longer check "
                         f"({', '.join(s['key'] for s in problems['segments'][:5])})")
        raise Conflict(f"incompatible schema change for sandbox {sandbox!r}: {'; and '.join(parts)}. Adding fields is "
                       f"always allowed; to remove or retype a field, move the data out of the sandbox first",
                       code="schema_incompatible", details=problems)
    now = datetime.now(timezone.utc)
    document = new.to_dict()
    if row is None:
        version = 1
        connection.execute(sandbox_schemas.insert().values(sandbox=sandbox, version=version, document=document,
                                                           updated_at=now))
    else:
        version = row.version + 1
        connection.execute(sandbox_schemas.update().where(sandbox_schemas.c.sandbox == sandbox)
                           .values(version=version, document=document, updated_at=now))
    return _as_read(sandbox, new, version, now)
