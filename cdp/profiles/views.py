"""``/v1/profiles`` — evaluate an expression on a profile document (any role)."""

from __future__ import annotations

from fastapi import APIRouter

from cdp.api.deps import AnyRole, ConnectionDep
from cdp.api.errors import COMMON_RESPONSES
from cdp.expressions.service import stored_catalogue
from cdp.profiles import service
from cdp.profiles.models import ProfileEvaluate, ProfileEvaluation
from cdp.schema_registry.service import get_schema

router = APIRouter(prefix="/profiles", tags=["profiles"], responses=COMMON_RESPONSES)


@router.post("/evaluate", response_model=ProfileEvaluation,
             summary="Does this profile qualify for the expression now (or at as_of)? With the value of each part")
def evaluate_profile(spec: ProfileEvaluate, principal: AnyRole, connection: ConnectionDep) -> ProfileEvaluation:
    schema = get_schema(connection=connection, sandbox=principal.sandbox)
    catalogue = spec.segments if spec.segments is not None else stored_catalogue(
        connection=connection, sandbox=principal.sandbox)
    return service.evaluate_profile(expression=spec.expression, document=spec.profile, schema=schema,
                                    catalogue=catalogue, as_of=spec.as_of)
