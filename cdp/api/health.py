"""Operational endpoints outside /v1: ``GET /healthz`` (no key) and ``GET /metrics`` (any key).

``/healthz`` says one of three states, honestly:

* **up** (200, ``state: up``): the database answers a read and takes a write transaction, the
  job workers run, the disk has room, scheduled re-evaluations run on time;
* **degraded** (200, ``state: degraded``, each reason in ``problems``): the service answers but
  something will make it fall behind or fail soon — another writer holds the write lock (writes
  queue), the job workers are not running (batches, segment runs and re-evaluations wait), the
  disk under the database or the upload spool has less than ``CDP_MIN_FREE_DISK_BYTES`` free, or
  due re-evaluations are late by more than a minute;
* **down** (503 ``unavailable``, ``details.state: down``): the database cannot be reached or
  refuses writes (read-only, I/O error, disk full), with the reason.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from cdp.api.deps import AnyRole, EngineDep, MetricsDep
from cdp.api.errors import ErrorResponse
from cdp.errors import Unavailable
from cdp.storage.database import NotWritable, probe_write

router = APIRouter(tags=["operations"])
DUE_LAG_DEGRADED_SECONDS = 60.0


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok` in a 200 answer (the service answers); see `state`.")
    state: Literal["up", "degraded"] = Field(description="`up`, or `degraded` with the reasons in `problems` (a "
                                                         "service that is down answers 503).")
    problems: list[str] = Field(description="Why the service is degraded; empty when up.")
    database: str
    version: str
    writes: Literal["ok", "busy"] = Field(description="`ok`: a write transaction went through; `busy`: another "
                                                      "writer (a batch being applied) held the lock for 2 s — writes "
                                                      "queue behind it.")


def _folders(request: Request, engine: sa.Engine) -> dict[str, Path]:
    """The folders whose free space matters: the SQLite file's and the upload spool (temp files)."""
    folders = {"upload spool": Path(tempfile.gettempdir())}
    if engine.dialect.name == "sqlite" and engine.url.database and engine.url.database != ":memory:":
        folders["database"] = Path(engine.url.database.removeprefix("file:").split("?")[0]).resolve().parent
    return folders


def problems_of(request: Request, engine: sa.Engine, writes: str) -> list[str]:
    problems = []
    if writes == "busy":
        problems.append("writes: another writer holds the database's write lock; writes queue behind it")
    jobs = getattr(request.app.state, "jobs", None)
    if jobs is not None and not jobs.alive():
        problems.append("jobs: the background job workers are not running; batches, segment runs and "
                        "re-evaluations wait")
    minimum = request.app.state.settings.min_free_disk_bytes
    for what, folder in _folders(request, engine).items():
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        if free < minimum:
            problems.append(f"disk: {free // 1024} KiB free under the {what} ({folder}); below "
                            f"CDP_MIN_FREE_DISK_BYTES ({minimum // 1024} KiB)")
    lag = request.app.state.metrics.last_due_lag
    if lag > DUE_LAG_DEGRADED_SECONDS:
        problems.append(f"re-evaluations: the oldest due one was {lag:.0f} s late")
    return problems


@router.get("/healthz", response_model=Health, responses={503: {"model": ErrorResponse}},
            summary="Is the service up, degraded or down? (no API key needed)",
            description="Reads, then tries a write transaction (rolled back), and looks at the job workers, the free "
                        "disk and the re-evaluation schedule. 200 with `state` `up` or `degraded` (the reasons in "
                        "`problems`); 503 `unavailable` (`details.state`: `down`) when the database cannot be "
                        "reached or refuses writes (read-only, I/O error, disk full …), with the reason.")
def healthz(request: Request, engine: EngineDep) -> Health:
    from importlib.metadata import version

    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        writes = probe_write(engine)
    except NotWritable as exc:
        raise Unavailable(f"database not writable: {exc}", details={"state": "down", "reason": str(exc)}) from None
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip()[:200]
        raise Unavailable(f"database unreachable: {reason}", details={"state": "down", "reason": reason}) from None
    problems = problems_of(request, engine, writes)
    return Health(status="ok", state="degraded" if problems else "up", problems=problems, database=engine.dialect.name,
                  version=version("cdp"), writes=writes)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)",
            responses={200: {"content": {"text/plain": {}}}})
def metrics(_principal: AnyRole, collected: MetricsDep) -> Response:
    body, content_type = collected.exposition()
    return Response(body, media_type=content_type)
