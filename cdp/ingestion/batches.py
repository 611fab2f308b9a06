"""Batch files: a CSV or JSON Lines file with a field mapping, processed as a job.

The mapping (a JSON object) maps a source column (CSV header; for JSON Lines a key, or a dotted
path into nested objects) to a target with optional transforms::

    {"Email": {"to": "identity.email", "transforms": ["trim", "lower"]},
     "E-mail": "email",
     "Birthday": {"to": "person.birth_date", "transforms": [{"parse_date": "%d/%m/%Y"}]},
     "Hobbies": {"to": "interests", "transforms": [{"split": ";"}]}}

Targets: ``identity.<namespace>`` for an identity (a built-in namespace or one of the sandbox's
custom ones), else a field of the schema in force — a profile attribute for a profile dataset,
an event field (``id``, ``type``, ``timestamp`` included) for an event dataset. Transforms,
applied in order to text: ``trim``, ``lower``, ``{"parse_date": FORMAT}`` (``datetime.strptime``
format; gives a date or a UTC datetime as the target needs), ``{"split": SEPARATOR}`` (a list;
items trimmed, empty ones dropped). Text is then converted to the target's type (integer,
number, boolean ``true/false/yes/no/1/0``, date, datetime). An empty cell sets nothing. JSON
Lines without a mapping: each line is a record as streamed.

Upload (:func:`read_upload`, :func:`create_batch`): the multipart parser spools the file to a
temporary file (the middleware bounds the request by file + form limits); the endpoint reads it
in chunks of 1 MiB, hashing it and checking it is UTF-8 on the way, and stops with 413
``file_too_large`` as soon as it passes the limit (``CDP_MAX_FILE_BYTES``, capped by what the
database stores in one value: see :func:`file_limit`) — all before the request's transaction
begins. Only an authorized upload with a valid mapping is read into memory, once, to be stored
whole in ``ingestion_batches.content``: the job reads it from there, and a retry reads it again.

Processing (:func:`run_batch`, in a background thread with its own connections) reads the
stored file twice as a stream of rows and never holds the rows in memory — only the file's
bytes, the counts and the rejected rows:

1. *validate* — every row is read, mapped and validated against the schema in force; only the
   counts and the rejected rows (with their reasons) are kept. Over the error threshold (a
   fraction of the rows), the batch fails here and nothing is applied.
2. *apply* — the rows are read again and the valid ones applied in ONE transaction, which also
   records the outcome (status, counts, per-row errors). Rows the writer refuses (an identity
   its namespace does not accept, too many events …) count as rejected too; over the threshold
   the transaction is rolled back and the batch fails — nothing of it is applied.

Events already ingested into the dataset (by id) are counted as duplicates, not errors, so
re-uploading a file changes nothing. While a job is processing, its ``message`` says which pass
it is in.

Jobs and workers. A job goes queued → processing → succeeded | failed. A worker (a thread of a
server process) claims a queued job in one short transaction: status processing, ``attempts`` +
1, ``worker`` = the id of its process (``host:pid:token``, the token random per process), and
``heartbeat_at`` = now. While it works, a heartbeat thread sets ``heartbeat_at`` every
HEARTBEAT_SECONDS in short transactions of its own. Every later write a worker makes to its job
(heartbeat, progress, outcome) holds only while the job is still processing by this worker and
attempt; the outcome is written inside the applying transaction, so when the job has been taken
from the worker (judged gone, below) that transaction rolls back: a batch is applied by one
attempt at most, and then in full.

On SQLite the applying transaction holds the database's write lock, so no heartbeat at all can
be written while a batch is applied — neither its own nor another job's. Liveness therefore does
not rest on the heartbeat alone. A processing job's worker is **gone** when

1. it is this process, and no thread of this process runs the job (exact: each process keeps a
   registry of the jobs it runs); or
2. it ran on this host (same hostname) and its process no longer exists — or it had this
   process's own pid (a restarted container reuses pids; the token tells the two apart); or
3. its last heartbeat is older than STALE_AFTER_SECONDS (30 s) — this decides for a worker on
   another host (servers sharing a PostgreSQL database, whose heartbeat goes on during the
   apply) and for one whose pid exists here but may belong to another program.

Rules 1 and 2 decide at once after a crash or a restart on the same host, on both backends. On
SQLite (one host) rule 3 only matters for a second server process on the same file: its
heartbeat may be late by as long as another batch's apply holds the lock, so it can be judged
gone while alive — which costs a retry, never data, since its outcome is conditional (above).
Taking a job from a gone worker is itself conditional (same status, worker and attempt, no newer
heartbeat), so two judges never both act.

Recovery. On start (the app's lifespan, after the migrations), jobs left processing by a gone
worker are marked failed — the server stopped while processing, nothing of the batch was
applied, ``POST /v1/batches/{id}/retry`` runs it again — and queued jobs are started; then every
SWEEP_SECONDS the app marks failed the jobs whose worker has gone since (a server on another
host that died). When the app shuts down cleanly, its running jobs stop between two rows, roll
back and are marked failed the same way. :func:`retry_batch` puts a failed job, or a processing
one whose worker is gone, back to queued and runs it again from the stored file; events are
idempotent per dataset and the apply is one transaction, so a retry after a crash gives exactly
the data of one complete run.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, BinaryIO

import sqlalchemy as sa

import cdp.ingestion as limits
from cdp.api.metrics import Metrics
from cdp.datasets.service import get_dataset
from cdp.errors import CdpError, Conflict, NotFound, PayloadTooLarge, Unprocessable
from cdp.identity.namespaces import namespace_codes
from cdp.ingestion.models import BatchError, BatchRead, BatchStatus, RecordStatus
from cdp.ingestion.service import Writer
from cdp.ingestion.validation import ValidRecord, validate_record
from cdp.schema import Schema
from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, ingestion_batches, ingestion_errors

log = logging.getLogger("cdp.ingestion")

FORMATS = ("csv", "jsonl")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}

HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 30.0
SWEEP_SECONDS = 30.0
CHUNK_BYTES = 1024 * 1024
_CHECK_EVERY_ROWS = 256  # a worker looks for a stop request this often
_APPLY_CHUNK_ROWS = 1000  # rows the writer resolves and writes set-wise at once
_ERRORS_PER_INSERT = 2000
POSTGRESQL_MAX_VALUE_BYTES = 2**30 - 2**20  # a value is at most 1 GiB; room for the rest of the row


@dataclass(frozen=True)
class Rule:
    column: str
    target: str  # identity.<ns> or a schema path
    transforms: tuple  # ("trim",), ("lower",), ("parse_date", fmt), ("split", sep)


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


def parse_mapping(mapping: Any, kind: str, schema: Schema, *, namespaces: Collection[str]) -> list[Rule]:
    """The rules of a mapping; Unprocessable (``invalid_mapping``) lists every problem.
    ``namespaces``: the identity namespace codes of the sandbox (built-in and custom)."""
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
            if target.removeprefix("identity.") not in namespaces:
                errors.append(f"{where}: unknown identity namespace in {target!r}; one of "
                              f"{', '.join(namespaces)} (custom namespaces: POST /v1/identity/namespaces)")
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


def row_record(values: dict, rules: list[Rule], kind: str, fields: dict) -> tuple[dict | None, list[tuple[str, str]]]:
    """A row (column → value) as a streaming record, or the (column, reason) problems met on the way."""
    identities: list[dict] = []
    body: dict = {}
    errors: list[tuple[str, str]] = []
    for rule in rules:
        try:
            value = _convert(_lookup(values, rule.column), rule, fields)
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

@dataclass(slots=True)
class Row:
    number: int  # CSV: as a spreadsheet numbers rows (the header is row 1); JSON Lines: the line (from 1)
    values: dict | None  # column → value; None when the line could not be read
    line: str | None = None  # JSON Lines: the line as read
    problem: str | None = None  # why the row cannot be used as it is

    @property
    def raw(self) -> str:
        """The row as read: the line for JSON Lines, a JSON object for CSV."""
        return self.line if self.line is not None else json.dumps(self.values, ensure_ascii=False)


def _text(content: bytes) -> io.TextIOWrapper:
    """The file as a text stream: decoded as it is read, never as one string."""
    return io.TextIOWrapper(io.BytesIO(content), encoding="utf-8-sig", newline="")


def csv_header(content: bytes) -> list[str]:
    try:
        header = next(csv.reader(_text(content)), None)
    except csv.Error as exc:
        raise Unprocessable(f"the CSV header cannot be read: {exc}", code="invalid_file") from None
    if not header or not any(h.strip() for h in header):
        raise Unprocessable("the CSV file has no header row", code="invalid_file")
    return header


def iter_rows(content: bytes, format_: str) -> Iterator[Row]:
    """The file's rows, one at a time (blank lines skipped); Unprocessable (``invalid_file``) when
    the file cannot be read on past a point (a CSV quoting error, a cell over the CSV field size)."""
    stream = _text(content)
    if format_ == "csv":
        reader = csv.reader(stream)
        try:
            header = next(reader, [])
            for index, cells in enumerate(reader):
                if not any(c.strip() for c in cells):
                    continue  # blank line
                problem = None if len(cells) == len(header) else \
                    f"{len(cells)} cells; the header has {len(header)} columns"
                yield Row(index + 2, dict(zip(header, cells)), problem=problem)
        except csv.Error as exc:
            raise Unprocessable(f"the CSV file cannot be read past line {reader.line_num}: {exc}",
                                code="invalid_file") from None
        return
    for number, line in enumerate(stream, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            yield Row(number, None, line, f"not JSON: {exc}")
            continue
        if isinstance(value, dict):
            yield Row(number, value, line)
        else:
            yield Row(number, None, line, "a line must be a JSON object")


# ---- uploads -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    """An uploaded file, checked (size, UTF-8) and hashed, still in the request's spooled file."""

    file: BinaryIO
    size: int
    sha256: str
    filename: str | None

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


@cache
def _sqlite_max_length() -> int:
    import sqlite3

    connection = sqlite3.connect(":memory:")
    try:
        return connection.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    finally:
        connection.close()


def file_limit(dialect: str, configured: int) -> tuple[int, str]:
    """The largest batch file accepted, and what sets it: ``CDP_MAX_FILE_BYTES``, or — when that is
    more — the most the database stores in one value (SQLite's length limit, 1,000,000,000 bytes
    unless compiled otherwise; PostgreSQL's 1 GiB per value, less room for the rest of the row)."""
    stored = {"sqlite": _sqlite_max_length, "postgresql": lambda: POSTGRESQL_MAX_VALUE_BYTES}.get(dialect)
    if stored is not None and stored() < configured:
        name = "SQLite" if dialect == "sqlite" else "PostgreSQL"
        return stored(), f"the most the {name} database stores in one value; CDP_MAX_FILE_BYTES is {configured}"
    return configured, "CDP_MAX_FILE_BYTES"


def read_upload(file: BinaryIO, *, filename: str | None, limit: int, limit_reason: str = "CDP_MAX_FILE_BYTES"
                ) -> Upload:
    """An uploaded file read in chunks: 413 ``file_too_large`` as soon as it passes ``limit``,
    422 ``invalid_file`` when it is not UTF-8; hashed on the way. Nothing is kept in memory: the
    file is read whole only once the request is authorized and checked (:func:`create_batch`)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    file.seek(0)
    while chunk := file.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the file is larger than {limit} bytes ({limit_reason}); split it into several "
                                  f"batches", code="file_too_large",
                                  details={"limit_bytes": limit, "limit": limit_reason})
        digest.update(chunk)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise Unprocessable(f"the file is not UTF-8 text (byte {size - len(chunk) - pending + exc.start})",
                                code="invalid_file") from None
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise Unprocessable("the file is not UTF-8 text (it ends inside a character)", code="invalid_file") from None
    return Upload(file, size, digest.hexdigest(), filename or None)


def create_batch(*, connection: sa.Connection, sandbox: str, dataset_id: int, upload: Upload,
                 format_: str | None, mapping: str | None, error_threshold: float, schema: Schema) -> int:
    """Check the upload and store the job as queued (in the caller's transaction: start the worker
    after it commits); returns its id."""
    dataset = get_dataset(connection=connection, sandbox=sandbox, dataset_id=dataset_id)
    filename = upload.filename
    if format_ is None:
        suffix = (filename or "").lower().rsplit(".", 1)[-1]
        format_ = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix)
        if format_ is None:
            raise Unprocessable("cannot tell the file's format from its name: name it .csv or .jsonl, or give "
                                "`format` (csv or jsonl)", code="invalid_file")
    if not upload.size:
        raise Unprocessable("the file is empty", code="invalid_file")
    content = None
    parsed_mapping = None
    if mapping is not None and mapping.strip():
        try:
            parsed_mapping = json.loads(mapping)
        except ValueError as exc:
            raise Unprocessable(f"invalid mapping: not JSON ({exc})", code="invalid_mapping") from None
        rules = parse_mapping(parsed_mapping, dataset.kind.value, schema,
                              namespaces=namespace_codes(connection=connection, sandbox=sandbox))
        if format_ == "csv":
            content = upload.read()
            header = csv_header(content)
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
        filename=(filename or None) and filename[:512], file_sha256=upload.sha256,
        content=content if content is not None else upload.read(),
        mapping=parsed_mapping, error_threshold=error_threshold, total_rows=0, accepted_rows=0, rejected_rows=0,
        duplicate_rows=0, created_at=now, attempts=0).returning(ingestion_batches.c.pk)).scalar_one()


# ---- workers -------------------------------------------------------------------------------------

_process: tuple[int, str] | None = None


def worker_id() -> str:
    """This process as a worker: ``host:pid:token`` (a new token in a forked child)."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, f"{socket.gethostname()[:80]}:{pid}:{secrets.token_hex(4)}")
    return _process[1]


def _database(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


_running: dict[tuple[str, int], _Job] = {}  # (database, batch id) → the job a thread of this process runs
_running_lock = threading.Lock()


def _pid_exists(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell without side effects: the heartbeat decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def worker_gone(*, database: str, batch_id: int, worker: str | None, heartbeat_at: datetime | None,
                now: datetime) -> str | None:
    """Why the worker of a processing job is gone (the rules of the module doc), or None when it
    may be alive."""
    if worker is None:
        return "no worker recorded"
    if worker == worker_id():
        with _running_lock:
            running = (database, batch_id) in _running
        return None if running else f"worker {worker} is this server, which does not run the job any more"
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname()[:80] and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return f"worker {worker} was an earlier server process with this process's id"
        if not _pid_exists(pid):
            return f"worker {worker} no longer runs"
    if heartbeat_at is None:
        return f"worker {worker} never sent a heartbeat"
    silent = (now - heartbeat_at).total_seconds()
    if silent > STALE_AFTER_SECONDS:
        return f"no heartbeat from worker {worker} for {silent:.0f} s"
    return None


def interrupted_message(batch_id: int, reason: str) -> str:
    return (f"the server stopped while processing this batch ({reason}); nothing of it was applied (its rows are "
            f"applied in one transaction); POST /v1/batches/{batch_id}/retry runs it again")


def _unchanged(row) -> list:
    """The job is still as read: same status, worker and attempt, no newer heartbeat."""
    c = ingestion_batches.c
    return [c.pk == row.pk, c.status == row.status, c.attempts == row.attempts,
            c.worker.is_(None) if row.worker is None else c.worker == row.worker,
            c.heartbeat_at.is_(None) if row.heartbeat_at is None else c.heartbeat_at <= row.heartbeat_at]


class _Stopped(Exception):
    """The server is shutting down: the job stops between two rows."""


class _Lost(Exception):
    """The job was taken from this worker (judged gone): its transaction must roll back."""


class _Rejected(Exception):
    """Raised out of the applying transaction to roll it back (threshold passed)."""


@dataclass
class _Outcome:
    total: int = 0
    rejected: set[int] = field(default_factory=set)  # row numbers
    errors: list[dict] = field(default_factory=list)  # row_number, column, reason, raw
    accepted: int = 0
    duplicates: int = 0

    def reject(self, row: Row, problems: list[tuple[str | None, str]]) -> None:
        self.rejected.add(row.number)
        raw = row.raw
        self.errors.extend({"row_number": row.number, "column": column, "reason": reason, "raw": raw}
                           for column, reason in problems)

    def counts(self) -> dict:
        return {"total_rows": self.total, "accepted_rows": self.accepted, "rejected_rows": len(self.rejected),
                "duplicate_rows": self.duplicates}


class _Job:
    """One attempt at one job, run by :func:`run_batch` in a thread of this process."""

    def __init__(self, engine: sa.Engine, batch_id: int, metrics: Metrics | None):
        self.engine = engine
        self.batch_id = batch_id
        self.metrics = metrics
        self.database = _database(engine)
        self.worker = worker_id()
        self.sqlite = engine.dialect.name == "sqlite"
        self.attempt = 0
        self.stop = threading.Event()  # set when the app shuts down
        self.lost = threading.Event()  # set by the heartbeat when the job is no longer ours
        self.applying = threading.Event()  # SQLite: the heartbeat waits (the apply holds the write lock)
        self.done = threading.Event()

    # ---- writes to the job, only while it is ours ------------------------------------------------

    def _ours(self) -> list:
        c = ingestion_batches.c
        return [c.pk == self.batch_id, c.status == BatchStatus.processing.value, c.worker == self.worker,
                c.attempts == self.attempt]

    def _update(self, connection: sa.Connection, **values) -> None:
        updated = connection.execute(ingestion_batches.update().where(*self._ours()).values(**values)).rowcount
        if updated != 1:
            raise _Lost

    def claim(self) -> bool:
        from cdp.schema_registry.service import get_schema

        now = datetime.now(timezone.utc)
        c = ingestion_batches.c
        with write_transaction(self.engine) as connection:
            claimed = connection.execute(ingestion_batches.update().where(
                c.pk == self.batch_id, c.status == BatchStatus.queued.value).values(
                status=BatchStatus.processing.value, worker=self.worker, attempts=c.attempts + 1, started_at=now,
                heartbeat_at=now, finished_at=None, message="validating the rows")).rowcount
            if not claimed:
                return False
            self.batch = connection.execute(sa.select(*_COLUMNS).where(c.pk == self.batch_id)).one()
            self.attempt = self.batch.attempts
            self.kind = connection.execute(sa.select(datasets.c.kind)
                                           .where(datasets.c.pk == self.batch.dataset_pk)).scalar_one()
            self.schema = get_schema(connection=connection, sandbox=self.batch.sandbox)
            self.namespaces = namespace_codes(connection=connection, sandbox=self.batch.sandbox)
        return True

    def beat(self) -> None:
        """The heartbeat thread: ``heartbeat_at`` every HEARTBEAT_SECONDS until the job is done."""
        while not self.done.wait(HEARTBEAT_SECONDS):
            if self.applying.is_set():
                continue
            try:
                with write_transaction(self.engine) as connection:
                    self._update(connection, heartbeat_at=datetime.now(timezone.utc))
            except _Lost:
                if not self.done.is_set():
                    log.warning("batch %s: the job was taken from this worker (attempt %s)", self.batch_id,
                                self.attempt)
                self.lost.set()
                return
            except sa.exc.SQLAlchemyError as exc:  # busy or unreachable: the next beat tries again
                log.warning("batch %s: heartbeat failed: %s", self.batch_id, str(getattr(exc, "orig", exc))[:200])

    def _checkpoint(self) -> None:
        if self.stop.is_set():
            raise _Stopped
        if self.lost.is_set():
            raise _Lost

    def fail(self, message: str, outcome: _Outcome | None = None) -> None:
        """The job ends failed, in a transaction of its own (nothing of the batch applied)."""
        try:
            with write_transaction(self.engine) as connection:
                self._record(connection, BatchStatus.failed, message, outcome)
        except _Lost:
            log.warning("batch %s: not marked failed (%s): the job was no longer this worker's", self.batch_id,
                        message)

    def _record(self, connection: sa.Connection, status: BatchStatus, message: str | None,
                outcome: _Outcome | None) -> None:
        counts = outcome.counts() if outcome is not None else {}
        self._update(connection, status=status.value, message=message, finished_at=datetime.now(timezone.utc),
                     **counts)
        connection.execute(ingestion_errors.delete().where(ingestion_errors.c.batch_pk == self.batch_id))
        errors = outcome.errors if outcome is not None else []
        for start in range(0, len(errors), _ERRORS_PER_INSERT):
            connection.execute(ingestion_errors.insert(), [{**e, "batch_pk": self.batch_id}
                                                           for e in errors[start:start + _ERRORS_PER_INSERT]])

    # ---- the passes ------------------------------------------------------------------------------

    def _check(self, row: Row, rules: list[Rule] | None, fields: dict, target_columns: dict
               ) -> tuple[ValidRecord | None, list[tuple[str | None, str]]]:
        if row.problem is not None:
            return None, [(None, row.problem)]
        if rules is None:
            record, problems = row.values, []
        else:
            record, problems = row_record(row.values, rules, self.kind, fields)
        if problems:
            return None, problems
        valid, errors = validate_record(record, self.kind, self.schema, namespaces=self.namespaces)
        if valid is None:
            return None, [(_column_of(e["path"], target_columns, rules is None), e["message"]) for e in errors]
        return valid, []

    def run(self) -> None:
        batch = self.batch
        with self.engine.connect() as connection:
            content = connection.execute(sa.select(ingestion_batches.c.content)
                                         .where(ingestion_batches.c.pk == self.batch_id)).scalar_one()
        try:
            rules = None if batch.mapping is None else parse_mapping(batch.mapping, self.kind, self.schema,
                                                                     namespaces=self.namespaces)
        except CdpError as exc:  # the schema or the namespaces changed since the upload
            self.fail(f"{exc.message}; nothing was applied")
            return
        fields = dict(self.schema.profile) if self.kind == "profile" else self.schema.all_event_fields()
        target_columns = {r.target: r.column for r in rules or []}
        threshold = batch.error_threshold
        outcome = _Outcome()
        # 1. validate every row; keep the counts and the rejected rows only
        try:
            for row in iter_rows(content, batch.format):
                outcome.total += 1
                if outcome.total > limits.MAX_BATCH_ROWS:
                    self.fail(f"more than {limits.MAX_BATCH_ROWS:,} rows; at most {limits.MAX_BATCH_ROWS:,} per file "
                              f"(split it into several batches); nothing was applied", _Outcome(total=outcome.total))
                    return
                if outcome.total % _CHECK_EVERY_ROWS == 0:
                    self._checkpoint()
                valid, problems = self._check(row, rules, fields, target_columns)
                if valid is None:
                    outcome.reject(row, problems)
        except Unprocessable as exc:
            self.fail(f"{exc.message}; nothing was applied", outcome)
            return
        total = outcome.total
        if total == 0:
            self.fail("the file holds no rows", outcome)
            return
        if len(outcome.rejected) > threshold * total:
            self._over_threshold(outcome)
            return
        # 2. apply the valid rows in ONE transaction, with the outcome
        valid_rows = total - len(outcome.rejected)
        with write_transaction(self.engine) as connection:
            self._update(connection, heartbeat_at=datetime.now(timezone.utc),
                         message=f"applying {valid_rows:,} valid rows of {total:,} in one transaction (nothing is "
                                 f"visible until it commits)")
        if self.sqlite:
            self.applying.set()
        try:
            with write_transaction(self.engine) as connection:
                writer = Writer(connection, sandbox=batch.sandbox, dataset_pk=batch.dataset_pk, kind=self.kind,
                                batch_pk=self.batch_id)
                pending: list[tuple[Row, ValidRecord]] = []

                def apply_pending() -> None:
                    # set-wise, in chunks (one row at a time costs ~10x more; see cdp/ingestion/service.py)
                    results = writer.apply_many([(row.number, valid) for row, valid in pending])
                    for (row, _), result in zip(pending, results):
                        if result.status == RecordStatus.rejected:
                            outcome.reject(row, [(None, e.message) for e in result.errors])
                        elif result.status == RecordStatus.duplicate:
                            outcome.duplicates += 1
                        else:
                            outcome.accepted += 1
                    pending.clear()

                for index, row in enumerate(iter_rows(content, batch.format)):
                    if index % _CHECK_EVERY_ROWS == 0:
                        self._checkpoint()
                    if row.number in outcome.rejected:
                        continue
                    valid, problems = self._check(row, rules, fields, target_columns)
                    if valid is None:  # cannot happen: the same checks passed in the first pass
                        outcome.reject(row, problems)
                        continue
                    pending.append((row, valid))
                    if len(pending) >= _APPLY_CHUNK_ROWS:
                        apply_pending()
                apply_pending()
                if len(outcome.rejected) > threshold * total:
                    raise _Rejected
                note = None
                if outcome.rejected:
                    note = (f"{len(outcome.rejected)} of {total} rows rejected (within the threshold of "
                            f"{threshold:.2%}); see the errors")
                self._record(connection, BatchStatus.succeeded, note, outcome)
        except _Rejected:
            self._over_threshold(outcome)
            return
        finally:
            self.applying.clear()
        if self.metrics is not None:
            if outcome.accepted:
                self.metrics.ingested(batch.sandbox, self.kind, outcome.accepted)
            if outcome.rejected:
                self.metrics.rejected(batch.sandbox, self.kind, len(outcome.rejected))

    def _over_threshold(self, outcome: _Outcome) -> None:
        total, rejected = outcome.total, len(outcome.rejected)
        outcome.accepted = outcome.duplicates = 0
        threshold = self.batch.error_threshold
        self.fail(f"{rejected} of {total} rows rejected ({rejected / total:.2%}), over the error threshold of "
                  f"{threshold:.2%}: nothing of the batch was applied; fix the rows and upload again", outcome)
        if self.metrics is not None:
            self.metrics.rejected(self.batch.sandbox, self.kind, total)


def start(engine: sa.Engine, batch_id: int, metrics: Metrics | None) -> threading.Thread:
    thread = threading.Thread(target=run_batch, args=(engine, batch_id, metrics), name=f"cdp-batch-{batch_id}",
                              daemon=True)
    thread.start()
    return thread


def run_batch(engine: sa.Engine, batch_id: int, metrics: Metrics | None = None) -> None:
    """Claim a queued job and process it to its end (succeeded or failed); never raises. Does
    nothing when the job is not queued (another worker claimed it)."""
    job = _Job(engine, batch_id, metrics)
    key = (job.database, batch_id)
    with _running_lock:  # registered before the claim: rule 1 never sees our job unregistered
        if key in _running:
            return
        _running[key] = job
    heartbeat = None
    try:
        if not job.claim():
            return
        heartbeat = threading.Thread(target=job.beat, name=f"cdp-batch-{batch_id}-heartbeat", daemon=True)
        heartbeat.start()
        job.run()
    except _Stopped:
        job.fail(interrupted_message(batch_id, "the server was shut down"))
    except _Lost:
        log.warning("batch %s: attempt %s was taken from this worker; its changes were rolled back", batch_id,
                    job.attempt)
    except Exception as exc:  # noqa: BLE001 - a job must end, whatever happens
        log.error("batch %s failed unexpectedly", batch_id, exc_info=exc)
        try:
            if job.attempt:
                job.fail("internal error while processing the batch; the server log has the details; nothing was "
                         "applied")
        except Exception:  # noqa: BLE001
            log.exception("could not record the failure of batch %s", batch_id)
    finally:
        job.done.set()
        with _running_lock:
            _running.pop(key, None)


def stop_jobs(engine: sa.Engine, timeout: float) -> None:
    """Ask the jobs this process runs on ``engine`` to stop (they roll back and are marked
    failed) and wait for them, at most ``timeout`` seconds."""
    with _running_lock:
        jobs = [job for job in _running.values() if job.engine is engine]
    for job in jobs:
        job.stop.set()
    deadline = datetime.now(timezone.utc) + timedelta(seconds=timeout)
    for job in jobs:
        job.done.wait(max(0.0, (deadline - datetime.now(timezone.utc)).total_seconds()))


# ---- recovery ------------------------------------------------------------------------------------

def fail_abandoned(engine: sa.Engine, *, now: datetime | None = None) -> list[int]:
    """Mark failed the processing jobs whose worker is gone; their ids."""
    now = now or datetime.now(timezone.utc)
    c = ingestion_batches.c
    database = _database(engine)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(c.pk, c.status, c.attempts, c.worker, c.heartbeat_at)
                                  .where(c.status == BatchStatus.processing.value)).all()
    gone = [(row, reason) for row in rows
            if (reason := worker_gone(database=database, batch_id=row.pk, worker=row.worker,
                                      heartbeat_at=row.heartbeat_at, now=now)) is not None]
    failed = []
    if gone:
        with write_transaction(engine) as connection:
            for row, reason in gone:
                updated = connection.execute(ingestion_batches.update().where(*_unchanged(row)).values(
                    status=BatchStatus.failed.value, message=interrupted_message(row.pk, reason),
                    finished_at=now)).rowcount
                if updated:
                    failed.append(row.pk)
    for pk in failed:
        log.warning("batch %s was interrupted (its worker is gone) and is marked failed; "
                    "POST /v1/batches/%s/retry runs it again", pk, pk)
    return failed


def start_queued(engine: sa.Engine, metrics: Metrics | None) -> list[threading.Thread]:
    c = ingestion_batches.c
    with engine.connect() as connection:
        queued = connection.execute(sa.select(c.pk).where(c.status == BatchStatus.queued.value)
                                    .order_by(c.pk)).scalars().all()
    return [start(engine, pk, metrics) for pk in queued]


class Recovery:
    """The app's part in crash recovery: at start, jobs of gone workers are marked failed and
    queued jobs started; then a sweep every SWEEP_SECONDS; at shutdown, running jobs stop."""

    def __init__(self, engine: sa.Engine, metrics: Metrics | None):
        self.engine = engine
        self.metrics = metrics
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        try:
            fail_abandoned(self.engine)
            start_queued(self.engine, self.metrics)
        except Exception:  # noqa: BLE001 - the service still starts; the sweep tries again
            log.exception("recovering batch jobs at start failed")
        self._sweeper = threading.Thread(target=self._sweep, name="cdp-batch-sweeper", daemon=True)
        self._sweeper.start()

    def _sweep(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                fail_abandoned(self.engine)
            except Exception as exc:  # noqa: BLE001
                log.warning("sweeping batch jobs failed: %s", str(getattr(exc, "orig", exc))[:200])

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        stop_jobs(self.engine, timeout)
        if self._sweeper is not None:
            self._sweeper.join(timeout=1)


# ---- jobs through the API ------------------------------------------------------------------------

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


_COLUMNS = [c for c in ingestion_batches.c if c.name != "content"]


def _read(row) -> BatchRead:
    return BatchRead(id=row.pk, dataset_id=row.dataset_pk, status=BatchStatus(row.status), format=row.format,
                     filename=row.filename, file_sha256=row.file_sha256, mapping=row.mapping,
                     error_threshold=row.error_threshold, total_rows=row.total_rows, accepted_rows=row.accepted_rows,
                     rejected_rows=row.rejected_rows, duplicate_rows=row.duplicate_rows, message=row.message,
                     attempts=row.attempts, created_at=row.created_at, started_at=row.started_at,
                     heartbeat_at=row.heartbeat_at, finished_at=row.finished_at)


def _batch_row(connection: sa.Connection, sandbox: str, batch_id: int):
    row = connection.execute(sa.select(*_COLUMNS).where(ingestion_batches.c.pk == batch_id,
                                                        ingestion_batches.c.sandbox == sandbox)).first()
    if row is None:
        raise NotFound.resource("batch", batch_id, sandbox)
    return row


def get_batch(*, connection: sa.Connection, sandbox: str, batch_id: int) -> BatchRead:
    return _read(_batch_row(connection, sandbox, batch_id))


def list_batches(*, connection: sa.Connection, sandbox: str, dataset_id: int, limit: int,
                 offset: int) -> tuple[list[BatchRead], int]:
    get_dataset(connection=connection, sandbox=sandbox, dataset_id=dataset_id)
    where = [ingestion_batches.c.sandbox == sandbox, ingestion_batches.c.dataset_pk == dataset_id]
    total = connection.execute(sa.select(sa.func.count()).select_from(ingestion_batches).where(*where)).scalar_one()
    rows = connection.execute(sa.select(*_COLUMNS).where(*where).order_by(ingestion_batches.c.pk.desc())
                              .limit(limit).offset(offset))
    return [_read(row) for row in rows], total


def batch_errors(*, connection: sa.Connection, sandbox: str, batch_id: int, limit: int | None,
                 offset: int) -> tuple[list[BatchError], int]:
    _batch_row(connection, sandbox, batch_id)
    where = ingestion_errors.c.batch_pk == batch_id
    total = connection.execute(sa.select(sa.func.count()).select_from(ingestion_errors).where(where)).scalar_one()
    query = (sa.select(ingestion_errors).where(where).order_by(ingestion_errors.c.row_number, ingestion_errors.c.pk)
             .offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return [BatchError(row_number=r.row_number, column=r.column, reason=r.reason, raw=r.raw)
            for r in connection.execute(query)], total


def retry_batch(*, connection: sa.Connection, sandbox: str, batch_id: int, now: datetime | None = None
                ) -> BatchRead:
    """Put a failed job, or a processing one whose worker is gone, back to queued (in the caller's
    transaction: start the worker after it commits); 409 ``batch_not_retryable`` otherwise."""
    now = now or datetime.now(timezone.utc)
    row = _batch_row(connection, sandbox, batch_id)
    details = {"batch_id": batch_id, "status": row.status}
    if row.status == BatchStatus.succeeded.value:
        raise Conflict(f"batch {batch_id} succeeded; there is nothing to retry (to load the file again, upload it: "
                       f"events already ingested count as duplicates)", code="batch_not_retryable", details=details)
    if row.status == BatchStatus.queued.value:
        raise Conflict(f"batch {batch_id} is queued; a worker will start it shortly", code="batch_not_retryable",
                       details=details)
    if row.status == BatchStatus.processing.value:
        reason = worker_gone(database=_database(connection.engine), batch_id=batch_id, worker=row.worker,
                             heartbeat_at=row.heartbeat_at, now=now)
        if reason is None:
            silent = (now - row.heartbeat_at).total_seconds() if row.heartbeat_at else None
            raise Conflict(f"batch {batch_id} is being processed (attempt {row.attempts}"
                           + (f", last heartbeat {silent:.0f} s ago" if silent is not None else "")
                           + f"); retry it once it has failed, or once its worker is gone (no heartbeat for "
                             f"{STALE_AFTER_SECONDS:.0f} s)", code="batch_not_retryable",
                           details={**details, "attempts": row.attempts, "heartbeat_at":
                                    row.heartbeat_at.isoformat() if row.heartbeat_at else None})
    updated = connection.execute(ingestion_batches.update().where(*_unchanged(row)).values(
        status=BatchStatus.queued.value, message=None, total_rows=0, accepted_rows=0, rejected_rows=0,
        duplicate_rows=0, started_at=None, finished_at=None, worker=None, heartbeat_at=None)).rowcount
    if not updated:
        raise Conflict(f"batch {batch_id} changed while it was being retried; read it and try again",
                       code="batch_not_retryable", details=details)
    connection.execute(ingestion_errors.delete().where(ingestion_errors.c.batch_pk == batch_id))
    return get_batch(connection=connection, sandbox=sandbox, batch_id=batch_id)
