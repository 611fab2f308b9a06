"""``/v1/profiles`` — stored profiles: search, look up by any identity or id, events in pages,
privacy deletion; and evaluating an expression on a profile document. Reading: any role;
deleting: admin and data_steward. ``/v1/privacy/deletions`` — the record of privacy deletions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from cdp.api.deps import AnyRole, ConnectionDep, Stewards, read_only
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import MAX_LIMIT, Page, PageDep
from cdp.expressions.service import stored_catalogue
from cdp.profiles import lookup, service
from cdp.profiles.models import EventRead, PrivacyDeletionRead, ProfileEvaluate, ProfileEvaluation, ProfileRead, \
    ProfileSummary
from cdp.schema_registry.service import get_schema
from cdp.text import Instant

router = APIRouter(prefix="/profiles", tags=["profiles"], responses=COMMON_RESPONSES)
privacy_router = APIRouter(prefix="/privacy", tags=["profiles"], responses=COMMON_RESPONSES)

NOT_FOUND = {404: {"model": ErrorResponse}}
Namespace = Annotated[str, Query(min_length=1, max_length=64, description="The identity's namespace (`email`, "
                                                                          "`ecid`, `crm_id` …).")]
IdentityValue = Annotated[str, Query(alias="id", min_length=1, max_length=1024,
                                     description="The identity's value, as any source would send it (it is "
                                                 "normalised as on ingestion: emails lower-cased, phones to E.164).")]
ProfileId = Annotated[str, Path(min_length=1, max_length=256)]
EventsLimit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description="How many of the newest events to include.")]


@router.get("", response_model=Page[ProfileSummary],
            summary="Search profiles by name, email or identity prefix",
            description="Profiles whose first name, last name or email contains `q` (any case), or one of whose "
                        "identities starts with `q`; most recently updated first.")
def search_profiles(principal: AnyRole, connection: ConnectionDep, page: PageDep,
                    q: Annotated[str, Query(min_length=1, max_length=256, pattern=r"^[^\u0000]*[^\s\u0000][^\u0000]*$",
                                           description="The search text (not blank, no NUL; matched literally: `%`, `_` "
                                                       "and `\\` are plain characters).")]
                    ) -> Page[ProfileSummary]:
    items, total = lookup.search_profiles(connection=connection, sandbox=principal.sandbox, text=q, limit=page.limit,
                                          offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/lookup", response_model=ProfileRead, responses=NOT_FOUND,
            summary="The profile of an identity: identities, merged attributes with provenance, newest events, "
                    "memberships")
def lookup_profile(principal: AnyRole, connection: ConnectionDep, namespace: Namespace, value: IdentityValue,
                   events_limit: EventsLimit = 50) -> ProfileRead:
    profile_pk = lookup.find_by_identity(connection=connection, sandbox=principal.sandbox, namespace=namespace,
                                         value=value)
    return lookup.read_profile(connection=connection, sandbox=principal.sandbox, profile_pk=profile_pk,
                               schema=get_schema(connection=connection, sandbox=principal.sandbox),
                               events_limit=events_limit)


@router.delete("/lookup", response_model=PrivacyDeletionRead, responses=NOT_FOUND,
               summary="Privacy deletion: remove the profile of an identity, with all its identities, events and "
                       "memberships",
               description="Removes the whole profile the identity belongs to (every linked identity, every event, "
                           "segment memberships, attribute provenance) and records that it happened — the profile id, "
                           "the key that asked, when, and counts; never the personal data. See "
                           "GET /v1/privacy/deletions.")
def delete_profile(principal: Stewards, connection: ConnectionDep, namespace: Namespace,
                   value: IdentityValue) -> PrivacyDeletionRead:
    profile_pk = lookup.find_by_identity(connection=connection, sandbox=principal.sandbox, namespace=namespace,
                                         value=value)
    return lookup.delete_profile(connection=connection, sandbox=principal.sandbox, profile_pk=profile_pk,
                                 requested_by=principal.key_id)


@router.get("/{profile_id}", response_model=ProfileRead, responses=NOT_FOUND,
            summary="A profile by id (the id of a profile merged into another finds the survivor)")
def get_profile(profile_id: ProfileId, principal: AnyRole, connection: ConnectionDep,
                events_limit: EventsLimit = 50) -> ProfileRead:
    profile_pk = lookup.find_by_id(connection=connection, sandbox=principal.sandbox, profile_id=profile_id)
    return lookup.read_profile(connection=connection, sandbox=principal.sandbox, profile_pk=profile_pk,
                               schema=get_schema(connection=connection, sandbox=principal.sandbox),
                               events_limit=events_limit)


@router.get("/{profile_id}/events", response_model=Page[EventRead], responses=NOT_FOUND,
            summary="A profile's events, newest first, by type and time")
def get_profile_events(profile_id: ProfileId, principal: AnyRole, connection: ConnectionDep, page: PageDep,
                       type: Annotated[list[str] | None, Query(max_length=50, description="Only these event types "
                                                                                           "(repeat the parameter).")
                                       ] = None,
                       since: Annotated[Instant | None, Query(description="From this instant (inclusive; UTC "
                                                                           "without an offset).")] = None,
                       until: Annotated[Instant | None, Query(description="Before this instant (exclusive).")] = None,
                       ) -> Page[EventRead]:
    profile_pk = lookup.find_by_id(connection=connection, sandbox=principal.sandbox, profile_id=profile_id)
    items, total = lookup.profile_events(connection=connection, profile_pk=profile_pk,
                                         schema=get_schema(connection=connection, sandbox=principal.sandbox),
                                         limit=page.limit, offset=page.offset, types=type, since=since, until=until)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/evaluate", response_model=ProfileEvaluation,
             summary="Does this profile qualify for the expression now (or at as_of)? With the value of each part")
@read_only
def evaluate_profile(spec: ProfileEvaluate, principal: AnyRole, connection: ConnectionDep) -> ProfileEvaluation:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    catalogue = spec.segments if spec.segments is not None else stored_catalogue(
        connection=connection, sandbox=principal.sandbox)
    return service.evaluate_profile(expression=spec.expression, document=spec.profile, schema=schema,
                                    catalogue=catalogue, as_of=spec.as_of)


@privacy_router.get("/deletions", response_model=Page[PrivacyDeletionRead],
                    summary="Privacy deletions done in this sandbox, newest first (no personal data)")
def list_deletions(principal: Stewards, connection: ConnectionDep, page: PageDep) -> Page[PrivacyDeletionRead]:
    items, total = lookup.list_deletions(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                         offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
