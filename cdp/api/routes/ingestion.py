"""Ingestion endpoints: streaming records into a dataset, batch files as jobs. Roles: admin and
data_steward (the batch errors hold raw rows, so reading them is for the same roles).

Batch files are uploaded to and listed under their dataset (``/v1/datasets/{id}/batches``); a
job is then its own resource: ``/v1/batches/{id}`` (status, counts), ``/v1/batches/{id}/errors``
and ``/v1/batches/{id}/retry``. Like everything else, a job belongs to its sandbox: a job of
another sandbox is 404.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Body, Depends, File, Form, Path, Query, Request, UploadFile, status
from fastapi.responses import Response, StreamingResponse

from cdp.api.deps import (ConnectionDep, EngineDep, FastPathRoute, SettingsDep, Stewards, fast_path, run_single_hop,
                          single_hop)
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import Page, PageDep
from cdp.api.routes.activation import wake_delivery
from cdp.ingestion import DEFAULT_ERROR_THRESHOLD, batches, service, uploads
from cdp.ingestion.models import BatchErrorPage, BatchRead, IngestResponse, ingest_response_json
from cdp.jobs import Runner
from cdp.schema_registry.service import get_schema
from cdp.storage.database import commit_now, take_outbox_written

# FastPathRoute: a record posted is answered without FastAPI's dependency solving in the plain case
router = APIRouter(tags=["ingestion"], responses=COMMON_RESPONSES, route_class=FastPathRoute)

DatasetId = Annotated[int, Path(ge=1, le=2**63 - 1)]
NOT_FOUND = {404: {"model": ErrorResponse}}

_RECORDS_EXAMPLE = {"records": [
    {"identities": [{"namespace": "email", "id": "sarah.rose@example.com"}, {"namespace": "crm_id", "id": "C-1001"}],
     "attributes": {"person": {"first_name": "Sarah", "last_name": "Rose"}, "loyalty": {"tier": "bronze"}}},
]}


# What service.records_of accepts, for the OpenAPI document (the body itself is checked there).
_RECORDS_BODY = {"anyOf": [
    {"type": "object", "title": "Records", "required": ["records"], "additionalProperties": False,
     "properties": {"records": {"type": "array", "minItems": 1, "maxItems": 1000,
                                # each answered on its own: one that is not an object is rejected in the results
                                "items": {"title": "Record"}}}},
    {"type": "object", "title": "Record", "not": {"required": ["records"]}}]}


@router.post("/datasets/{dataset_id}/records", response_model=IngestResponse, responses=NOT_FOUND,
             summary="Ingest one record or up to 1,000 records into a dataset",
             description="One record, or `{\"records\": [...]}`. Each record is validated against the schema in "
                         "force and answered on its own: accepted, rejected (with the path and reason of each "
                         "problem) or duplicate (an event id already ingested into this dataset). A profile record "
                         "has `identities` and `attributes`; an event record `identities` and `event` (id, type, "
                         "timestamp and fields, as in the profile document). Limits: 64 KiB per record, 1,000 "
                         "records per request (413 `batch_too_large`), 100,000 events per profile.")
@fast_path(lambda request, authorizer: _ingest_records_fast(request, authorizer))
@single_hop  # connection, handler, commit in one thread-pool hop (cdp/api/deps.py)
def ingest_records(dataset_id: DatasetId, principal: Stewards, connection: ConnectionDep, request: Request,
                   body: Annotated[Any, Body(openapi_examples={"batch": {"value": _RECORDS_EXAMPLE}},
                                             json_schema_extra=_RECORDS_BODY)]
                   ) -> Response:
    # the schema is read with the sandbox's other settings (one version number: cdp/ingestion/config.py)
    # the metrics and the clock read from the app's state here, not as two dependencies solved a request
    state = request.app.state
    take_outbox_written(connection)  # a mark left by the pooled connection's last user does not count
    answer = service.ingest_records(connection=connection, sandbox=principal.sandbox, dataset_id=dataset_id,
                                    body=body, metrics=state.metrics, clock=state.clock,
                                    # nothing written yet: wait for this process's writers of the same people
                                    # in Python rather than lose a race to them (cdp/identity/turns.py)
                                    take_turns=True)
    # committed here, before the delivery wake and the answer's encoding: the request's locks —
    # the identities of its people, on PostgreSQL; the database, on SQLite — are held until the
    # COMMIT, and 8 writers of the same people queue on them (bench/RESULTS.md, issue 16 fifth
    # round). A failed commit is still this request's error.
    commit_now(connection)
    # after the commit, when the records changed a membership (they wrote outbox rows): the
    # changes go out at once. A request that changed none wakes nothing — each woken cycle was a
    # pooled connection and a read, ~10 % of a single-record POST's server time with nothing
    # subscribed (bench/RESULTS.md, session 16); the loop's poll still finds anything else. Called
    # here, not as a background task: the wake only sets an event, and a background task cost the
    # request a thread-pool hop after its answer and FastAPI's BackgroundTasks plumbing
    if take_outbox_written(connection):
        wake_delivery(request)
    # encoded here, not through the response model (documented above as IngestResponse): up to
    # 1,000 results a request, each a model FastAPI would validate and serialise again
    return Response(ingest_response_json(answer), media_type="application/json")


_MAX_ID = 2**63 - 1


async def _ingest_records_fast(request: Request, authorizer) -> Response | None:
    """ingest_records' plain case without FastAPI's dependency solving (cdp/api/deps.py
    FastPathRoute): a dataset id of plain digits in range, a JSON body (``Content-Type:
    application/json``) that is not null, the key and sandbox seen lately. Anything else is None —
    FastAPI's handler answers it as before (its body already read), errors included."""
    text = request.path_params.get("dataset_id")
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and text[0] != "0" and len(text) <= 19):
        return None
    dataset_id = int(text)
    if dataset_id > _MAX_ID:
        return None
    if request.headers.get("content-type", "").lower() != "application/json":
        return None
    raw = await request.body()
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError: FastAPI's 422 / 400
        return None
    if body is None:  # a required body that is null: FastAPI's 422 missing
        return None
    principal = authorizer.if_seen(request)
    if principal is None:
        return None
    return await run_single_hop(ingest_records, request, {"dataset_id": dataset_id, "principal": principal,
                                                          "request": request, "body": body})


# ---- batch files ---------------------------------------------------------------------------------

BatchId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The batch job's id.")]
UPLOAD_PATH = "/datasets/{dataset_id}/batches"
FILE_ROUTES = [("POST", UPLOAD_PATH)]  # held to the file limit instead of the body limit (cdp/api/middleware.py)


def _read_file(engine: EngineDep, settings: SettingsDep,
               file: Annotated[UploadFile, File(description="The CSV or JSON Lines file.")]) -> uploads.Upload:
    """The uploaded file, checked and hashed before the request's transaction begins (on SQLite
    that transaction holds the write lock); it is stored only after authorization."""
    limit, reason = uploads.file_limit(engine.dialect.name, settings.max_file_bytes)
    return uploads.read_upload(file.file, filename=file.filename, limit=limit, limit_reason=reason)


async def _runner(request: Request) -> Runner:
    return request.app.state.jobs


RunnerDep = Annotated[Runner, Depends(_runner)]


@router.post(UPLOAD_PATH, status_code=status.HTTP_202_ACCEPTED, response_model=BatchRead,
             responses={**NOT_FOUND, 413: {"model": ErrorResponse, "description": "The file is larger than the "
                                                                                  "limit (`file_too_large`)."}},
             summary="Upload a CSV or JSON Lines file as a batch job",
             description="Multipart: `file` (.csv or .jsonl, UTF-8), `mapping` (JSON: source column → schema path or "
                         "`identity.<namespace>`, with transforms trim, lower, {\"parse_date\": FORMAT}, "
                         "{\"split\": SEP}; optional for JSON Lines whose lines are records), `error_threshold` "
                         "(fraction of rows that may be rejected, default 0.05; over it the batch fails and nothing "
                         "is applied) and `format` (csv or jsonl, when the file name does not tell). Answers 202 "
                         "with the job; poll `GET /v1/batches/{batch_id}`, read the rejected rows at "
                         "`GET /v1/batches/{batch_id}/errors`. Limits: the file may hold `CDP_MAX_FILE_BYTES` "
                         "(default 1 GiB, capped by what the database stores in one value) — 413 `file_too_large` "
                         "as soon as it passes it; the general body limit does not apply here; 1,000,000 rows per "
                         "file (the job fails).")
def upload_batch(dataset_id: DatasetId, upload: Annotated[uploads.Upload, Depends(_read_file)], principal: Stewards,
                 connection: ConnectionDep, runner: RunnerDep, background: BackgroundTasks,
                 # optional form fields, never null (a form cannot send null): no null in the document
                 mapping: Annotated[str, Form(description="The field mapping, as JSON.")] = None,  # type: ignore
                 error_threshold: Annotated[float, Form(ge=0, le=1)] = DEFAULT_ERROR_THRESHOLD,
                 format: Annotated[Literal["csv", "jsonl"], Form()] = None) -> BatchRead:  # type: ignore
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    batch_id = batches.create_batch(connection=connection, sandbox=principal.sandbox, dataset_id=dataset_id,
                                    upload=upload, format_=format, mapping=mapping, error_threshold=error_threshold,
                                    schema=schema)
    created = batches.get_batch(connection=connection, sandbox=principal.sandbox, batch_id=batch_id)
    # a worker takes the job once the request's transaction has committed (the dependency exits
    # before the response is sent; background tasks run after it)
    background.add_task(runner.wake)
    return created


@router.get(UPLOAD_PATH, response_model=Page[BatchRead], responses=NOT_FOUND,
            summary="List a dataset's batch jobs (newest first)")
def list_batches(dataset_id: DatasetId, principal: Stewards, connection: ConnectionDep, page: PageDep
                 ) -> Page[BatchRead]:
    items, total = batches.list_batches(connection=connection, sandbox=principal.sandbox, dataset_id=dataset_id,
                                        limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/batches/{batch_id}", response_model=BatchRead, responses=NOT_FOUND,
            summary="A batch job: status (queued, processing, succeeded, failed) and counts",
            description="While the job is processing, `message` says which pass it is in (validating the rows, "
                        "then applying the valid ones in one transaction) and `heartbeat_at` when its worker last "
                        "showed life. A job whose server stopped while processing it is marked failed on the next "
                        "start (nothing of it applied); `POST /v1/batches/{batch_id}/retry` runs it again.")
def get_batch(batch_id: BatchId, principal: Stewards, connection: ConnectionDep) -> BatchRead:
    return batches.get_batch(connection=connection, sandbox=principal.sandbox, batch_id=batch_id)


@router.get("/batches/{batch_id}/errors", response_model=BatchErrorPage,
            responses={**NOT_FOUND, 200: {"content": {"application/x-ndjson": {
                "schema": {"type": "string", "description": "format=jsonl: one BatchError a line"}}}}},
            summary="A batch job's per-row errors: row number, column, reason, raw row",
            description="JSON pages by default: at most `limit` errors and about 1 MiB of them, whichever comes "
                        "first (`next_offset` is where the next page starts). Each error keeps at most 2,048 bytes "
                        "of its raw row (`raw_truncated`, `raw_bytes`). `format=jsonl` downloads every error as "
                        "JSON Lines, streamed.")
def get_batch_errors(batch_id: BatchId, principal: Stewards, connection: ConnectionDep, engine: EngineDep,
                     page: PageDep, format: Annotated[Literal["json", "jsonl"], Query()] = "json"):
    if format == "jsonl":
        batches.check_batch(connection=connection, sandbox=principal.sandbox, batch_id=batch_id)
        return StreamingResponse(batches.error_lines(engine, batch_id), media_type="application/x-ndjson", headers={
            "Content-Disposition": f'attachment; filename="batch-{batch_id}-errors.jsonl"'})
    items, total, next_offset = batches.batch_errors(connection=connection, sandbox=principal.sandbox,
                                                     batch_id=batch_id, limit=page.limit, offset=page.offset)
    return BatchErrorPage(items=items, total=total, limit=page.limit, offset=page.offset, next_offset=next_offset)


@router.post("/batches/{batch_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=BatchRead,
             responses={**NOT_FOUND, 409: {"model": ErrorResponse, "description": "The job succeeded, is queued, or "
                                                                                  "is being processed "
                                                                                  "(`batch_not_retryable`)."}},
             summary="Run a failed batch job again from its stored file",
             description="For a `failed` job, or a `processing` one whose worker is gone (its server stopped: the "
                         "process no longer runs, or no heartbeat for 30 s). The job goes back to `queued`, its "
                         "counts and errors are cleared, and it runs again from the file stored at upload, against "
                         "the schema in force now. A batch is applied in one transaction and events are idempotent "
                         "per dataset, so after an interrupted run a retry gives exactly the data of one complete "
                         "run. A succeeded, queued or live processing job answers 409 `batch_not_retryable`.")
def retry_batch(batch_id: BatchId, principal: Stewards, connection: ConnectionDep, runner: RunnerDep,
                background: BackgroundTasks) -> BatchRead:
    queued = batches.retry_batch(connection=connection, sandbox=principal.sandbox, batch_id=batch_id)
    background.add_task(runner.wake)  # after the commit, as for an upload
    return queued
