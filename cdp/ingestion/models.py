"""API shapes of ingestion: per-record results of streaming, batch jobs and their row errors."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class RecordStatus(StrEnum):
    accepted = "accepted"
    rejected = "rejected"
    duplicate = "duplicate"


class RecordError(BaseModel):
    path: str = Field(description="Where in the record: `attributes.loyalty.points`, `identities[0].namespace`, "
                                  "`event.timestamp`; empty for the record as a whole.")
    message: str


class RecordResult(BaseModel):
    index: int = Field(description="Position of the record in the request (0 for a single record).")
    status: RecordStatus
    profile_id: str | None = Field(default=None, description="The profile the record landed on (not for rejected).")
    errors: list[RecordError] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class IngestResponse(BaseModel):
    dataset_id: int
    request_id: str = Field(description="Names this request in the attribute provenance of the profiles it wrote.")
    accepted: int
    rejected: int
    duplicates: int
    results: list[RecordResult]


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def ingest_response_json(response: IngestResponse) -> bytes:
    """The JSON body of :class:`IngestResponse`, as FastAPI would send it for the response model
    (same keys, order and values; tests/api/test_ingestion_response.py), encoded by the json module
    over plain dicts: FastAPI's validation and serialisation of the response model (and its
    thread hop) measured 5–8 µs a record of a 500-record request at load ~28, this 2.3–2.9
    (bench/RESULTS.md, issue 16, third round)."""
    return _ENCODE({
        "dataset_id": response.dataset_id, "request_id": response.request_id, "accepted": response.accepted,
        "rejected": response.rejected, "duplicates": response.duplicates,
        "results": [{"index": r.index, "status": r.status.value, "profile_id": r.profile_id,
                     "errors": [{"path": e.path, "message": e.message} for e in r.errors] if r.errors else [],
                     "warnings": list(r.warnings)} for r in response.results],
    }).encode()


class BatchStatus(StrEnum):
    queued = "queued"
    processing = "processing"
    succeeded = "succeeded"
    failed = "failed"


class BatchRead(BaseModel):
    id: int
    dataset_id: int
    status: BatchStatus
    format: str
    filename: str | None
    file_sha256: str
    mapping: dict | None
    error_threshold: float
    total_rows: int
    accepted_rows: int
    rejected_rows: int
    duplicate_rows: int
    message: str | None = Field(description="Why a batch failed, or a note on one that succeeded; while it is "
                                            "processing, which pass it is in.")
    attempts: int = Field(description="How many times a worker has started the job (a retry starts it again).")
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None = Field(description="The last sign of life of the worker processing the job.")
    finished_at: datetime | None
    job_id: int | None = Field(default=None, description="The background job that runs the batch (docs/jobs.md).")
    progress_rows: int = Field(default=0, description="Rows the pass in progress has read (updated every few "
                                                      "seconds while the job runs).")
    progress_total_rows: int | None = Field(default=None, description="Rows of the file, once the first pass "
                                                                      "has counted them.")


class BatchError(BaseModel):
    row_number: int = Field(description="CSV: the row as a spreadsheet numbers it (the header is row 1); "
                                        "JSON Lines: the line number (from 1).")
    column: str | None = Field(description="The source column (or JSON key) at fault, when one is.")
    reason: str
    raw: str = Field(description="The row as read: the line for JSON Lines, a JSON object for CSV; at most "
                                 "2,048 bytes of it (`raw_truncated` says when it was cut).")
    raw_truncated: bool = Field(default=False, description="The row was longer than what an error keeps of it.")
    raw_bytes: int = Field(default=0, description="The row's full length in bytes (UTF-8).")


class BatchErrorPage(BaseModel):
    """A page of a batch's errors: at most `limit` errors and about 1 MiB of them, whichever comes
    first."""

    items: list[BatchError]
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="Where the next page starts (`offset=`); null on the last page. "
                                                "A page may hold fewer than `limit` errors when they are large.")
