"""Routes of sources.

* ``/v1/sources…`` (API keys, the request's sandbox): the catalog (``GET /v1/source-types``),
  create / read / update / delete, ``/test``, ``/preview``, ``/run``, ``/pause``, ``/resume``,
  ``/runs``, ``/messages``. Reading: any role; the rest: admin and data_steward — as for
  datasets. Preview and messages show raw data, so they are for admin and data_steward too.
* ``/sources/segment/v1/{batch,import,identify,track,page,screen,group,alias}`` (no API key: the
  write key, as HTTP basic auth user name or the body's ``writeKey``): the tracking API. The
  sandbox is the source's.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from cdp.api.deps import AnyRole, ConnectionDep, MetricsDep, SettingsDep, Stewards
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import Page, PageDep
from cdp.errors import BadRequest, PayloadTooLarge
from cdp.schema_registry.service import get_schema
from cdp.sources import preview as previews
from cdp.sources import service, tracking
from cdp.sources.models import (
    ConnectionTest, MessageIssue, Preview, RunRead, SourceCreate, SourceCreateBody, SourceRead, SourceStatus, SourceType,
    SourceTypeRead, SourceUpdate,
)

router = APIRouter(tags=["sources"], responses=COMMON_RESPONSES)
SourceId = Annotated[int, Path(ge=1, le=2**63 - 1)]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]
NOT_FOUND = {404: {"model": ErrorResponse}}


@router.get("/source-types", response_model=list[SourceTypeRead], summary="The catalog of source types",
            description="Each type with what it needs and the JSON schema of its `config` (and, for tracking_api, "
                        "of its `mapping`).")
def source_types(principal: AnyRole) -> list[SourceTypeRead]:
    return service.catalog()


@router.post("/sources", status_code=status.HTTP_201_CREATED, response_model=SourceRead,
             responses={**NOT_FOUND, 409: {"model": ErrorResponse}},
             summary="Create a source",
             description="A tracking_api source answers with its `write_key` — shown here only — and its `endpoint` "
                         "(an SDK's host is `<base URL><endpoint>`). A database source's password (in the URL or "
                         "`config.password`) is stored apart and never returned. 422 `invalid_source` / "
                         "`invalid_mapping` list every problem.")
def create_source(body: SourceCreateBody, principal: Stewards, connection: ConnectionDep, settings: SettingsDep
                  ) -> SourceRead:
    spec = SourceCreate.model_validate(body.model_dump(mode="json", exclude_unset=True))
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    return service.create_source(connection=connection, sandbox=principal.sandbox, spec=spec, schema=schema,
                                 settings=settings)


@router.get("/sources", response_model=Page[SourceRead], summary="List sources")
def list_sources(principal: AnyRole, connection: ConnectionDep, page: PageDep,
                 type: Annotated[SourceType | None, Query(description="Only sources of this type.")] = None
                 ) -> Page[SourceRead]:
    items, total = service.list_sources(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                        offset=page.offset, type_=type)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/sources/{source_id}", response_model=SourceRead, responses=NOT_FOUND, summary="Read a source")
def get_source(source_id: SourceId, principal: AnyRole, connection: ConnectionDep) -> SourceRead:
    return service.get_source(connection=connection, sandbox=principal.sandbox, source_id=source_id)


@router.patch("/sources/{source_id}", response_model=SourceRead, responses={**NOT_FOUND, 409: {"model": ErrorResponse}},
              summary="Change a source's name, config, mapping or schedule",
              description="`config` is merged over the stored one; a database source keeps its password unless the "
                          "change gives a new `url` or `password`.")
def update_source(source_id: SourceId, spec: SourceUpdate, principal: Stewards, connection: ConnectionDep,
                  settings: SettingsDep) -> SourceRead:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    return service.update_source(connection=connection, sandbox=principal.sandbox, source_id=source_id, spec=spec,
                                 schema=schema, settings=settings)


@router.delete("/sources/{source_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={**NOT_FOUND, 409: {"model": ErrorResponse}}, summary="Delete a source",
               description="Data it brought in stays. 409 `source_busy` while a run is in progress.")
def delete_source(source_id: SourceId, principal: Stewards, connection: ConnectionDep) -> Response:
    service.delete_source(connection=connection, sandbox=principal.sandbox, source_id=source_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/sources/{source_id}/pause", response_model=SourceRead, responses=NOT_FOUND, summary="Pause a source",
             description="No scheduled run starts while paused (runs asked for still do); a paused tracking_api "
                         "source answers 403 `source_paused`.")
def pause_source(source_id: SourceId, principal: Stewards, connection: ConnectionDep) -> SourceRead:
    return service.set_status(connection=connection, sandbox=principal.sandbox, source_id=source_id,
                              status=SourceStatus.paused)


@router.post("/sources/{source_id}/resume", response_model=SourceRead, responses=NOT_FOUND,
             summary="Resume a paused source")
def resume_source(source_id: SourceId, principal: Stewards, connection: ConnectionDep) -> SourceRead:
    return service.set_status(connection=connection, sandbox=principal.sandbox, source_id=source_id,
                              status=SourceStatus.active)


@router.post("/sources/{source_id}/test", response_model=ConnectionTest, responses=NOT_FOUND,
             summary="Test a source's connection",
             description="database: connects (read-only), reads the columns, checks the cursor column and the "
                         "mapping's columns; file_drop: the folder; tracking_api: the datasets. `ok: false` with "
                         "`error` says what is wrong.")
def test_source(source_id: SourceId, principal: Stewards, connection: ConnectionDep) -> ConnectionTest:
    return previews.test_connection(connection=connection, sandbox=principal.sandbox, source_id=source_id)


@router.get("/sources/{source_id}/preview", response_model=Preview, responses={**NOT_FOUND, 409: {"model": ErrorResponse}},
            summary="Preview a source's first rows through its mapping",
            description="database: the first rows (in cursor order); file_drop: the first rows of the first file "
                        "waiting in the folder. Each row with the record the mapping makes of it and what would "
                        "reject it.")
def preview_source(source_id: SourceId, principal: Stewards, connection: ConnectionDep,
                   limit: Annotated[int, Query(ge=1, le=100)] = 10) -> Preview:
    return previews.preview(connection=connection, sandbox=principal.sandbox, source_id=source_id, limit=limit)


@router.post("/sources/{source_id}/run", status_code=status.HTTP_202_ACCEPTED, response_model=RunRead,
             responses={**NOT_FOUND, 409: {"model": ErrorResponse}}, summary="Run a source now",
             description="database and file_drop: a run as a job; poll `GET /v1/sources/{id}/runs/{run_id}`. 409 "
                         "`run_in_progress` while a run has not ended; 409 `source_not_runnable` for tracking_api.")
def run_source(source_id: SourceId, principal: Stewards, connection: ConnectionDep, background: BackgroundTasks,
               request: Request) -> RunRead:
    run = service.request_run(connection=connection, sandbox=principal.sandbox, source_id=source_id)
    background.add_task(request.app.state.jobs.wake)
    return run


@router.get("/sources/{source_id}/runs", response_model=Page[RunRead], responses=NOT_FOUND,
            summary="A source's run history (newest first)",
            description="Each run: its status, counts (rows read, accepted, rejected, duplicate), cursor range, "
                        "batch (its rejected rows: `GET /v1/batches/{batch_id}/errors`) or files.")
def list_runs(source_id: SourceId, principal: AnyRole, connection: ConnectionDep, page: PageDep) -> Page[RunRead]:
    items, total = service.list_runs(connection=connection, sandbox=principal.sandbox, source_id=source_id,
                                     limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/sources/{source_id}/runs/{run_id}", response_model=RunRead, responses=NOT_FOUND, summary="A run")
def get_run(source_id: SourceId, run_id: RunId, principal: AnyRole, connection: ConnectionDep) -> RunRead:
    return service.get_run(connection=connection, sandbox=principal.sandbox, source_id=source_id, run_id=run_id)


@router.get("/sources/{source_id}/messages", response_model=Page[MessageIssue], responses=NOT_FOUND,
            summary="A tracking source's rejected and warned messages (newest first)",
            description="The SDKs do not read per-message results, so they are kept here: `level=error` — rejected, "
                        "nothing of it stored; `warning` — stored without what the warning names (an unknown "
                        "trait). The newest 10,000 per source are kept.")
def list_messages(source_id: SourceId, principal: Stewards, connection: ConnectionDep, page: PageDep,
                  level: Annotated[Literal["error", "warning"] | None, Query()] = None) -> Page[MessageIssue]:
    items, total = service.message_issues(connection=connection, sandbox=principal.sandbox, source_id=source_id,
                                          limit=page.limit, offset=page.offset, level=level)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


# ---- the tracking API ----------------------------------------------------------------------------

tracking_router = APIRouter(prefix=service.ENDPOINT + "/v1", tags=["tracking API"])

_TRACKING_RESPONSES = {
    200: {"description": "The request was taken: `{\"success\": true}`. Messages that could not be stored are "
                         "kept at `GET /v1/sources/{id}/messages`."},
    400: {"model": ErrorResponse, "description": "The body is not JSON, or not gzip when it says so."},
    401: {"model": ErrorResponse, "description": "No write key, or an unknown one; nothing is stored."},
    403: {"model": ErrorResponse, "description": "The source is paused (`source_paused`)."},
    413: {"model": ErrorResponse, "description": "Over 500 KB (after gzip is undone): `batch_too_large`."},
    422: {"model": ErrorResponse, "description": "Not a message, or a batch without `batch`."},
    429: {"model": ErrorResponse, "description": "The write key is past its rate limit (`rate_limited`; the API "
                                                 "keys' limits, `CDP_RATE_LIMIT_PER_SECOND` and "
                                                 "`CDP_RATE_LIMIT_BURST`, per write key and process); nothing "
                                                 "of the request is stored; `Retry-After` says how many seconds "
                                                 "to wait.",
          "headers": {"Retry-After": {"description": "Seconds to wait before the next request of this write key.",
                                      "required": True, "schema": {"type": "integer", "minimum": 1}}}},
}


def _write_key(request: Request, body: object) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            user = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("the Authorization header is not valid basic auth", code="bad_request") from None
        return user.partition(":")[0] or None
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return body["writeKey"]
    return None


async def _raw_body(request: Request) -> bytes:
    raw = await request.body()
    if request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip"):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = decompressor.decompress(raw, tracking.MAX_BATCH_BYTES + 1)
        except zlib.error as exc:
            raise BadRequest(f"the body is not gzip: {exc}", code="invalid_encoding") from None
        if len(raw) > tracking.MAX_BATCH_BYTES or decompressor.unconsumed_tail:
            raise PayloadTooLarge(f"the request holds more than {tracking.MAX_BATCH_BYTES:,} bytes once gzip is "
                                  f"undone; at most {tracking.MAX_BATCH_BYTES:,} per batch (the SDKs' limit)",
                                  code="batch_too_large", details={"limit": tracking.MAX_BATCH_BYTES})
    return raw


async def _tracking_body(request: Request) -> object:
    """The body, gzip undone and parsed, read before the request's transaction begins."""
    return service.parse_body(await _raw_body(request))


TrackingBody = Annotated[object, Depends(_tracking_body)]
_MESSAGE_SCHEMA = {"type": "object", "description": "A message of the Segment spec: `type`, `userId` and/or "
                   "`anonymousId`, `messageId`, `timestamp`, `context`, and `traits` / `event` + `properties` / "
                   "`previousId` / `groupId` by type.", "additionalProperties": True}


def _register(type_: str | None) -> None:
    name = type_ or "batch"
    schema = _MESSAGE_SCHEMA if type_ else {
        "type": "object", "required": ["batch"], "properties": {
            "batch": {"type": "array", "items": _MESSAGE_SCHEMA}, "sentAt": {"type": "string", "format": "date-time"},
            "writeKey": {"type": "string"}}}
    description = (f"The `{name}` call of the analytics SDKs' tracking API (the Segment spec), authenticated by the "
                   "source's write key (HTTP basic auth user name, or `writeKey` in the body); `Content-Encoding: "
                   "gzip` accepted. At most 500 KB per request and 32 KB per message. Answers `{\"success\": true}` "
                   "once the messages are handled: each is stored or rejected on its own (rejected ones are kept at "
                   "`GET /v1/sources/{id}/messages`).")

    def handler(body: TrackingBody, request: Request, connection: ConnectionDep, metrics: MetricsDep) -> JSONResponse:
        source = service.authenticate_write_key(connection, _write_key(request, body))
        # 429 past the write key's limit, before anything is stored (a bucket per source)
        request.app.state.rate_limiter.take(f"write-key:{source.pk}", holder="this write key")
        schema_in_force = get_schema(connection=connection, sandbox=source.sandbox)
        service.receive(connection=connection, source=source, body=body, type_=type_,
                        schema=schema_in_force, metrics=metrics)
        return JSONResponse({"success": True})

    handler.__name__ = f"tracking_{name}"
    paths = ["/batch", "/import"] if type_ is None else [f"/{type_}"]
    for path in paths:
        tracking_router.add_api_route(
            path, handler, methods=["POST"], responses=_TRACKING_RESPONSES, summary=f"Tracking API: {path[1:]}",
            description=description, operation_id=f"tracking_{path[1:]}", response_class=JSONResponse,
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}})


for _type in (None, *tracking.MESSAGE_TYPES):
    _register(_type)


def document_write_key(document: dict) -> None:
    """The OpenAPI document: the tracking API's operations are secured by a write key (HTTP basic
    auth, the key as user name), not an API key."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["WriteKey"] = {"type": "http", "scheme": "basic", "description": "A tracking_api source's write key as "
                           "the user name, no password (as the analytics SDKs send it)."}
    for path, item in document.get("paths", {}).items():
        if path.startswith(service.ENDPOINT + "/"):
            for operation in item.values():
                operation["security"] = [{"WriteKey": []}]
