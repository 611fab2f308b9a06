"""``/v1/schema`` — the schema in force of the request's sandbox."""

from __future__ import annotations

from fastapi import APIRouter

from cdp.activation.service import recheck
from cdp.api.deps import AnyRole, ConnectionDep, Stewards
from cdp.api.errors import COMMON_RESPONSES, ErrorResponse
from cdp.schema_registry import service
from cdp.schema_registry.models import SchemaRead, SchemaReplace

router = APIRouter(prefix="/schema", tags=["schema"], responses=COMMON_RESPONSES)


@router.get("", response_model=SchemaRead, summary="Read the schema in force")
def read_schema(principal: AnyRole, connection: ConnectionDep) -> SchemaRead:
    return service.read_schema(connection=connection, sandbox=principal.sandbox)


@router.put("", response_model=SchemaRead, summary="Replace the schema in force",
            responses={409: {"model": ErrorResponse, "description": "`schema_incompatible`: the change would "
                             "make stored data wrong; details list each field and why."}})
def replace_schema(spec: SchemaReplace, principal: Stewards, connection: ConnectionDep) -> SchemaRead:
    replaced = service.replace_schema(connection=connection, sandbox=principal.sandbox, spec=spec)
    recheck(connection=connection, sandbox=principal.sandbox)  # a segment may no longer check: its activations pause
    return replaced
