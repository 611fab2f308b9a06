"""The FastAPI application, built by :func:`create_app` (nothing happens at import time).

Layout: one package per domain, each with ``models.py`` (pydantic shapes: ``XCreate``,
``XUpdate``, ``XRead``) and ``service.py`` (plain functions with keyword-only arguments that take a
``connection``); its HTTP routes are a thin ``APIRouter`` in ``cdp/api/routes/<domain>.py``, so
the domain packages never import the HTTP layer (tests/test_layers.py):

* cdp/auth — API keys and roles (``/v1/keys``), the calling key (``/v1/me``)
* cdp/sandboxes — the sandboxes, which exist before use (``/v1/sandboxes``)
* cdp/schema_registry — the schema in force per sandbox (``/v1/schema``)
* cdp/datasets — datasets and their data-usage labels (``/v1/datasets``)
* cdp/ingestion — records and batch files into datasets (``/v1/datasets/{id}/records``,
  ``/v1/datasets/{id}/batches``), batch jobs (``/v1/batches/{id}``)
* cdp/expressions — checking expressions (``/v1/expressions/check``)
* cdp/profiles — evaluating an expression on a profile (``/v1/profiles/evaluate``)
* cdp/segments — saved segments, members, estimates, history (``/v1/segments``), batch
  evaluation jobs (``/v1/segment-jobs``), one profile against an expression or segment
  (``/v1/evaluate``)
* cdp/governance — labels, marketing actions, policies and their evaluation with lineage
  (``/v1/labels``, ``/v1/marketing-actions``, ``/v1/policies``, ``/v1/policies/evaluate``)
* cdp/sources — connectors (``/v1/source-types``, ``/v1/sources``) and the analytics SDKs' tracking
  API (``/sources/segment/v1/…``, authenticated by a source's write key)
* cdp/activation — destinations, activations with their policy evaluation, the delivery log and
  the data-flow graph (``/v1/destinations``, ``/v1/activations``, ``/v1/dataflow``)
* cdp/web — the web interface for marketers (``/ui``, its files under ``/ui/static``; docs/web.md)
* cdp/api — the app itself: the routes, settings wiring, dependencies, errors, middleware, health
  (metrics: cdp/observability, which every layer may import).

Start-up (the lifespan): the engine is created, the database upgraded to the newest migration
(or the start refused, saying why; cdp/api/startup.py), the first admin key created when
none exists, and the job runner started with the kinds of :func:`job_registry` (cdp/jobs): jobs a
stopped server left running are taken back first (a batch is marked failed and can be retried),
then worker threads run the queued ones (``app.state.jobs``; a view that enqueues a job wakes it
after its commit). At shutdown, running jobs stop between two steps and roll back. Every endpoint
lives under ``/v1`` except ``/healthz``, ``/metrics``, the tracking API, the web interface (``/ui``) and the API docs (``/docs``, ``/redoc``,
``/openapi.json``; their files are served from ``/docs/assets``, no CDN: cdp/api/docs.py); each
operation of the OpenAPI document lists the roles it allows as
``x-roles``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from cdp.activation.export import KINDS as EXPORT_KINDS
from cdp.activation.worker import DeliveryWorker
from cdp.api import access_log, docs, errors
from cdp.api.deps import endpoints
from cdp.api.errors import COMMON_RESPONSES
from cdp.api.health import router as operations
from cdp.api.middleware import RequestGate
from cdp.api.ratelimit import RateLimiter
from cdp.api.routes.activation import activations_router, dataflow_router, destinations_router
from cdp.api.routes.auth import me_router as me
from cdp.api.routes.auth import router as keys
from cdp.api.routes.datasets import router as datasets
from cdp.api.routes.expressions import router as expressions
from cdp.api.routes.governance import actions_router, labels_router, policies_router
from cdp.api.routes.identity import router as identity
from cdp.api.routes.ingestion import FILE_ROUTES
from cdp.api.routes.ingestion import router as ingestion
from cdp.api.routes.profiles import privacy_router as privacy
from cdp.api.routes.profiles import router as profiles
from cdp.api.routes.sandboxes import router as sandboxes
from cdp.api.routes.schema_registry import router as schema
from cdp.api.routes.segments import evaluate_router, jobs_router
from cdp.api.routes.segments import router as segments
from cdp.api.routes.sources import document_write_key, tracking_router
from cdp.api.routes.sources import router as sources
from cdp.api.startup import bootstrap_admin, prepare_database
from cdp.auth import ALL_ROLES
from cdp.ingestion.batch_job import batch_job_kind
from cdp.jobs import Registry, Runner
from cdp.observability.metrics import Metrics
from cdp.segments import jobs as segment_jobs
from cdp.snapshots import snapshot_kind
from cdp.segments.jobs import ensure_schedule, fail_interrupted
from cdp.segments.settings import SegmentSettings
from cdp.segments.due import due_job_kind, schedule_due_job
from cdp.ingestion.reevaluation import KIND as REEVALUATION_KIND
from cdp.sources.jobs import KINDS as SOURCE_KINDS
from cdp.settings import Settings
from cdp.text import NO_NUL
from cdp.web import views as web

API_PREFIX = "/v1"
log = logging.getLogger("cdp.api")


def _routers() -> list[APIRouter]:
    return [schema, datasets, ingestion, identity, expressions, profiles, privacy, segments, jobs_router,
            evaluate_router, labels_router, actions_router, policies_router, keys, me, sandboxes,
            sources, destinations_router, activations_router, dataflow_router]


def job_registry(metrics) -> Registry:
    """Every kind of background work the service runs; a domain adds its kind here."""
    every_hours = SegmentSettings().batch_every_hours
    return Registry([batch_job_kind(metrics), segment_jobs.run_kind(), segment_jobs.schedule_kind(every_hours),
                     due_job_kind(metrics), snapshot_kind(Settings().data_dir / "snapshots"), *SOURCE_KINDS,
                     REEVALUATION_KIND, *EXPORT_KINDS])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access_log.install()  # after uvicorn configured its loggers
        engine = prepare_database(settings.resolved_database_url(), migrate=settings.migrate_on_start)
        try:
            fixed = settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else None
            bootstrap_admin(engine, fixed)
            app.state.segment_settings = SegmentSettings()
            try:
                fail_interrupted(engine)  # segment runs of a stopped CLI: failed, to be run again
                ensure_schedule(engine, every_hours=app.state.segment_settings.batch_every_hours)
            except sa.exc.DBAPIError as exc:  # a database that takes no writes still serves reads
                log.warning("start-up housekeeping skipped, the database refuses writes (/healthz says so): %s",
                            str(getattr(exc, "orig", exc)).splitlines()[0][:200])
            app.state.engine = engine
            workers = settings.job_workers or (1 if engine.dialect.name == "sqlite" else 2)
            registry = job_registry(metrics)
            runner = Runner(engine, registry, workers=workers, clock=lambda: app.state.clock())
            app.state.jobs = runner

            schedule_due_job(engine, registry,
                             every=timedelta(seconds=app.state.segment_settings.due_every_seconds))
            runner.start()
            delivery = DeliveryWorker(engine, clock=lambda: app.state.clock(), metrics=metrics)
            app.state.delivery = delivery
            delivery.start()
            try:
                yield
            finally:
                delivery.stop()
                runner.stop()
        finally:
            engine.dispose()

    from importlib.metadata import version

    app = FastAPI(
        title="cdp",
        version=version("cdp"),
        summary="Open-source core of a real-time customer data platform.",
        description="Every endpoint under /v1 needs an API key (`Authorization: Bearer cdp_…`) and works in the "
                    "sandbox named by the `X-Sandbox` header (default `prod`). Errors have one shape: "
                    '`{"error": {"code", "message", "details"}}`. Each operation lists the roles it allows '
                    "under `x-roles`. Each key may make `CDP_RATE_LIMIT_BURST` requests at once and "
                    "`CDP_RATE_LIMIT_PER_SECOND` a second sustained; past that, 429 `rate_limited` with `Retry-After`.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # ours, without a CDN: cdp/api/docs.py
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.rate_limiter = RateLimiter(per_second=settings.rate_limit_per_second, burst=settings.rate_limit_burst)
    from cdp.jobs.queue import utcnow

    app.state.clock = utcnow  # tests inject another (cdp.api.deps.get_clock)
    errors.install(app)
    # metrics (counting the 413s and 431s too), header size, NUL in the URL, body size: one layer
    app.add_middleware(RequestGate, metrics=metrics, max_bytes=settings.max_body_bytes,
                       max_file_bytes=settings.max_file_bytes,
                       file_routes=[(method, API_PREFIX + path) for method, path in FILE_ROUTES])

    for router in _routers():  # each under /v1 directly: FastAPI matches a request router by router, level by level
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(tracking_router)  # the analytics SDKs' tracking API: write keys, not API keys
    app.include_router(operations)
    docs.install(app)
    web.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, with each operation's allowed roles (``x-roles``) added, and every
    response an authenticated endpoint may give (400, 401, 403, 404)."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                           routes=app.routes)
    for endpoint in endpoints(app):
        operation = document["paths"].get(endpoint.path, {}).get(endpoint.method.lower())
        if operation is None:
            continue
        if endpoint.roles is None:
            operation["x-roles"] = []
        else:
            operation["x-roles"] = [r.value for r in ALL_ROLES if r in endpoint.roles]
            for status in ("400", "401", "403", "404", "429"):  # every endpoint that needs a key may answer these
                operation["responses"].setdefault(status, {
                    "description": COMMON_RESPONSES[int(status)]["description"],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}})
            operation["responses"]["429"].setdefault("headers", {"Retry-After": {
                "description": "Seconds to wait before the next request of this key.", "required": True,
                "schema": {"type": "integer", "minimum": 1}}})
            operation["description"] = (operation.get("description", "") +
                                        f"\n\nRoles allowed: {', '.join(operation['x-roles'])}.").strip()
    _exact_schemas(document)
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] in ("path", "query"):
                    _no_nul(parameter["schema"])
    document_write_key(document)
    app.openapi_schema = document
    return document


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _no_nul(schema: dict) -> None:
    """A string in a URL may not hold NUL (cdp/api/middleware.py RequestGate): say so where no
    pattern says more."""
    for option in schema.get("anyOf", [schema]):
        target = option.get("items", option) if option.get("type") == "array" else option
        if target.get("type") == "string" and "pattern" not in target and "enum" not in target \
                and "format" not in target:
            target["pattern"] = NO_NUL


def _exact_schemas(node: object) -> None:
    """Two things FastAPI's document says less exactly than pydantic validates:

    * a dict whose keys are constrained (``dict[StoredText, …]``) becomes ``patternProperties``; a
      key that does not match is refused too, so say so: ``additionalProperties: false``;
    * FastAPI's OpenAPI model holds bounds as floats, so ``le=2**63 - 1`` (a 64-bit id) would read
      ``9.223372036854776e+18``, which is 2**63: integral bounds are written as integers again."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for bound in _BOUNDS:
            value = node.get(bound)
            if isinstance(value, float) and value.is_integer():
                node[bound] = 2**63 - 1 if value == float(2**63) else int(value)
        for value in node.values():
            _exact_schemas(value)
    elif isinstance(node, list):
        for value in node:
            _exact_schemas(value)
