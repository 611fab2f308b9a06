"""Batch files as a resource: upload (:func:`create_batch`), read, list, errors, retry.

A batch is a row of ``ingestion_batches`` — the file, its mapping, status, counts, per-row
errors — and a job of the job table (cdp/jobs) that runs it (cdp/ingestion/batch_job.py); the
job holds the run itself: attempts, worker, heartbeat, progress. The batch's status goes
queued → processing → succeeded | failed; its job's queued → running → succeeded | failed.
The upload stores both in the request's transaction; the view wakes the runner after the
commit. Every read of a batch shows its job's ``attempts`` and ``heartbeat_at``.

Errors: each keeps at most RAW_MAX_BYTES of its raw row (``raw_truncated``, ``raw_bytes``;
cdp/ingestion/readers.py); a page of errors holds at most ``limit`` errors and about
ERRORS_PAGE_BYTES of them, whichever comes first (``next_offset`` says where the next page
starts), and the JSON Lines download streams them from the database a chunk at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.datasets.service import get_dataset
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.identity.namespaces import namespace_codes
from cdp.ingestion.batch_job import batch_job_kind, job_of_batch
from cdp.ingestion.mapping import parse_mapping
from cdp.ingestion.models import BatchError, BatchRead, BatchStatus
from cdp.ingestion.readers import RAW_MAX_BYTES, clip, csv_header
from cdp.ingestion.uploads import Upload, store_content
from cdp.jobs import STALE_AFTER_SECONDS, enqueue, requeue, worker_gone
from cdp.jobs.liveness import database_name
from cdp.schema import Schema
from cdp.storage.models import ingestion_batches, ingestion_errors, jobs

ERRORS_PAGE_BYTES = 1024 * 1024
_DOWNLOAD_CHUNK_ROWS = 1000


def create_batch(*, connection: sa.Connection, sandbox: str, dataset_id: int, upload: Upload,
                 format_: str | None, mapping: str | None, error_threshold: float, schema: Schema) -> int:
    """Check the upload and store the batch and its job, queued (in the caller's transaction:
    wake the runner after it commits); returns the batch's id."""
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
    parsed_mapping = None
    if mapping is not None and mapping.strip():
        try:
            parsed_mapping = json.loads(mapping)
        except ValueError as exc:
            raise Unprocessable(f"invalid mapping: not JSON ({exc})", code="invalid_mapping") from None
        rules = parse_mapping(parsed_mapping, dataset.kind.value, schema,
                              namespaces=namespace_codes(connection=connection, sandbox=sandbox))
        if format_ == "csv":
            header = csv_header(upload.file)
            missing = [r.column for r in rules if r.column not in header]
            if missing:
                raise Unprocessable(f"invalid mapping: column(s) {', '.join(map(repr, missing))} are not in the CSV "
                                    f"header ({', '.join(map(repr, header[:20]))})", code="invalid_mapping",
                                    details={"errors": [f"column {c!r} is not in the header" for c in missing]})
    elif format_ == "csv":
        raise Unprocessable("a CSV file needs a mapping (source column → schema path)", code="invalid_mapping")
    now = datetime.now(timezone.utc)
    batch_id = connection.execute(ingestion_batches.insert().values(
        sandbox=sandbox, dataset_pk=dataset.id, status=BatchStatus.queued.value, format=format_,
        filename=(filename or None) and filename[:512], file_sha256=upload.sha256,
        mapping=parsed_mapping, error_threshold=error_threshold, total_rows=0, accepted_rows=0, rejected_rows=0,
        duplicate_rows=0, created_at=now).returning(ingestion_batches.c.pk)).scalar_one()
    store_content(connection, batch_id=batch_id, upload=upload)
    enqueue(connection, kind=batch_job_kind(None), payload={"batch_id": batch_id}, sandbox=sandbox,
            key=str(batch_id), now=now)
    return batch_id


# ---- reads ---------------------------------------------------------------------------------------

_COLUMNS = [*ingestion_batches.c, jobs.c.pk.label("job_pk"), jobs.c.attempts, jobs.c.heartbeat_at, jobs.c.worker,
            jobs.c.progress_done, jobs.c.progress_total]
_FROM = ingestion_batches.outerjoin(jobs, job_of_batch())


def _read(row) -> BatchRead:
    return BatchRead(id=row.pk, dataset_id=row.dataset_pk, status=BatchStatus(row.status), format=row.format,
                     filename=row.filename, file_sha256=row.file_sha256, mapping=row.mapping,
                     error_threshold=row.error_threshold, total_rows=row.total_rows, accepted_rows=row.accepted_rows,
                     rejected_rows=row.rejected_rows, duplicate_rows=row.duplicate_rows, message=row.message,
                     attempts=row.attempts or 0, created_at=row.created_at, started_at=row.started_at,
                     heartbeat_at=row.heartbeat_at, finished_at=row.finished_at, job_id=row.job_pk,
                     progress_rows=row.progress_done or 0, progress_total_rows=row.progress_total)


def _batch_row(connection: sa.Connection, sandbox: str, batch_id: int):
    row = connection.execute(sa.select(*_COLUMNS).select_from(_FROM).where(
        ingestion_batches.c.pk == batch_id, ingestion_batches.c.sandbox == sandbox)).first()
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
    rows = connection.execute(sa.select(*_COLUMNS).select_from(_FROM).where(*where)
                              .order_by(ingestion_batches.c.pk.desc()).limit(limit).offset(offset))
    return [_read(row) for row in rows], total


def _errors_query(batch_id: int):
    e = ingestion_errors.c
    # the raw row is cut in SQL too: errors stored before the cap may hold whole rows
    return (sa.select(e.pk, e.row_number, e.column, e.reason, sa.func.substr(e.raw, 1, RAW_MAX_BYTES).label("raw"),
                      e.raw_truncated, e.raw_bytes)
            .where(e.batch_pk == batch_id).order_by(e.row_number, e.pk))


def _error(row) -> BatchError:
    raw, size, cut = clip(row.raw)
    return BatchError(row_number=row.row_number, column=row.column, reason=row.reason, raw=raw,
                      raw_truncated=bool(row.raw_truncated) or cut or (row.raw_bytes or 0) > size,
                      raw_bytes=max(row.raw_bytes or 0, size))


def batch_errors(*, connection: sa.Connection, sandbox: str, batch_id: int, limit: int, offset: int,
                 max_bytes: int | None = None) -> tuple[list[BatchError], int, int | None]:
    """A page of a batch's errors: at most ``limit`` of them and, past the first, no more than
    ``max_bytes`` (default ERRORS_PAGE_BYTES) of JSON; with the total and the offset of the next
    page (None at the end)."""
    max_bytes = ERRORS_PAGE_BYTES if max_bytes is None else max_bytes
    _batch_row(connection, sandbox, batch_id)
    total = connection.execute(sa.select(sa.func.count()).select_from(ingestion_errors)
                               .where(ingestion_errors.c.batch_pk == batch_id)).scalar_one()
    items: list[BatchError] = []
    size = 0
    for row in connection.execute(_errors_query(batch_id).offset(offset).limit(limit)):
        item = _error(row)
        item_size = len(item.model_dump_json()) + 1
        if items and size + item_size > max_bytes:
            break
        items.append(item)
        size += item_size
    following = offset + len(items)
    return items, total, following if following < total else None


def check_batch(*, connection: sa.Connection, sandbox: str, batch_id: int) -> None:
    """404 unless the batch exists in the sandbox."""
    _batch_row(connection, sandbox, batch_id)


def error_lines(engine: sa.Engine, batch_id: int) -> Iterator[bytes]:
    """Every error of a batch as JSON Lines, read a chunk at a time (the download streams them)."""
    e = ingestion_errors.c
    after: tuple[int, int] | None = None
    while True:
        query = _errors_query(batch_id).limit(_DOWNLOAD_CHUNK_ROWS)
        if after is not None:
            query = query.where(sa.tuple_(e.row_number, e.pk) > after)
        with engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            return
        yield b"".join(_error(row).model_dump_json().encode() + b"\n" for row in rows)
        after = (rows[-1].row_number, rows[-1].pk)


# ---- retry ---------------------------------------------------------------------------------------

def retry_batch(*, connection: sa.Connection, sandbox: str, batch_id: int, now: datetime | None = None
                ) -> BatchRead:
    """Put a failed batch, or a processing one whose worker is gone, back to queued with its job
    (in the caller's transaction: wake the runner after it commits); 409 ``batch_not_retryable``
    otherwise."""
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
        reason = worker_gone(database=database_name(connection.engine), job_id=row.job_pk, worker=row.worker,
                             heartbeat_at=row.heartbeat_at, now=now)
        if reason is None:
            silent = (now - row.heartbeat_at).total_seconds() if row.heartbeat_at else None
            raise Conflict(f"batch {batch_id} is being processed (attempt {row.attempts}"
                           + (f", last heartbeat {silent:.0f} s ago" if silent is not None else "")
                           + f"); retry it once it has failed, or once its worker is gone (no heartbeat for "
                             f"{STALE_AFTER_SECONDS:.0f} s)", code="batch_not_retryable",
                           details={**details, "attempts": row.attempts, "heartbeat_at":
                                    row.heartbeat_at.isoformat() if row.heartbeat_at else None})
    if row.job_pk is None:
        raise Conflict(f"batch {batch_id} has no job to run it (its job was deleted)", code="batch_not_retryable",
                       details=details)
    try:
        requeue(connection, job_id=row.job_pk, now=now)
    except Conflict as exc:
        raise Conflict(f"batch {batch_id} cannot be retried now: {exc.message}", code="batch_not_retryable",
                       details=details) from None
    c = ingestion_batches.c
    connection.execute(ingestion_batches.update().where(c.pk == batch_id, c.status == row.status).values(
        status=BatchStatus.queued.value, message=None, total_rows=0, accepted_rows=0, rejected_rows=0,
        duplicate_rows=0, started_at=None, finished_at=None))
    connection.execute(ingestion_errors.delete().where(ingestion_errors.c.batch_pk == batch_id))
    return get_batch(connection=connection, sandbox=sandbox, batch_id=batch_id)
