"""Operational endpoints outside /v1: ``GET /healthz`` (no key) and ``GET /metrics`` (any key)."""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from cdp.api.deps import AnyRole, EngineDep, MetricsDep
from cdp.api.errors import ErrorResponse
from cdp.errors import Unavailable
from cdp.storage.database import NotWritable, probe_write

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str
    database: str
    version: str
    writes: Literal["ok", "busy"] = Field(description="`ok`: a write transaction went through; `busy`: another "
                                                      "writer (a batch being applied) held the lock for 2 s — writes "
                                                      "queue behind it.")


@router.get("/healthz", response_model=Health, responses={503: {"model": ErrorResponse}},
            summary="Is the service up and its database readable and writable? (no API key needed)",
            description="Reads, then tries a write transaction (rolled back). 503 `unavailable` when the database "
                        "cannot be reached or refuses writes (read-only, I/O error, disk full …), with the reason.")
def healthz(engine: EngineDep) -> Health:
    from importlib.metadata import version

    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        writes = probe_write(engine)
    except NotWritable as exc:
        raise Unavailable(f"database not writable: {exc}", details={"reason": str(exc)}) from None
    except sa.exc.SQLAlchemyError as exc:
        raise Unavailable(f"database unreachable: {str(getattr(exc, 'orig', exc)).strip()[:200]}") from None
    return Health(status="ok", database=engine.dialect.name, version=version("cdp"), writes=writes)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)",
            responses={200: {"content": {"text/plain": {}}}})
def metrics(_principal: AnyRole, collected: MetricsDep) -> Response:
    body, content_type = collected.exposition()
    return Response(body, media_type=content_type)
