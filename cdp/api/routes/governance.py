"""``/v1/labels``, ``/v1/marketing-actions``, ``/v1/policies`` and ``/v1/policies/evaluate``
(API.md, "Governance").

Reading: any role. Creating, changing and deleting labels, marketing actions and policies:
admin and data_steward. Evaluating: admin, data_steward and marketer (marketers check their
audiences and exports; readers only read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from cdp.activation.service import recheck  # labels, policies and segments in use are evaluated again
from cdp.api.deps import AnyRole, ConnectionDep, Stewards, require
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import Page, PageDep
from cdp.auth import Role
from cdp.auth.service import Principal
from cdp.governance import service
from cdp.governance.models import (ACTION_PATTERN, LABEL_PATTERN, LabelCreate, LabelFamily, LabelRead, LabelUpdate,
                                   MarketingActionCreate, MarketingActionRead, MarketingActionUpdate, PolicyCreate,
                                   PolicyDecision, PolicyEvaluate, PolicyRead, PolicyStatus, PolicyUpdate)
from cdp.schema_registry.service import get_schema

labels_router = APIRouter(prefix="/labels", tags=["governance"], responses=COMMON_RESPONSES)
actions_router = APIRouter(prefix="/marketing-actions", tags=["governance"], responses=COMMON_RESPONSES)
policies_router = APIRouter(prefix="/policies", tags=["governance"], responses=COMMON_RESPONSES)

Evaluators = Annotated[Principal, require(Role.admin, Role.data_steward, Role.marketer)]
LabelName = Annotated[str, Path(pattern=LABEL_PATTERN, description="The label's name.")]
ActionKey = Annotated[str, Path(pattern=ACTION_PATTERN, description="The marketing action's key.")]
# The routes say `{policy_id:int}`: a path that is no number (``/v1/policies/evaluate``) is not a policy
# route, so a method the document does not list there is 405 before any dependency (X-Sandbox) runs.
PolicyId = Annotated[int, Path(ge=1, le=2**63 - 1)]
NOT_FOUND = {404: {"model": ErrorResponse}}
CONFLICT = {409: {"model": ErrorResponse}}


# ---- labels ------------------------------------------------------------------------------------


@labels_router.get("", response_model=Page[LabelRead], summary="The standard labels and the sandbox's custom labels")
def list_labels(principal: AnyRole, connection: ConnectionDep, page: PageDep,
                family: Annotated[LabelFamily | None, Query(description="Only this family.")] = None,
                ) -> Page[LabelRead]:
    items, total = service.list_labels(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                       offset=page.offset, family_=family)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@labels_router.post("", status_code=status.HTTP_201_CREATED, response_model=LabelRead, responses=CONFLICT,
                    summary="Create a custom label")
def create_label(spec: LabelCreate, principal: Stewards, connection: ConnectionDep) -> LabelRead:
    return service.create_label(connection=connection, sandbox=principal.sandbox, spec=spec)


@labels_router.get("/{name}", response_model=LabelRead, responses=NOT_FOUND, summary="Read a label")
def get_label(name: LabelName, principal: AnyRole, connection: ConnectionDep) -> LabelRead:
    return service.get_label(connection=connection, sandbox=principal.sandbox, name=name)


@labels_router.patch("/{name}", response_model=LabelRead, responses={**NOT_FOUND, **CONFLICT},
                     summary="Change a custom label's description")
def update_label(name: LabelName, spec: LabelUpdate, principal: Stewards, connection: ConnectionDep) -> LabelRead:
    return service.update_label(connection=connection, sandbox=principal.sandbox, name=name, spec=spec)


@labels_router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
                      responses={**NOT_FOUND, **CONFLICT},
                      summary="Delete a custom label (409 label_in_use while a policy names it)")
def delete_label(name: LabelName, principal: Stewards, connection: ConnectionDep) -> Response:
    service.delete_label(connection=connection, sandbox=principal.sandbox, name=name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- marketing actions -------------------------------------------------------------------------


@actions_router.get("", response_model=Page[MarketingActionRead],
                    summary="The core marketing actions and the sandbox's custom ones")
def list_marketing_actions(principal: AnyRole, connection: ConnectionDep, page: PageDep) -> Page[MarketingActionRead]:
    items, total = service.list_marketing_actions(connection=connection, sandbox=principal.sandbox,
                                                  limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@actions_router.post("", status_code=status.HTTP_201_CREATED, response_model=MarketingActionRead,
                     responses=CONFLICT, summary="Create a custom marketing action")
def create_marketing_action(spec: MarketingActionCreate, principal: Stewards,
                            connection: ConnectionDep) -> MarketingActionRead:
    return service.create_marketing_action(connection=connection, sandbox=principal.sandbox, spec=spec)


@actions_router.get("/{key}", response_model=MarketingActionRead, responses=NOT_FOUND,
                    summary="Read a marketing action")
def get_marketing_action(key: ActionKey, principal: AnyRole, connection: ConnectionDep) -> MarketingActionRead:
    return service.get_marketing_action(connection=connection, sandbox=principal.sandbox, key=key)


@actions_router.patch("/{key}", response_model=MarketingActionRead, responses={**NOT_FOUND, **CONFLICT},
                      summary="Change a custom marketing action's name or description")
def update_marketing_action(key: ActionKey, spec: MarketingActionUpdate, principal: Stewards,
                            connection: ConnectionDep) -> MarketingActionRead:
    return service.update_marketing_action(connection=connection, sandbox=principal.sandbox, key=key, spec=spec)


@actions_router.delete("/{key}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
                       responses={**NOT_FOUND, **CONFLICT},
                       summary="Delete a custom marketing action (409 marketing_action_in_use while policies "
                               "govern it)")
def delete_marketing_action(key: ActionKey, principal: Stewards, connection: ConnectionDep) -> Response:
    service.delete_marketing_action(connection=connection, sandbox=principal.sandbox, key=key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- policies ----------------------------------------------------------------------------------


@policies_router.post("", status_code=status.HTTP_201_CREATED, response_model=PolicyRead, responses=CONFLICT,
                      summary="Create a policy",
                      description="422 `invalid_policy` with every error of the deny condition in `details.errors` "
                                  "(code, message, line, column, end_line, end_column, hint, caret); 422 "
                                  "`unknown_marketing_action`; 409 `policy_exists` on a taken name.")
def create_policy(spec: PolicyCreate, principal: Stewards, connection: ConnectionDep) -> PolicyRead:
    created = service.create_policy(connection=connection, sandbox=principal.sandbox, spec=spec)
    recheck(connection=connection, sandbox=principal.sandbox)  # the activations it now forbids are paused
    return created


@policies_router.get("", response_model=Page[PolicyRead], summary="List policies (by id)")
def list_policies(principal: AnyRole, connection: ConnectionDep, page: PageDep,
                  marketing_action: Annotated[str | None, Query(max_length=64, description="Only this action's.")]
                  = None,
                  status_: Annotated[PolicyStatus | None, Query(alias="status", description="Only this status.")]
                  = None,
                  label: Annotated[str | None, Query(max_length=64, description="Only those naming this label.")]
                  = None) -> Page[PolicyRead]:
    items, total = service.list_policies(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                         offset=page.offset, marketing_action=marketing_action, status=status_,
                                         label=label)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@policies_router.post("/evaluate", response_model=PolicyDecision, response_model_exclude_none=True,
                      responses=NOT_FOUND,
                      summary="May a segment (or an expression), with these attributes exported, be used for a "
                              "marketing action?",
                      description="The fields in play — those the expression reads, through every segment it "
                                  "references, and the exported attributes — are mapped to the datasets that "
                                  "supply them and their labels; every enabled policy of the action is evaluated "
                                  "over those labels. Each violation names the policy, the labels that made its "
                                  "deny condition true and the lineage: attribute → dataset → label → policy.")
def evaluate_policies(spec: PolicyEvaluate, principal: Evaluators, connection: ConnectionDep) -> PolicyDecision:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    [decision] = service.evaluate(connection=connection, sandbox=principal.sandbox, schema=schema,
                                  marketing_actions=[spec.marketing_action], segment=spec.segment,
                                  expression=spec.expression, attributes=spec.attributes)
    return decision


@policies_router.get("/{policy_id:int}", response_model=PolicyRead, responses=NOT_FOUND, summary="Read a policy")
def get_policy(policy_id: PolicyId, principal: AnyRole, connection: ConnectionDep) -> PolicyRead:
    return service.get_policy(connection=connection, sandbox=principal.sandbox, policy_id=policy_id)


@policies_router.patch("/{policy_id:int}", response_model=PolicyRead, responses={**NOT_FOUND, **CONFLICT},
                       summary="Change a policy (a new deny condition is checked again)")
def update_policy(policy_id: PolicyId, spec: PolicyUpdate, principal: Stewards,
                  connection: ConnectionDep) -> PolicyRead:
    updated = service.update_policy(connection=connection, sandbox=principal.sandbox, policy_id=policy_id, spec=spec)
    recheck(connection=connection, sandbox=principal.sandbox)
    return updated


@policies_router.delete("/{policy_id:int}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
                        responses=NOT_FOUND, summary="Delete a policy")
def delete_policy(policy_id: PolicyId, principal: Stewards, connection: ConnectionDep) -> Response:
    service.delete_policy(connection=connection, sandbox=principal.sandbox, policy_id=policy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
