"""Operational endpoints outside /v1: ``GET /healthz`` (no key) and ``GET /metrics`` (any key)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response
from pydantic import BaseModel

from cdp.api.deps import AnyRole, EngineDep, MetricsDep
from cdp.api.errors import ErrorResponse
from cdp.errors import Unavailable

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str
    database: str
    version: str


@router.get("/healthz", response_model=Health, responses={503: {"model": ErrorResponse}},
            summary="Is the service up and its database reachable? (no API key needed)")
def healthz(engine: EngineDep) -> Health:
    from importlib.metadata import version

    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise Unavailable(f"database unreachable: {str(getattr(exc, 'orig', exc)).strip()[:200]}") from None
    return Health(status="ok", database=engine.dialect.name, version=version("cdp"))


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)",
            responses={200: {"content": {"text/plain": {}}}})
def metrics(_principal: AnyRole, collected: MetricsDep) -> Response:
    body, content_type = collected.exposition()
    return Response(body, media_type=content_type)
