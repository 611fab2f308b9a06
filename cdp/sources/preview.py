"""Test-connection and preview of a source: what it can reach, and its first rows through its
mapping (each with the record it makes, or what would reject it) — read-only, nothing stored."""

from __future__ import annotations

import io
import json
from pathlib import Path

import sqlalchemy as sa

from cdp.errors import CdpError, Conflict
from cdp.identity.namespaces import namespace_codes
from cdp.ingestion.mapping import parse_mapping, row_record
from cdp.ingestion.readers import iter_rows
from cdp.ingestion.validation import validate_record
from cdp.schema_registry.service import get_schema
from cdp.sources import database, file_drop, service
from cdp.sources.models import ConnectionTest, Preview, PreviewRow


def test_connection(*, connection: sa.Connection, sandbox: str, source_id: int) -> ConnectionTest:
    row = service._row(connection, sandbox, source_id)
    if row.type == "tracking_api":
        return ConnectionTest(ok=True, message=f"SDKs post to <base URL>{service.ENDPOINT}/v1/batch with the write "
                                               f"key; messages go to datasets {row.profile_dataset_pk} (profile) and "
                                               f"{row.event_dataset_pk} (event)")
    if row.type == "file_drop":
        directory = Path(row.config["directory"])
        try:
            file_drop.check_directory(str(directory), None)
        except CdpError as exc:
            return ConnectionTest(ok=False, message=exc.message, error={"code": exc.code, "message": exc.message})
        waiting = file_drop.candidates(directory, 0)
        return ConnectionTest(ok=True, message=f"the folder is readable and writable; {len(waiting)} file(s) waiting")
    try:
        columns = database.columns_of(row.config, row.secrets or {})
    except CdpError as exc:
        return ConnectionTest(ok=False, message=exc.message, error={"code": exc.code, "message": exc.message})
    problems = []
    cursor = row.config.get("cursor_column")
    if cursor and cursor not in columns:
        problems.append(f"the cursor column {cursor!r} is not among the columns")
    missing = [c for c in (row.mapping or {}) if c not in columns]
    if missing:
        problems.append(f"the mapping names column(s) {', '.join(map(repr, missing))} the source does not have")
    if problems:
        message = "; ".join(problems)
        return ConnectionTest(ok=False, message=message, columns=columns,
                              error={"code": "invalid_mapping", "message": message})
    return ConnectionTest(ok=True, message=f"connected (read-only); {len(columns)} column(s)", columns=columns)


def preview(*, connection: sa.Connection, sandbox: str, source_id: int, limit: int) -> Preview:
    row = service._row(connection, sandbox, source_id)
    if row.type == "tracking_api":
        raise Conflict("a tracking_api source has no rows to preview; its kept messages are at "
                       f"/v1/sources/{source_id}/messages", code="no_preview")
    schema = get_schema(connection=connection, sandbox=sandbox)
    kind = row.config.get("target", "profile")
    namespaces = namespace_codes(connection=connection, sandbox=sandbox)
    rules = parse_mapping(row.mapping, kind, schema, namespaces=namespaces) if row.mapping else None
    fields = dict(schema.profile) if kind == "profile" else schema.all_event_fields()
    name = None
    if row.type == "database":
        columns, raw_rows = database.sample(row.config, row.secrets or {}, limit)
        numbered = list(enumerate(raw_rows, start=1))
    else:
        waiting = file_drop.candidates(Path(row.config["directory"]), 0)
        if not waiting:
            return Preview(columns=[], rows=[], source=None)
        path = waiting[0]
        name = path.name
        numbered, columns = [], []
        with open(path, "rb") as stream:
            for item in iter_rows(io.BufferedReader(stream), file_drop.SUFFIXES[path.suffix.lower()]):
                if len(numbered) >= limit:
                    break
                values = item.values if item.problem is None else {}
                numbered.append((item.number, values))
                columns.extend(k for k in values if k not in columns)
    rows = []
    for number, values in numbered:
        if rules is None:
            record, problems = values, []
        else:
            record, problems = row_record(values, rules, kind, fields)
        errors = [{"column": c, "reason": r} for c, r in problems]
        if not problems:
            valid, found = validate_record(record, kind, schema, namespaces=namespaces)
            errors = [{"column": None, "reason": f"{e['path']}: {e['message']}"} for e in found]
        rows.append(PreviewRow(row_number=number, raw=json.loads(json.dumps(values, default=str)),
                               record=record if not errors else None, errors=errors))
    return Preview(columns=columns, rows=rows, source=name)
