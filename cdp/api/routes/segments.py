"""``/v1/segments``, ``/v1/segment-jobs`` and ``/v1/evaluate`` (API.md, "Segments").

Reading, estimating and evaluating: any role. Saving and deleting segments and running batch
evaluations: admin, data_steward and marketer (marketers own audiences)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response, status

from cdp.activation.service import recheck  # labels, policies and segments in use are evaluated again
from cdp.api.deps import AnyRole, ClockDep, ConnectionDep, require
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import MAX_LIMIT, Page, PageDep
from cdp.auth import Role
from cdp.auth.service import Principal
from cdp.schema_registry.service import get_schema
from cdp.segments import estimates, jobs, service
from cdp.segments.models import (KEY_PATTERN, Estimate, EstimateRequest, EvaluateRequest, EvaluateResult, History,
                                 MemberPage, SegmentCreate, SegmentJobCreate, SegmentJobRead,
                                 SegmentRead, SegmentStatus, SegmentUpdate)
from cdp.segments.settings import SegmentSettings
from cdp.text import Instant

router = APIRouter(prefix="/segments", tags=["segments"], responses=COMMON_RESPONSES)
jobs_router = APIRouter(prefix="/segment-jobs", tags=["segments"], responses=COMMON_RESPONSES)
evaluate_router = APIRouter(tags=["segments"], responses=COMMON_RESPONSES)

Editors = Annotated[Principal, require(Role.admin, Role.data_steward, Role.marketer)]
Key = Annotated[str, Path(pattern=KEY_PATTERN, description="The segment's key.")]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_STATUS = "(realized|existing|exited)"
STATUSES_PATTERN = f"^ *{_STATUS} *(, *{_STATUS} *)*$"  # what service.parse_statuses reads, spaces and all
NOT_FOUND = {404: {"model": ErrorResponse}}
CONFLICT = {409: {"model": ErrorResponse}}


async def _segment_settings(request: Request) -> SegmentSettings:
    found = getattr(request.app.state, "segment_settings", None)
    if found is None:
        found = request.app.state.segment_settings = SegmentSettings()
    return found


SegmentSettingsDep = Annotated[SegmentSettings, Depends(_segment_settings)]


def _estimate_options(settings: SegmentSettings) -> dict:
    return {"exact_limit": settings.estimate_exact_limit, "sample_rows": settings.estimate_sample_rows,
            "timeout_ms": settings.estimate_timeout_ms, "count_max_age_s": settings.estimate_count_max_age_s}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SegmentRead, responses=CONFLICT,
             summary="Save a segment",
             description="The expression is checked against the schema in force and the other segments: 422 "
                         "`invalid_expression` (or `unknown_segment`, `segment_cycle`) with every error in "
                         "`details.errors`. An active segment is evaluated over every profile at once.")
def create_segment(spec: SegmentCreate, principal: Editors, connection: ConnectionDep, clock: ClockDep) -> SegmentRead:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    return service.create_segment(connection=connection, sandbox=principal.sandbox, spec=spec, schema=schema,
                                  as_of=clock())


@router.get("", response_model=Page[SegmentRead], summary="List segments (by key)")
def list_segments(principal: AnyRole, connection: ConnectionDep, page: PageDep,
                  status_: Annotated[SegmentStatus | None, Query(alias="status", description="Only this status.")]
                  = None) -> Page[SegmentRead]:
    items, total = service.list_segments(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                         offset=page.offset, status=status_)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/estimate", response_model=Estimate,
             summary="Estimate an unsaved expression: count of qualifying profiles and a sample of them",
             description="Exact up to CDP_SEGMENT_ESTIMATE_EXACT_LIMIT profiles, sampled above (with the error "
                         "bound); stopped after CDP_SEGMENT_ESTIMATE_TIMEOUT_MS (422 `estimate_timeout`).")
def estimate_expression(spec: EstimateRequest, principal: AnyRole, connection: ConnectionDep,
                        settings: SegmentSettingsDep) -> Estimate:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    return estimates.estimate(connection=connection, sandbox=principal.sandbox, expression=spec.expression,
                            schema=schema, as_of=spec.as_of, **_estimate_options(settings))


@router.get("/{key}", response_model=SegmentRead, responses=NOT_FOUND, summary="Read a segment")
def get_segment(key: Key, principal: AnyRole, connection: ConnectionDep) -> SegmentRead:
    return service.get_segment(connection=connection, sandbox=principal.sandbox, key=key)


@router.patch("/{key}", response_model=SegmentRead, responses=NOT_FOUND,
              summary="Change a segment; a new expression is checked again and its memberships follow it")
def update_segment(key: Key, spec: SegmentUpdate, principal: Editors, connection: ConnectionDep,
                   clock: ClockDep) -> SegmentRead:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    updated = service.update_segment(connection=connection, sandbox=principal.sandbox, key=key, spec=spec,
                                     schema=schema, as_of=clock())
    recheck(connection=connection, sandbox=principal.sandbox)  # it may read other fields now (or reference others)
    return updated


@router.delete("/{key}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={**NOT_FOUND, **CONFLICT}, summary="Delete a segment (409 segment_in_use when others use it)")
def delete_segment(key: Key, principal: Editors, connection: ConnectionDep) -> Response:
    service.delete_segment(connection=connection, sandbox=principal.sandbox, key=key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{key}/members", response_model=MemberPage, responses=NOT_FOUND,
            summary="A segment's memberships, by cursor")
def list_members(key: Key, principal: AnyRole, connection: ConnectionDep,
                 status_: Annotated[str, Query(alias="status", pattern=STATUSES_PATTERN,
                                               description="Comma-separated statuses among `realized`, `existing` "
                                               "and `exited` (default: members, `realized,existing`).")]
                 = "realized,existing",
                 limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
                 cursor: Annotated[str | None, Query(max_length=200, description="`next` of the previous page.")]
                 = None) -> MemberPage:
    statuses = service.parse_statuses(status_)
    return service.list_members(connection=connection, sandbox=principal.sandbox, key=key, statuses=statuses,
                                limit=limit, cursor=cursor)


@router.get("/{key}/estimate", response_model=Estimate, responses=NOT_FOUND,
            summary="Estimate a saved segment now (count and sample)")
def estimate_segment(key: Key, principal: AnyRole, connection: ConnectionDep, settings: SegmentSettingsDep,
                     as_of: Annotated[Instant | None, Query(description="Default: now.")] = None) -> Estimate:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    return estimates.estimate_segment(connection=connection, sandbox=principal.sandbox, key=key, schema=schema,
                                    as_of=as_of, **_estimate_options(settings))


@router.get("/{key}/history", response_model=History, responses=NOT_FOUND,
            summary="A segment's size, entries and exits per hour")
def segment_history(key: Key, principal: AnyRole, connection: ConnectionDep,
                    start: Annotated[Instant | None, Query(alias="from", description="From this instant.")] = None,
                    end: Annotated[Instant | None, Query(alias="to", description="Before this instant.")] = None,
                    ) -> History:
    return service.history(connection=connection, sandbox=principal.sandbox, key=key, start=start, end=end)


@jobs_router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=SegmentJobRead,
                  responses={**NOT_FOUND, **CONFLICT},
                  summary="Run a batch evaluation of the active segments (or the ones named), in dependency order")
def create_job(spec: SegmentJobCreate, principal: Editors, connection: ConnectionDep, request: Request,
               background: BackgroundTasks) -> SegmentJobRead:
    job = jobs.create_job(connection=connection, sandbox=principal.sandbox, keys=spec.segments,
                          requested_by=principal.key_id)
    jobs.enqueue_run(connection, sandbox=principal.sandbox, job_id=job.id)  # run by the job runner (cdp/jobs)
    background.add_task(request.app.state.jobs.wake)  # after the answer, once this request has committed
    return job


@jobs_router.get("", response_model=Page[SegmentJobRead], summary="Batch evaluation jobs, newest first")
def list_jobs(principal: AnyRole, connection: ConnectionDep, page: PageDep) -> Page[SegmentJobRead]:
    items, total = jobs.list_jobs(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                  offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@jobs_router.get("/{job_id}", response_model=SegmentJobRead, responses=NOT_FOUND, summary="A batch evaluation job")
def get_job(job_id: JobId, principal: AnyRole, connection: ConnectionDep) -> SegmentJobRead:
    return jobs.get_job(connection=connection, sandbox=principal.sandbox, job_id=job_id)


@evaluate_router.post("/evaluate", response_model=EvaluateResult, response_model_exclude_none=True,
                      responses=NOT_FOUND,
                      summary="Does a profile qualify for an expression or a saved segment now (or at as_of)?",
                      description="For a profile document, or a stored profile by identity or id (404 when "
                                  "unknown); with the value of every sub-expression when `explain` is true.")
def evaluate(spec: EvaluateRequest, principal: AnyRole, connection: ConnectionDep) -> EvaluateResult:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    return service.evaluate(connection=connection, sandbox=principal.sandbox, spec=spec, schema=schema)
