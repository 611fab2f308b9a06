"""``/v1/expressions`` — check an expression against the sandbox's schema (any role)."""

from __future__ import annotations

from fastapi import APIRouter

from cdp.api.deps import AnyRole, ConnectionDep, read_only
from cdp.api.errors import COMMON_RESPONSES
from cdp.expressions import service
from cdp.expressions.models import ExpressionCheck, ExpressionChecked, FunctionRead
from cdp.schema_registry.service import get_schema

router = APIRouter(prefix="/expressions", tags=["expressions"], responses=COMMON_RESPONSES)


@router.post("/check", response_model=ExpressionChecked,
             summary="Check an expression: canonical text and JSON form, or every error (422 invalid_expression)")
@read_only
def check_expression(spec: ExpressionCheck, principal: AnyRole, connection: ConnectionDep) -> dict:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    catalogue = spec.segments if spec.segments is not None else service.stored_catalogue(
        connection=connection, sandbox=principal.sandbox)
    tree = service.check_expression(expression=spec.expression, schema=schema, catalogue=catalogue)
    return service.describe(tree, schema=schema, text=spec.expression)


@router.get("/functions", response_model=list[FunctionRead],
            summary="The language's functions: name, signature, documentation and example (for completion)")
def list_functions(principal: AnyRole) -> list[dict]:
    return service.functions()
