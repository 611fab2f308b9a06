"""Batch files: a CSV or JSON Lines file with a field mapping, processed as a job.

The mapping (a JSON object) maps a source column (CSV header; for JSON Lines a key, or a dotted
path into nested objects) to a target with optional transforms::

    {"Email": {"to": "identity.email", "transforms": ["trim", "lower"]},
     "E-mail": "email",
     "Birthday": {"to": "person.birth_date", "transforms": [{"parse_date": "%d/%m/%Y"}]},
     "Hobbies": {"to": "interests", "transforms": [{"split": ";"}]}}

Targets: ``identity.<namespace>`` for an identity, else a field of the schema in force — a profile
attribute for a profile dataset, an event field (``id``, ``type``, ``timestamp`` included) for an
event dataset. Transforms, applied in order to text: ``trim``, ``lower``, ``{"parse_date":
FORMAT}`` (``datetime.strptime`` format; gives a date or a UTC datetime as the target needs),
``{"split": SEPARATOR}`` (a list; items trimmed, empty ones dropped). Text is then converted to
the target's type (integer, number, boolean ``true/false/yes/no/1/0``, date, datetime). An empty
cell sets nothing. JSON Lines without a mapping: each line is a record as streamed.

Processing (:func:`run_batch`, in a background thread with its own connections): every row is
turned into a record and validated; the valid ones are applied in ONE transaction; when the
rejected rows exceed the threshold (a fraction of the rows), that transaction is rolled back and
the batch fails — nothing of it is applied. Per-row errors are kept either way. Events already
ingested into the dataset (by id) are counted as duplicates, not errors, so re-uploading a file
changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

import cdp.ingestion as limits
from cdp.api.metrics import Metrics
from cdp.datasets.service import get_dataset
from cdp.errors import NotFound, Unprocessable
from cdp.ingestion.models import BatchError, BatchRead, BatchStatus, RecordStatus
from cdp.ingestion.service import Writer
from cdp.ingestion.validation import validate_record
from cdp.schema import Schema
from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, ingestion_batches, ingestion_errors

log = logging.getLogger("cdp.ingestion")

FORMATS = ("csv", "jsonl")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


class _Rejected(Exception):
    """Raised out of the applying transaction to roll it back (threshold passed)."""


@dataclass(frozen=True)
class Rule:
    column: str
    target: str  # identity.<ns> or a schema path
    transforms: tuple  # ("trim",), ("lower",), ("parse_date", fmt), ("split", sep)


@dataclass
class Row:
    number: int
    raw: str
    values: dict | None = None  # column → value; None when the row could not be read
    errors: list[tuple[str | None, str]] = field(default_factory=list)


# ---- the mapping ---------------------------------------------------------------------------------

def _transform(spec: Any, where: str, errors: list[str]) -> tuple | None:
    if spec in ("trim", "lower"):
        return (spec,)
    if spec == "split":
        return ("split", ",")
    if isinstance(spec, dict) and len(spec) == 1:
        (name, arg), = spec.items()
        if name == "parse_date" and isinstance(arg, str) and arg:
            return ("parse_date", arg)
        if name == "split" and isinstance(arg, str) and arg:
            return ("split", arg)
    errors.append(f"{where}: unknown transform {json.dumps(spec)[:100]}; use \"trim\", \"lower\", "
                  f"{{\"parse_date\": \"%Y-%m-%d\"}} or {{\"split\": \",\"}}")
    return None


def parse_mapping(mapping: Any, kind: str, schema: Schema) -> list[Rule]:
    """The rules of a mapping; Unprocessable (``invalid_mapping``) lists every problem."""
    errors: list[str] = []
    rules: list[Rule] = []
    fields = dict(schema.profile) if kind == "profile" else schema.all_event_fields()
    if not isinstance(mapping, dict) or not mapping:
        errors.append("the mapping must be a non-empty JSON object: source column → target")
        mapping = {}
    targets: dict[str, str] = {}
    for column, spec in mapping.items():
        where = f"mapping[{column!r}]"
        if isinstance(spec, str):
            spec = {"to": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("to"), str) or set(spec) - {"to", "transforms"}:
            errors.append(f"{where}: a target path, or {{\"to\": PATH, \"transforms\": [...]}}")
            continue
        target = spec["to"]
        if target.startswith("identity."):
            if target.removeprefix("identity.") not in limits.NAMESPACES:
                errors.append(f"{where}: unknown identity namespace in {target!r}; one of "
                              f"{', '.join(limits.NAMESPACES)}")
        elif target not in fields:
            suggestion = Schema.closest(fields, target)
            errors.append(f"{where}: {target!r} is not a {kind} field of the schema in force"
                          + (f" (did you mean {', '.join(map(repr, suggestion))}?)" if suggestion else ""))
        if target in targets:
            errors.append(f"{where}: {target!r} is already the target of column {targets[target]!r}")
        targets[target] = column
        raw_transforms = spec.get("transforms") or []
        if not isinstance(raw_transforms, list):
            errors.append(f"{where}: transforms must be a list")
            raw_transforms = []
        transforms = tuple(t for t in (_transform(s, where, errors) for s in raw_transforms) if t is not None)
        rules.append(Rule(column, target, transforms))
    if mapping and not any(r.target.startswith("identity.") for r in rules):
        errors.append("the mapping names no identity: map at least one column to identity.<namespace>")
    if kind == "event":
        for name in ("id", "type", "timestamp"):
            if mapping and name not in targets:
                errors.append(f"an event dataset's mapping needs a column for the event's {name!r}")
    if errors:
        raise Unprocessable(f"invalid mapping: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1
                                                                 else ""),
                            code="invalid_mapping", details={"errors": errors})
    return rules


def _convert(value: Any, rule: Rule, fields: dict) -> Any:
    """A source value through the rule's transforms and into the target's type (ValueError)."""
    for transform in rule.transforms:
        if value is None:
            break
        if not isinstance(value, str):
            raise ValueError(f"{transform[0]} applies to text, got {type(value).__name__}")
        if transform[0] == "trim":
            value = value.strip()
        elif transform[0] == "lower":
            value = value.lower()
        elif transform[0] == "split":
            value = [item.strip() for item in value.split(transform[1]) if item.strip()]
        elif transform[0] == "parse_date":
            if value.strip() == "":
                value = None
                break
            try:
                parsed = datetime.strptime(value.strip(), transform[1])
            except ValueError as exc:
                raise ValueError(f"parse_date {transform[1]!r}: {exc}") from None
            type_ = fields.get(rule.target)
            if type_ is not None and type_.name == "date":
                value = parsed.date().isoformat()
            else:
                value = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, str) and value == "":
        return None
    type_ = None if rule.target.startswith("identity.") else fields.get(rule.target)
    if isinstance(value, str) and type_ is not None:
        text = value.strip()
        if type_.name == "integer":
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        if type_.name == "number":
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
            return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
        if type_.name == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(f"expected a boolean (true/false, yes/no, 1/0), got {value!r}")
        if type_.name == "list":
            raise ValueError(f"expected a list for {rule.target!r}: add a split transform")
    return value


def _set(document: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        document = document.setdefault(part, {})
    document[parts[-1]] = value


def _lookup(values: dict, column: str) -> Any:
    if column in values:
        return values[column]
    current: Any = values
    for part in column.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def row_record(row: Row, rules: list[Rule], kind: str, fields: dict) -> tuple[dict | None, list[tuple[str, str]]]:
    """A row as a streaming record, or the (column, reason) problems met on the way."""
    identities: list[dict] = []
    body: dict = {}
    errors: list[tuple[str, str]] = []
    for rule in rules:
        try:
            value = _convert(_lookup(row.values, rule.column), rule, fields)
        except ValueError as exc:
            errors.append((rule.column, str(exc)[:300]))
            continue
        if value is None:
            continue
        if rule.target.startswith("identity."):
            identities.append({"namespace": rule.target.removeprefix("identity."),
                               "id": value if isinstance(value, str) else str(value)})
        else:
            _set(body, rule.target, value)
    if errors:
        return None, errors
    return {"identities": identities, ("attributes" if kind == "profile" else "event"): body}, []


# ---- reading files -------------------------------------------------------------------------------

def decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unprocessable(f"the file is not UTF-8 text (byte {exc.start})", code="invalid_file") from None


def csv_header(text: str) -> list[str]:
    header = next(csv.reader(io.StringIO(text)), None)
    if not header or not any(h.strip() for h in header):
        raise Unprocessable("the CSV file has no header row", code="invalid_file")
    return header


def read_rows(text: str, format_: str) -> list[Row]:
    rows: list[Row] = []
    if format_ == "csv":
        reader = csv.reader(io.StringIO(text))
        header = next(reader, [])
        for index, cells in enumerate(reader):
            if not any(c.strip() for c in cells):
                continue  # blank line
            number = index + 2  # as a spreadsheet numbers rows: the header is row 1
            values = dict(zip(header, cells))
            row = Row(number, json.dumps(values, ensure_ascii=False), values)
            if len(cells) != len(header):
                row.values = None
                row.errors.append((None, f"{len(cells)} cells; the header has {len(header)} columns"))
            rows.append(row)
    else:
        for index, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            row = Row(index + 1, line)
            try:
                value = json.loads(line)
            except ValueError as exc:
                row.errors.append((None, f"not JSON: {exc}"))
            else:
                if isinstance(value, dict):
                    row.values = value
                else:
                    row.errors.append((None, "a line must be a JSON object"))
            rows.append(row)
    return rows


# ---- jobs ----------------------------------------------------------------------------------------

def _read(row) -> BatchRead:
    return BatchRead(id=row.pk, dataset_id=row.dataset_pk, status=BatchStatus(row.status), format=row.format,
                     filename=row.filename, file_sha256=row.file_sha256, mapping=row.mapping,
                     error_threshold=row.error_threshold, total_rows=row.total_rows, accepted_rows=row.accepted_rows,
                     rejected_rows=row.rejected_rows, duplicate_rows=row.duplicate_rows, message=row.message,
                     created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at)


_COLUMNS = [c for c in ingestion_batches.c if c.name != "content"]


def create_batch(*, connection: sa.Connection, sandbox: str, dataset_id: int, content: bytes,
                 filename: str | None, format_: str | None, mapping: str | None, error_threshold: float,
                 schema: Schema) -> int:
    """Check the upload and store the job as queued (in the caller's transaction: start the worker
    after it commits); returns its id."""
    dataset = get_dataset(connection=connection, sandbox=sandbox, dataset_id=dataset_id)
    if format_ is None:
        suffix = (filename or "").lower().rsplit(".", 1)[-1]
        format_ = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix)
        if format_ is None:
            raise Unprocessable("cannot tell the file's format from its name: name it .csv or .jsonl, or give "
                                "`format` (csv or jsonl)", code="invalid_file")
    if not content:
        raise Unprocessable("the file is empty", code="invalid_file")
    text = decode(content)
    parsed_mapping = None
    if mapping is not None and mapping.strip():
        try:
            parsed_mapping = json.loads(mapping)
        except ValueError as exc:
            raise Unprocessable(f"invalid mapping: not JSON ({exc})", code="invalid_mapping") from None
        rules = parse_mapping(parsed_mapping, dataset.kind.value, schema)
        if format_ == "csv":
            header = csv_header(text)
            missing = [r.column for r in rules if r.column not in header]
            if missing:
                raise Unprocessable(f"invalid mapping: column(s) {', '.join(map(repr, missing))} are not in the CSV "
                                    f"header ({', '.join(map(repr, header[:20]))})", code="invalid_mapping",
                                    details={"errors": [f"column {c!r} is not in the header" for c in missing]})
    elif format_ == "csv":
        raise Unprocessable("a CSV file needs a mapping (source column → schema path)", code="invalid_mapping")
    now = datetime.now(timezone.utc)
    return connection.execute(ingestion_batches.insert().values(
        sandbox=sandbox, dataset_pk=dataset.id, status=BatchStatus.queued.value, format=format_,
        filename=(filename or None) and filename[:512], file_sha256=hashlib.sha256(content).hexdigest(),
        content=content, mapping=parsed_mapping, error_threshold=error_threshold, total_rows=0, accepted_rows=0,
        rejected_rows=0, duplicate_rows=0, created_at=now).returning(ingestion_batches.c.pk)).scalar_one()


def start(engine: sa.Engine, batch_id: int, metrics: Metrics | None) -> threading.Thread:
    thread = threading.Thread(target=run_batch, args=(engine, batch_id, metrics), name=f"cdp-batch-{batch_id}",
                              daemon=True)
    thread.start()
    return thread


def _finish(engine: sa.Engine, batch_id: int, status: BatchStatus, message: str | None, counts: dict,
            errors: list[dict], connection: sa.Connection | None = None) -> None:
    def write(conn: sa.Connection) -> None:
        conn.execute(ingestion_errors.delete().where(ingestion_errors.c.batch_pk == batch_id))
        if errors:
            conn.execute(ingestion_errors.insert(), [{**e, "batch_pk": batch_id} for e in errors])
        conn.execute(ingestion_batches.update().where(ingestion_batches.c.pk == batch_id).values(
            status=status.value, message=message, finished_at=datetime.now(timezone.utc), **counts))

    if connection is not None:
        write(connection)
    else:
        with write_transaction(engine) as conn:
            write(conn)


def run_batch(engine: sa.Engine, batch_id: int, metrics: Metrics | None = None) -> None:
    """Process one queued job to its end (succeeded or failed); never raises."""
    try:
        _run(engine, batch_id, metrics)
    except Exception as exc:  # noqa: BLE001 - a job must end, whatever happens
        log.error("batch %s failed unexpectedly", batch_id, exc_info=exc)
        try:
            _finish(engine, batch_id, BatchStatus.failed, "internal error while processing the batch; the server "
                                                          "log has the details; nothing was applied",
                    {}, [])
        except Exception:  # noqa: BLE001
            log.exception("could not record the failure of batch %s", batch_id)


def _run(engine: sa.Engine, batch_id: int, metrics: Metrics | None) -> None:
    from cdp.schema_registry.service import get_schema

    with write_transaction(engine) as connection:
        claimed = connection.execute(ingestion_batches.update().where(
            ingestion_batches.c.pk == batch_id, ingestion_batches.c.status == BatchStatus.queued.value)
            .values(status=BatchStatus.processing.value, started_at=datetime.now(timezone.utc))).rowcount
        if not claimed:
            return
        batch = connection.execute(sa.select(ingestion_batches).where(ingestion_batches.c.pk == batch_id)).one()
        kind = connection.execute(sa.select(datasets.c.kind).where(datasets.c.pk == batch.dataset_pk)).scalar_one()
        schema = get_schema(connection=connection, sandbox=batch.sandbox)
    fields = dict(schema.profile) if kind == "profile" else schema.all_event_fields()
    rows = read_rows(decode(batch.content), batch.format)
    if len(rows) > limits.MAX_BATCH_ROWS:
        _finish(engine, batch_id, BatchStatus.failed, f"{len(rows)} rows; at most {limits.MAX_BATCH_ROWS} per file; "
                                                      f"nothing was applied", {"total_rows": len(rows)}, [])
        return
    rules = parse_mapping(batch.mapping, kind, schema) if batch.mapping is not None else None
    # validate every row first
    target_columns = {r.target: r.column for r in rules or []}
    valid_rows = []
    for row in rows:
        if row.values is None:
            continue
        if rules is None:
            record, problems = row.values, []
        else:
            record, problems = row_record(row, rules, kind, fields)
        if problems:
            row.errors.extend(problems)
            continue
        valid, errors = validate_record(record, kind, schema)
        if valid is None:
            for error in errors:
                row.errors.append((_column_of(error["path"], target_columns, rules is None), error["message"]))
            continue
        valid_rows.append((row, valid))
    total = len(rows)
    counts = {"total_rows": total, "accepted_rows": 0, "rejected_rows": 0, "duplicate_rows": 0}

    def error_rows() -> list[dict]:
        return [{"row_number": row.number, "column": column, "reason": reason, "raw": row.raw}
                for row in rows for column, reason in row.errors]

    if total == 0:
        _finish(engine, batch_id, BatchStatus.failed, "the file holds no rows", counts, [])
        return
    try:
        with write_transaction(engine) as connection:
            writer = Writer(connection, sandbox=batch.sandbox, dataset_pk=batch.dataset_pk, kind=kind)
            for row, valid in valid_rows:
                result = writer.apply(row.number, valid)
                if result.status == RecordStatus.rejected:
                    row.errors.extend((None, e.message) for e in result.errors)
                elif result.status == RecordStatus.duplicate:
                    counts["duplicate_rows"] += 1
                else:
                    counts["accepted_rows"] += 1
            counts["rejected_rows"] = sum(1 for row in rows if row.errors)
            if counts["rejected_rows"] > batch.error_threshold * total:
                raise _Rejected
            note = None
            if counts["rejected_rows"]:
                note = f"{counts['rejected_rows']} of {total} rows rejected (within the threshold of " \
                       f"{batch.error_threshold:.2%}); see the errors"
            _finish(engine, batch_id, BatchStatus.succeeded, note, counts, error_rows(), connection)
    except _Rejected:
        share = counts["rejected_rows"] / total
        counts["accepted_rows"] = counts["duplicate_rows"] = 0
        _finish(engine, batch_id, BatchStatus.failed,
                f"{counts['rejected_rows']} of {total} rows rejected ({share:.2%}), over the error threshold of "
                f"{batch.error_threshold:.2%}: nothing of the batch was applied; fix the rows and upload again",
                counts, error_rows())
        if metrics is not None:
            metrics.rejected(batch.sandbox, kind, total)
        return
    if metrics is not None:
        if counts["accepted_rows"]:
            metrics.ingested(batch.sandbox, kind, counts["accepted_rows"])
        if counts["rejected_rows"]:
            metrics.rejected(batch.sandbox, kind, counts["rejected_rows"])


def _column_of(path: str, target_columns: dict[str, str], unmapped: bool) -> str | None:
    """The source column behind a validation error's path (``attributes.loyalty.points``)."""
    if unmapped:
        return path or None
    if path.startswith("identities"):
        columns = [c for t, c in target_columns.items() if t.startswith("identity.")]
        return ", ".join(columns) or None
    for prefix in ("attributes.", "event."):
        if path.startswith(prefix):
            target = path.removeprefix(prefix)
            while target:
                if target in target_columns:
                    return target_columns[target]
                target = target.rpartition(".")[0]
    return None


def _batch_row(connection: sa.Connection, sandbox: str, dataset_id: int, batch_id: int):
    row = connection.execute(sa.select(*_COLUMNS).where(
        ingestion_batches.c.pk == batch_id, ingestion_batches.c.sandbox == sandbox,
        ingestion_batches.c.dataset_pk == dataset_id)).first()
    if row is None:
        raise NotFound(f"no batch {batch_id!r} of dataset {dataset_id!r} in sandbox {sandbox!r}",
                       details={"resource": "batch", "id": batch_id, "dataset_id": dataset_id, "sandbox": sandbox})
    return row


def get_batch(*, connection: sa.Connection, sandbox: str, dataset_id: int, batch_id: int) -> BatchRead:
    return _read(_batch_row(connection, sandbox, dataset_id, batch_id))


def list_batches(*, connection: sa.Connection, sandbox: str, dataset_id: int, limit: int,
                 offset: int) -> tuple[list[BatchRead], int]:
    get_dataset(connection=connection, sandbox=sandbox, dataset_id=dataset_id)
    where = [ingestion_batches.c.sandbox == sandbox, ingestion_batches.c.dataset_pk == dataset_id]
    total = connection.execute(sa.select(sa.func.count()).select_from(ingestion_batches).where(*where)).scalar_one()
    rows = connection.execute(sa.select(*_COLUMNS).where(*where).order_by(ingestion_batches.c.pk.desc())
                              .limit(limit).offset(offset))
    return [_read(row) for row in rows], total


def batch_errors(*, connection: sa.Connection, sandbox: str, dataset_id: int, batch_id: int,
                 limit: int | None, offset: int) -> tuple[list[BatchError], int]:
    _batch_row(connection, sandbox, dataset_id, batch_id)
    where = ingestion_errors.c.batch_pk == batch_id
    total = connection.execute(sa.select(sa.func.count()).select_from(ingestion_errors).where(where)).scalar_one()
    query = (sa.select(ingestion_errors).where(where).order_by(ingestion_errors.c.row_number, ingestion_errors.c.pk)
             .offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return [BatchError(row_number=r.row_number, column=r.column, reason=r.reason, raw=r.raw)
            for r in connection.execute(query)], total
