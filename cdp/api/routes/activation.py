"""``/v1/destinations``, ``/v1/activations`` and ``/v1/dataflow`` (API.md, "Destinations and
activation"; docs/activation.md).

Reading: any role. Destinations (where data leaves the platform, with their secrets) are created
and changed by admin and data_steward; activations by admin, data_steward and marketer
(marketers activate their audiences — the policies decide what may go)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from cdp.activation import dataflow as flows
from cdp.activation import log, service
from cdp.activation.models import (ActivationCreate, ActivationRead, ActivationUpdate, DataFlow, DeliveryPage,
                                   DeliveryRead, DeliveryStatus, DestinationCreate, DestinationRead,
                                   DestinationUpdate, ExportRequested, Redelivered)
from cdp.api.deps import AnyRole, ClockDep, ConnectionDep, Stewards, require
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import MAX_LIMIT, Page, PageDep
from cdp.auth import Role
from cdp.auth.service import Principal

destinations_router = APIRouter(prefix="/destinations", tags=["activation"], responses=COMMON_RESPONSES)
activations_router = APIRouter(prefix="/activations", tags=["activation"], responses=COMMON_RESPONSES)
dataflow_router = APIRouter(tags=["activation"], responses=COMMON_RESPONSES)

Activators = Annotated[Principal, require(Role.admin, Role.data_steward, Role.marketer)]
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
DeliveryId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$", description="The delivery id.")]
NOT_FOUND = {404: {"model": ErrorResponse}}
CONFLICT = {409: {"model": ErrorResponse}}


def wake_delivery(request: Request) -> None:
    delivery = getattr(request.app.state, "delivery", None)
    if delivery is not None:
        delivery.wake()


# ---- destinations ------------------------------------------------------------------------------


@destinations_router.post("", status_code=status.HTTP_201_CREATED, response_model=DestinationRead,
                          responses=CONFLICT, summary="Create a destination (webhook or file)",
                          description="The webhook's secret is stored and never returned. 422 "
                                      "`unknown_marketing_action`, `invalid_destination` (a consent field that is not "
                                      "a profile attribute, a directory with `..`); 409 `conflict` on a taken name.")
def create_destination(spec: DestinationCreate, principal: Stewards, connection: ConnectionDep,
                       clock: ClockDep) -> DestinationRead:
    return service.create_destination(connection=connection, sandbox=principal.sandbox, spec=spec, now=clock())


@destinations_router.get("", response_model=Page[DestinationRead], summary="The sandbox's destinations")
def list_destinations(principal: AnyRole, connection: ConnectionDep, page: PageDep) -> Page[DestinationRead]:
    items, total = service.list_destinations(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                             offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@destinations_router.get("/{destination_id}", response_model=DestinationRead, responses=NOT_FOUND,
                         summary="A destination")
def get_destination(destination_id: Id, principal: AnyRole, connection: ConnectionDep) -> DestinationRead:
    return service.get_destination(connection=connection, sandbox=principal.sandbox, destination_id=destination_id)


@destinations_router.patch("/{destination_id}", response_model=DestinationRead, responses={**NOT_FOUND, **CONFLICT},
                           summary="Change a destination",
                           description="New marketing actions evaluate its activations again: one that now violates "
                                       "a policy is paused with the reason.")
def update_destination(destination_id: Id, spec: DestinationUpdate, principal: Stewards, connection: ConnectionDep,
                       clock: ClockDep) -> DestinationRead:
    return service.update_destination(connection=connection, sandbox=principal.sandbox, destination_id=destination_id,
                                      spec=spec, now=clock())


@destinations_router.delete("/{destination_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
                            responses={**NOT_FOUND, **CONFLICT},
                            summary="Delete a destination (409 destination_in_use while activations send to it)")
def delete_destination(destination_id: Id, principal: Stewards, connection: ConnectionDep) -> Response:
    service.delete_destination(connection=connection, sandbox=principal.sandbox, destination_id=destination_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@destinations_router.get("/{destination_id}/deliveries", response_model=DeliveryPage, responses=NOT_FOUND,
                         summary="The destination's delivery log, newest first (by cursor)",
                         description="Each delivery: what it carried (`changes`, and how many were left out for want "
                                     "of consent), when, the receiver's answer, attempts; `dead` ones can be sent "
                                     "again (POST …/redeliver).")
def list_deliveries(destination_id: Id, principal: AnyRole, connection: ConnectionDep,
                    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 50,
                    cursor: Annotated[str | None, Query(max_length=200, description="The `next` of the previous "
                                                                                    "page.")] = None,
                    status_: Annotated[list[DeliveryStatus] | None, Query(alias="status",
                                                                         description="Only these statuses.")] = None,
                    ) -> DeliveryPage:
    return log.list_deliveries(connection=connection, sandbox=principal.sandbox, destination_id=destination_id,
                               limit=limit, cursor=cursor, statuses=status_)


@destinations_router.get("/{destination_id}/deliveries/{delivery_id}", response_model=DeliveryRead,
                         responses=NOT_FOUND, summary="One delivery")
def get_delivery(destination_id: Id, delivery_id: DeliveryId, principal: AnyRole,
                 connection: ConnectionDep) -> DeliveryRead:
    return log.delivery_read(log.get_delivery(connection=connection, sandbox=principal.sandbox,
                                              destination_id=destination_id, delivery_id=delivery_id))


class RedeliverRequest(BaseModel):
    delivery_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$",
                                    description="Only this dead delivery; default: every dead one.")


@destinations_router.post("/{destination_id}/redeliver", response_model=Redelivered,
                          responses={**NOT_FOUND, **CONFLICT}, summary="Send dead deliveries again",
                          description="With their delivery ids unchanged (a receiver deduplicates) and attempts "
                                      "counted afresh. 409 `not_redeliverable` for a file destination.")
def redeliver(destination_id: Id, principal: Stewards, connection: ConnectionDep, clock: ClockDep, request: Request,
              background: BackgroundTasks, spec: Annotated[RedeliverRequest | None, Body()] = None) -> Redelivered:
    count = log.redeliver(connection=connection, sandbox=principal.sandbox, destination_id=destination_id,
                          delivery_id=spec.delivery_id if spec else None, now=clock())
    background.add_task(wake_delivery, request)
    return Redelivered(requeued=count)


@destinations_router.post("/{destination_id}/export", status_code=status.HTTP_202_ACCEPTED,
                          response_model=ExportRequested, responses={**NOT_FOUND, **CONFLICT},
                          summary="Export a file destination now",
                          description="A job writes one file per active activation (and its manifest); each is a "
                                      "row of the delivery log. 409 `not_exportable` for a webhook.")
def export_destination(destination_id: Id, principal: Stewards, connection: ConnectionDep, clock: ClockDep,
                       request: Request, background: BackgroundTasks) -> ExportRequested:
    requested = service.request_export(connection=connection, sandbox=principal.sandbox,
                                       destination_id=destination_id, now=clock())
    background.add_task(request.app.state.jobs.wake)
    return requested


# ---- activations -------------------------------------------------------------------------------


@activations_router.post("", status_code=status.HTTP_201_CREATED, response_model=ActivationRead,
                         responses={**NOT_FOUND, **CONFLICT}, summary="Activate a segment onto a destination",
                         description="Every enabled policy of each marketing action of the destination is evaluated "
                                     "over the fields the segment reads and the attributes exported: a violation is "
                                     "409 `policy_violation` with `details.violations` (policy, action, labels, "
                                     "lineage) and nothing is created or sent. `end` defaults to 90 days after "
                                     "`start` (default now).")
def create_activation(spec: ActivationCreate, principal: Activators, connection: ConnectionDep, clock: ClockDep,
                      request: Request, background: BackgroundTasks) -> ActivationRead:
    created = service.create_activation(connection=connection, sandbox=principal.sandbox, spec=spec, now=clock())
    background.add_task(wake_delivery, request)
    return created


@activations_router.get("", response_model=Page[ActivationRead], summary="The sandbox's activations")
def list_activations(principal: AnyRole, connection: ConnectionDep, page: PageDep, clock: ClockDep,
                     segment: Annotated[str | None, Query(max_length=128, description="Only this segment's.")] = None,
                     destination: Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                                              description="Only this destination's.")] = None,
                     ) -> Page[ActivationRead]:
    items, total = service.list_activations(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                            offset=page.offset, segment=segment, destination=destination, now=clock())
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@activations_router.get("/{activation_id}", response_model=ActivationRead, responses=NOT_FOUND,
                        summary="An activation: status, members exported, members left out for want of consent")
def get_activation(activation_id: Id, principal: AnyRole, connection: ConnectionDep, clock: ClockDep) -> ActivationRead:
    return service.get_activation(connection=connection, sandbox=principal.sandbox, activation_id=activation_id,
                                  now=clock())


@activations_router.patch("/{activation_id}", response_model=ActivationRead, responses={**NOT_FOUND, **CONFLICT},
                          summary="Change the mapping or end, pause or resume",
                          description="A new mapping, or resuming, evaluates the policies again: 409 "
                                      "`policy_violation` and nothing changes.")
def update_activation(activation_id: Id, spec: ActivationUpdate, principal: Activators, connection: ConnectionDep,
                      clock: ClockDep, request: Request, background: BackgroundTasks) -> ActivationRead:
    updated = service.update_activation(connection=connection, sandbox=principal.sandbox, activation_id=activation_id,
                                        spec=spec, now=clock())
    background.add_task(wake_delivery, request)
    return updated


@activations_router.delete("/{activation_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
                           responses=NOT_FOUND, summary="Delete an activation (nothing more is sent)")
def delete_activation(activation_id: Id, principal: Activators, connection: ConnectionDep) -> Response:
    service.delete_activation(connection=connection, sandbox=principal.sandbox, activation_id=activation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@dataflow_router.get("/dataflow", response_model=DataFlow,
                     summary="Datasets → segments → activations → destinations, with labels and policy status")
def dataflow(principal: AnyRole, connection: ConnectionDep, clock: ClockDep) -> DataFlow:
    return flows.dataflow(connection=connection, sandbox=principal.sandbox, now=clock())
