"""``/v1/identity`` — the sandbox's identity namespaces (built-in and custom) and its identity
settings (merge policy, graph limit). Reading: any role; changing: admin and data_steward."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from cdp.api.deps import AnyRole, ConnectionDep, Stewards
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.identity import service
from cdp.identity.models import (IdentitySettingsRead, IdentitySettingsWrite, NamespaceCreate, NamespaceRead,
                                 SimulationRead, SimulationRequest)
from cdp.identity.simulation import simulate
from cdp.ingestion.reevaluation import queue_reevaluation

router = APIRouter(prefix="/identity", tags=["identity"], responses=COMMON_RESPONSES)

NamespaceCode = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/namespaces", response_model=list[NamespaceRead], summary="The sandbox's identity namespaces")
def list_namespaces(principal: AnyRole, connection: ConnectionDep) -> list[NamespaceRead]:
    return service.list_namespaces(connection=connection, sandbox=principal.sandbox)


@router.post("/namespaces", status_code=status.HTTP_201_CREATED, response_model=NamespaceRead,
             responses={409: {"model": ErrorResponse}}, summary="Add a custom identity namespace")
def create_namespace(spec: NamespaceCreate, principal: Stewards, connection: ConnectionDep) -> NamespaceRead:
    return service.create_namespace(connection=connection, sandbox=principal.sandbox, spec=spec)


@router.delete("/namespaces/{code}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
               summary="Delete a custom namespace no identity uses")
def delete_namespace(code: NamespaceCode, principal: Stewards, connection: ConnectionDep) -> Response:
    service.delete_namespace(connection=connection, sandbox=principal.sandbox, code=code)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/settings", response_model=IdentitySettingsRead,
            summary="The merge policy, the graph limit and the linking rules")
def read_settings(principal: AnyRole, connection: ConnectionDep) -> IdentitySettingsRead:
    return service.read_settings(connection=connection, sandbox=principal.sandbox)


@router.put("/settings", response_model=IdentitySettingsRead,
            summary="Replace the merge policy, the graph limit and the linking rules (profiles' attributes are "
                    "recomputed; with reevaluate, a job applies the rules to every graph)")
def replace_settings(spec: IdentitySettingsWrite, principal: Stewards, connection: ConnectionDep
                     ) -> IdentitySettingsRead:
    answer = service.replace_settings(connection=connection, sandbox=principal.sandbox, spec=spec)
    if spec.reevaluate:
        queue_reevaluation(connection, sandbox=principal.sandbox)
        answer = service.read_settings(connection=connection, sandbox=principal.sandbox).model_copy(
            update={"profiles_recomputed": answer.profiles_recomputed})
    return answer


@router.post("/simulate", response_model=SimulationRead,
             summary="What the linking rules would make of some records (nothing is stored)")
def simulate_graph(spec: SimulationRequest, principal: AnyRole, connection: ConnectionDep) -> SimulationRead:
    return simulate(connection=connection, sandbox=principal.sandbox, spec=spec)
