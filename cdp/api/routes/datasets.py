"""``/v1/datasets`` — datasets of the request's sandbox. Reading: any role; writing: admin and
data_steward."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from cdp.activation.service import recheck  # labels, policies and segments in use are evaluated again
from cdp.api.deps import AnyRole, ConnectionDep, Stewards, single_hop
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.api.pagination import Page, PageDep
from cdp.datasets import service
from cdp.datasets.models import DatasetCreate, DatasetKind, DatasetRead, DatasetUpdate
from cdp.schema_registry.service import get_schema

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=COMMON_RESPONSES)

DatasetId = Annotated[int, Path(ge=1, le=2**63 - 1)]
NOT_FOUND = {404: {"model": ErrorResponse}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetRead,
             responses={409: {"model": ErrorResponse}}, summary="Create a dataset")
def create_dataset(spec: DatasetCreate, principal: Stewards, connection: ConnectionDep) -> DatasetRead:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    return service.create_dataset(connection=connection, sandbox=principal.sandbox, spec=spec, schema=schema)


@router.get("", response_model=Page[DatasetRead], summary="List datasets")
def list_datasets(principal: AnyRole, connection: ConnectionDep, page: PageDep,
                  kind: Annotated[DatasetKind | None, Query(description="Only datasets of this kind.")] = None,
                  ) -> Page[DatasetRead]:
    items, total = service.list_datasets(connection=connection, sandbox=principal.sandbox, limit=page.limit,
                                         offset=page.offset, kind=kind)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{dataset_id}", response_model=DatasetRead, responses=NOT_FOUND, summary="Read a dataset")
@single_hop  # connection, handler, commit in one thread-pool hop (cdp/api/deps.py)
def get_dataset(dataset_id: DatasetId, principal: AnyRole, connection: ConnectionDep) -> DatasetRead:
    return service.get_dataset(connection=connection, sandbox=principal.sandbox, dataset_id=dataset_id)


@router.patch("/{dataset_id}", response_model=DatasetRead, responses={**NOT_FOUND, 409: {"model": ErrorResponse}},
              summary="Change a dataset's name, description or labels")
def update_dataset(dataset_id: DatasetId, spec: DatasetUpdate, principal: Stewards,
                   connection: ConnectionDep) -> DatasetRead:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    updated = service.update_dataset(connection=connection, sandbox=principal.sandbox, dataset_id=dataset_id,
                                     spec=spec, schema=schema)
    recheck(connection=connection, sandbox=principal.sandbox)  # new labels may break a policy of an activation
    return updated


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=NOT_FOUND, summary="Delete a dataset")
def delete_dataset(dataset_id: DatasetId, principal: Stewards, connection: ConnectionDep) -> Response:
    service.delete_dataset(connection=connection, sandbox=principal.sandbox, dataset_id=dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
