"""A streaming request's records: read from its body, validated one by one, the valid ones
written by the :class:`~cdp.ingestion.writer.Writer` in the caller's transaction, and the answer
per record (see the package docstring for the rules and limits)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

import cdp.ingestion as limits
from cdp.errors import PayloadTooLarge, Unprocessable
from cdp.ingestion.config import ingest_config_and_plan_version
from cdp.ingestion.models import IngestResponse, RecordError, RecordResult, RecordStatus
from cdp.ingestion.validation import ValidRecord, validate_record
from cdp.ingestion.writer import WAIT_SECONDS, Writer
from cdp.observability.metrics import Metrics
from cdp.schema import Schema


def records_of(body: Any) -> list[Any]:
    """The records of a streaming request: ``{"records": [...]}`` or one record."""
    if isinstance(body, dict) and "records" in body:
        extra = sorted(set(body) - {"records"})
        if extra:
            raise Unprocessable(f"unknown key {extra[0]!r} next to `records`", code="validation_error",
                                details={"errors": [{"loc": ["body", extra[0]], "message": "unknown key",
                                                     "type": "extra_forbidden"}]})
        records = body["records"]
        if not isinstance(records, list):
            raise Unprocessable("`records` must be a list of records", code="validation_error",
                                details={"errors": [{"loc": ["body", "records"], "message": "must be a list",
                                                     "type": "list_type"}]})
        if not records:
            raise Unprocessable("`records` is empty: send 1 to "
                                f"{limits.MAX_RECORDS_PER_REQUEST} records", code="validation_error",
                                details={"errors": [{"loc": ["body", "records"], "message": "empty", "type": "too_short"}]})
        if len(records) > limits.MAX_RECORDS_PER_REQUEST:
            raise PayloadTooLarge(f"{len(records)} records in one request; at most {limits.MAX_RECORDS_PER_REQUEST} "
                                  f"(send several requests, or upload a file as a batch)", code="batch_too_large",
                                  details={"records": len(records), "limit": limits.MAX_RECORDS_PER_REQUEST})
        return records
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a record (a JSON object) or {\"records\": [...]}",
                            code="validation_error", details={"errors": [{"loc": ["body"], "message": "must be an object",
                                                                          "type": "dict_type"}]})
    return [body]


def ingest_records(*, connection: sa.Connection, sandbox: str, dataset_id: int, body: Any,
                   schema: Schema | None = None, metrics: Metrics | None = None,
                   clock: Callable[[], datetime] | None = None, take_turns: bool = False) -> IngestResponse:
    """Validate each record on its own and apply the valid ones set-wise (Writer.apply_many), in
    ``connection``'s transaction — on PostgreSQL in a savepoint of it, rolled back and tried again
    on a lost race (one transaction per request: the owners are locked as they are read, so a
    separate short transaction for the records saves nothing and costs a BEGIN, a COMMIT and a
    connection). ``schema``: the schema in force (default: read with the sandbox's other settings,
    one version number per request: cdp/ingestion/config.py). ``take_turns`` (PostgreSQL): the
    caller's transaction has written nothing yet, and the request waits for this process's other
    writers of its identities before it writes (cdp/identity/turns.py)."""
    config, plan_version = ingest_config_and_plan_version(connection=connection, sandbox=sandbox)
    kind = config.dataset_kind(sandbox, dataset_id)
    schema = config.schema if schema is None else schema
    records = records_of(body)
    request_id = uuid.uuid4().hex
    writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset_id, kind=kind, request_id=request_id,
                    clock=clock, metrics=metrics, config=config, plan_version=plan_version)
    if writer.dialect == "postgresql":
        writer.deadline = time.monotonic() + WAIT_SECONDS
        writer.reuse_plans = True
        writer.take_turns = take_turns
    slots: list[RecordResult | None] = []
    valid_records: list[tuple[int, ValidRecord]] = []
    for index, raw in enumerate(records):
        valid, errors = validate_record(raw, kind, schema, namespaces=tuple(writer.namespaces))
        if valid is None:
            slots.append(RecordResult(index=index, status=RecordStatus.rejected,
                                      errors=[RecordError(**e) for e in errors]))
        else:
            slots.append(None)
            valid_records.append((index, valid))
    applied = iter(writer.apply_many(valid_records))
    results: list[RecordResult] = [slot if slot is not None else next(applied) for slot in slots]
    counts = {status: sum(1 for r in results if r.status == status) for status in RecordStatus}
    if metrics is not None:
        if counts[RecordStatus.accepted]:
            metrics.ingested(sandbox, kind, counts[RecordStatus.accepted])
        if counts[RecordStatus.rejected]:
            metrics.rejected(sandbox, kind, counts[RecordStatus.rejected])
    return IngestResponse(dataset_id=dataset_id, request_id=request_id, accepted=counts[RecordStatus.accepted],
                          rejected=counts[RecordStatus.rejected], duplicates=counts[RecordStatus.duplicate],
                          results=results)
