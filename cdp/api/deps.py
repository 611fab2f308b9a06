"""Dependencies of route handlers, as typed aliases.

* ``ConnectionDep`` — one SQLAlchemy Core connection per request, inside one transaction:
  committed when the handler returns, rolled back when it raises (``scope="function"``: before
  the response is sent, so a failed commit is an error response, not a lost write). Requests
  other than GET/HEAD/OPTIONS begin as writers (``write_transaction``: SQLite's lock up front),
  except routes marked :func:`read_only` (evaluating, checking): readers never wait for a
  writer — not even behind a batch holding SQLite's write lock. The connection is the request's
  :class:`RequestConnection`, opened where first needed: by the authorization on a key or
  sandbox cache miss, else by the handler. A sync handler costs FastAPI three thread-pool hops
  with it (open, handler, close); :func:`single_hop` makes it one (the hot routes: a record
  posted, a dataset read).
* ``require(*roles)`` — authentication and authorization, declared by every endpoint: the API key
  (``Authorization: Bearer``) must be valid (else 401), hold one of ``roles`` (else 403
  ``forbidden``) and, when bound to a sandbox, be used in that sandbox (else 403
  ``sandbox_forbidden``). Yields a :class:`~cdp.auth.service.Principal` carrying the request's
  sandbox (``X-Sandbox``, default ``prod``; invalid names are 400 ``invalid_sandbox``, a sandbox
  that does not exist is 404 ``unknown_sandbox``: cdp/sandboxes). A key past its rate limit is
  429 ``rate_limited`` with ``Retry-After`` (cdp/api/ratelimit.py).
  Aliases: ``AnyRole``, ``Stewards`` (admin, data_steward), ``Admins``.
* ``SettingsDep``, ``MetricsDep``.

:func:`route_roles` tells which roles a route allows (for the OpenAPI document and the tests
that prove every endpoint is protected).
"""

from __future__ import annotations

import inspect
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, get_type_hints

import anyio
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Request
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from cdp.observability.metrics import Metrics
from cdp.auth import ALL_ROLES, Role
from cdp.auth.service import Principal, authenticate, cached_key
from cdp.errors import BadRequest, Forbidden
from cdp.sandboxes import DEFAULT_SANDBOX, NAME_PATTERN, SANDBOX_HEADER, validate_sandbox_name
from cdp.sandboxes.service import require_sandbox
from cdp.settings import Settings
from cdp.storage.database import write_transaction


# The dependencies that only read app state are async: FastAPI runs sync ones in its thread pool,
# a hop per dependency per request.
async def get_engine(request: Request) -> sa.Engine:
    return request.app.state.engine


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only(handler):
    """Marks a route handler that only reads, whatever its method (a POST that evaluates): its
    connection begins as a reader, which on SQLite (WAL) never waits for a writer."""
    handler.cdp_read_only = True
    return handler


class RequestConnection:
    """The request's database connection, opened on first use by whoever needs it — in the thread
    that uses it — and closed once: committed, or rolled back when given the exception.

    What it opens is what ``ConnectionDep`` promises: requests other than GET/HEAD/OPTIONS begin
    as writers (:func:`~cdp.storage.database.write_transaction`: SQLite's lock up front), routes
    marked :func:`read_only` as readers. A request whose key and sandbox were seen lately opens
    nothing before its handler; one that must read them opens it in the Authorizer."""

    __slots__ = ("_request", "engine", "_context", "_connection", "_closed")

    def __init__(self, request: Request):
        self._request = request
        self.engine: sa.Engine = request.app.state.engine
        self._context = self._connection = None
        self._closed = False

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    def open(self) -> sa.Connection:
        """The connection in its transaction (blocking: call it in a worker thread)."""
        if self._connection is None:
            if self._closed:
                raise RuntimeError("the request's connection was closed")
            request = self._request
            if request.method in _READS or getattr(request.scope.get("endpoint"), "cdp_read_only", False):
                context = self.engine.begin()
            else:  # a request that may write takes SQLite's write lock up front (cdp.storage.database)
                context = write_transaction(self.engine)
            self._connection = context.__enter__()
            self._context = context
        return self._connection

    def close(self, error: BaseException | None = None) -> None:
        """Commit (``error`` None) or roll back, and give the connection back (blocking)."""
        context, self._context, self._connection, self._closed = self._context, None, None, True
        if context is None:
            return
        if error is None:
            context.__exit__(None, None, None)
        elif context.__exit__(type(error), error, error.__traceback__):
            raise RuntimeError("a transaction swallowed the request's error")  # neither context does


async def get_request_connection(request: Request) -> AsyncIterator[RequestConnection]:
    """The :class:`RequestConnection` (async: no thread-pool hop unless it was opened, and then
    one, to close it — when its user did not)."""
    holder = RequestConnection(request)
    try:
        yield holder
    except BaseException as exc:
        if holder.is_open:
            await _close_in_thread(holder, exc)
        raise
    if holder.is_open:
        await _close_in_thread(holder, None)


async def _close_in_thread(holder: RequestConnection, error: BaseException | None) -> None:
    # as FastAPI's contextmanager_in_threadpool exits: shielded, and with a limiter of its own (a
    # full thread pool must not keep a connection from going back to its pool)
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(holder.close, error, limiter=anyio.CapacityLimiter(1))


RequestConnectionDep = Annotated[RequestConnection, Depends(get_request_connection, scope="function")]


def get_connection(holder: RequestConnectionDep) -> Iterator[sa.Connection]:
    connection = holder.open()
    try:
        yield connection
    except BaseException as exc:
        holder.close(exc)
        raise
    holder.close()


def _run_with_connection(holder: RequestConnection, handler, values: dict[str, Any], names) -> Any:
    """In a worker thread: the request's connection opened, the handler, commit or rollback, close."""
    connection = holder.open()
    try:
        result = handler(**{**values, **dict.fromkeys(names, connection)})
    except BaseException as exc:
        holder.close(exc)
        raise
    holder.close()
    return result


async def run_single_hop(endpoint, request: Request, values: dict[str, Any]) -> Any:
    """Calls a :func:`single_hop` endpoint's handler with ``values`` (its parameters but the
    connection) as its FastAPI endpoint would: the request's connection, the handler and the
    commit in one thread-pool hop."""
    handler, names = endpoint.cdp_single_hop
    holder = RequestConnection(request)
    try:
        return await run_in_threadpool(_run_with_connection, holder, handler, values, names)
    except BaseException as exc:  # as get_request_connection: closed even when the hop never ran
        if holder.is_open:
            await _close_in_thread(holder, exc)
        raise


def single_hop(handler):
    """Runs a sync route handler that takes a ``ConnectionDep`` in one thread-pool hop with its
    connection: opened, the handler, committed (rolled back if it raises) and closed, where a
    sync ``ConnectionDep`` costs three hops (open, handler, close) and a response model a fourth
    (FastAPI validates a sync handler's answer in the pool). What ConnectionDep promises holds:
    the commit before the response (a failed commit is this request's error), the rollback on
    error, SQLite's write lock up front; the handler gets a plain connection.

    The answer is checked against the response model after the commit, on the event loop: use
    it on handlers that answer a ``Response`` themselves or only read. The route stays the same
    FastAPI route, parameters and OpenAPI document unchanged (the handler's signature is kept, its
    ``ConnectionDep`` parameters served by the request's connection). Put it below the route
    decorator."""
    if inspect.iscoroutinefunction(handler):
        raise TypeError("single_hop is for sync handlers")
    hints = get_type_hints(handler, include_extras=True)
    signature = inspect.signature(handler)
    parameters, names = [], []
    for parameter in signature.parameters.values():
        annotation = hints.get(parameter.name, parameter.annotation)
        if annotation == ConnectionDep:
            annotation = RequestConnectionDep
            names.append(parameter.name)
        parameters.append(parameter.replace(annotation=annotation))
    if not names:
        raise TypeError(f"{handler.__name__} takes no ConnectionDep")

    def run(values: dict[str, Any]) -> Any:
        return _run_with_connection(values[names[0]], handler, values, names)

    async def endpoint(**values: Any) -> Any:
        return await run_in_threadpool(run, values)

    # what FastAPI reads of an endpoint (name, docstring, module, signature with its annotations
    # resolved); no __wrapped__, which would make FastAPI see the sync handler
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(endpoint, attribute, getattr(handler, attribute))
    endpoint.__dict__.update(handler.__dict__)
    endpoint.cdp_single_hop = (handler, tuple(names))  # for a fast path (FastPathRoute)
    endpoint.__signature__ = signature.replace(parameters=parameters,  # type: ignore[attr-defined]
                                               return_annotation=hints.get("return", signature.return_annotation))
    return endpoint


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_clock(request: Request):
    """The service's clock (``app.state.clock``; tests inject one): the instant records are
    written and streaming segments evaluated at."""
    return request.app.state.clock


ConnectionDep = Annotated[sa.Connection, Depends(get_connection, scope="function")]
EngineDep = Annotated[sa.Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ClockDep = Annotated[Any, Depends(get_clock)]

_bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                     description="An API key: `Authorization: Bearer cdp_<id>_<secret>`. Create one with "
                                 "`cdp keys create --role ROLE` or POST /v1/keys.")


_SANDBOX_HELP = ("The sandbox to work in (default `prod`); it must exist (GET /v1/sandboxes). A name that does not "
                 "match the pattern is 400 `invalid_sandbox`, an unknown one 404 `unknown_sandbox`.")


# Sandboxes seen to exist, per engine (database): a request in one of them reads no sandbox row.
# Sandboxes are never deleted (there is no endpoint or command for it), so a name once seen stays
# valid; only positive answers are kept (a sandbox made by another process is found at once), and
# each for SANDBOX_CACHE_SECONDS, in case a row is removed by hand.
SANDBOX_CACHE_SECONDS = 30.0
_sandboxes_seen: weakref.WeakKeyDictionary[sa.Engine, dict[str, float]] = weakref.WeakKeyDictionary()
_sandboxes_lock = threading.Lock()


def _sandbox_seen(engine: sa.Engine, name: str) -> bool:
    with _sandboxes_lock:
        return _sandboxes_seen.get(engine, {}).get(name, 0.0) > time.monotonic()


def _require_sandbox_cached(connection: sa.Connection, name: str) -> None:
    """require_sandbox (404 ``unknown_sandbox``), remembering the sandboxes found."""
    if _sandbox_seen(connection.engine, name):
        return
    require_sandbox(connection=connection, name=name)
    with _sandboxes_lock:
        seen = _sandboxes_seen.setdefault(connection.engine, {})
        if len(seen) >= 10_000:
            seen.clear()
        seen[name] = time.monotonic() + SANDBOX_CACHE_SECONDS


class Authorizer:
    """The dependency behind ``require``; its ``roles`` are read by :func:`route_roles`."""

    def __init__(self, roles: frozenset[Role], sandbox_must_exist: bool = True):
        self.roles = roles
        self.sandbox_must_exist = sandbox_must_exist

    # async: a request whose key and sandbox were seen lately (cdp/auth/service.py, the cache
    # below) needs no database here, so it runs on the event loop — a thread-pool hop less per
    # request (~0.1 ms of server CPU measured, of a trivial GET's ~2) — and opens no connection
    # (the handler does, in its own hop: single_hop); a miss opens the request's connection and
    # reads the database in the thread pool, as a sync dependency would
    async def __call__(
        self,
        request: Request,
        connection: RequestConnectionDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        x_sandbox: Annotated[str | None, Header(
            alias=SANDBOX_HEADER, description=_SANDBOX_HELP,
            # checked below (400 invalid_sandbox rather than 422), stated here for the OpenAPI document
            json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": 64})] = None,
    ) -> Principal:
        presented = credentials.credentials if credentials else None
        key = cached_key(connection.engine, presented)
        if key is None:
            key = await run_in_threadpool(lambda: authenticate(connection=connection.open(), key=presented))
        request.app.state.rate_limiter.take(key.id)  # 429 rate_limited past the key's limit
        sandbox = validate_sandbox_name(x_sandbox) if x_sandbox is not None else DEFAULT_SANDBOX
        if key.role not in self.roles:
            allowed = ", ".join(r.value for r in ALL_ROLES if r in self.roles)
            raise Forbidden(f"role {key.role.value!r} may not do this; allowed: {allowed}",
                            details={"role": key.role.value, "allowed_roles": [r.value for r in ALL_ROLES
                                                                               if r in self.roles]})
        if key.sandbox is not None and key.sandbox != sandbox:
            raise Forbidden(f"this key works only in sandbox {key.sandbox!r}; the request names sandbox {sandbox!r} "
                            f"({SANDBOX_HEADER} header)", code="sandbox_forbidden",
                            details={"key_sandbox": key.sandbox, "sandbox": sandbox})
        if self.sandbox_must_exist and not _sandbox_seen(connection.engine, sandbox):
            await run_in_threadpool(lambda: _require_sandbox_cached(connection.open(), sandbox))
        return Principal(key_id=key.id, name=key.name, role=key.role, key_sandbox=key.sandbox, sandbox=sandbox)

    def if_seen(self, request: Request) -> Principal | None:
        """What :meth:`__call__` answers for ``request`` when its key and sandbox were seen lately
        and every check passes — without the database, the thread pool or FastAPI's solving of the
        dependency (its bearer scheme, its header parameter); None when any of that does not hold
        (then ask :meth:`__call__`, which answers every error). The same checks in the same
        order; the rate limit's token is taken last, so a None takes none (429 as ``__call__``)."""
        authorization = request.headers.get("authorization")
        if not authorization:
            return None
        scheme, _, presented = authorization.partition(" ")  # as HTTPBearer(auto_error=False)
        presented = presented.strip()
        if not presented or scheme.lower() != "bearer":
            return None
        engine = request.app.state.engine
        key = cached_key(engine, presented)
        if key is None or key.role not in self.roles:
            return None
        x_sandbox = request.headers.get(SANDBOX_HEADER)
        if x_sandbox is None:
            sandbox = DEFAULT_SANDBOX
        else:
            try:
                sandbox = validate_sandbox_name(x_sandbox)
            except BadRequest:  # 400 invalid_sandbox, from __call__
                return None
        if key.sandbox is not None and key.sandbox != sandbox:
            return None
        if self.sandbox_must_exist and not _sandbox_seen(engine, sandbox):
            return None
        request.app.state.rate_limiter.take(key.id)  # 429 rate_limited past the key's limit
        return Principal(key_id=key.id, name=key.name, role=key.role, key_sandbox=key.sandbox, sandbox=sandbox)


def route_authorizer(route: APIRoute) -> Authorizer | None:
    """The Authorizer among a route's dependencies (None: it needs no key)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, Authorizer):
            return dependant.call
        stack.extend(dependant.dependencies)
    return None


def fast_path(answer):
    """Gives a route handler a fast path, used when its route is a :class:`FastPathRoute`:
    ``answer(request, authorizer)`` (async) answers the plain case — every parameter well formed,
    the key and sandbox seen lately (:meth:`Authorizer.if_seen`) — and returns None, having taken
    nothing from the request but its body, for anything else; FastAPI's handler then answers it,
    errors included. Put it above :func:`single_hop`."""
    def mark(endpoint):
        endpoint.cdp_fast_path = answer
        return endpoint
    return mark


class FastPathRoute(APIRoute):
    """A FastAPI route (its parameters, OpenAPI document and errors unchanged) whose handler, when
    marked with :func:`fast_path`, first tries the fast answer: a hot route's request then costs no
    dependency solving (FastAPI's ~20 % of a streamed record's event-loop time, bench/RESULTS.md
    session 15). Not with dependency overrides (tests) or FastAPI's telemetry: the generic path then."""

    def get_route_handler(self):
        generic = super().get_route_handler()
        answer = getattr(self.endpoint, "cdp_fast_path", None)
        if answer is None:
            return generic
        authorizer = route_authorizer(self)
        if authorizer is None:
            raise TypeError(f"{self.path}: a fast path is for routes that need a key")
        from fastapi.telemetry import get_telemetry_data

        async def handler(request: Request):
            if not request.app.dependency_overrides and get_telemetry_data() is None:
                response = await answer(request, authorizer)
                if response is not None:
                    return response
            return await generic(request)

        return handler


def require(*roles: Role, sandbox_must_exist: bool = True):
    """``Annotated[Principal, require(Role.admin)]`` or ``dependencies=[require(...)]``.
    ``sandbox_must_exist=False``: for the endpoints about sandboxes themselves, which work whatever
    ``X-Sandbox`` names (creating a sandbox while naming it there is fine)."""
    if not roles:
        raise ValueError("an endpoint must allow at least one role")
    return Depends(Authorizer(frozenset(roles), sandbox_must_exist), scope="function")


AnyRole = Annotated[Principal, require(*ALL_ROLES)]
Stewards = Annotated[Principal, require(Role.admin, Role.data_steward)]
Admins = Annotated[Principal, require(Role.admin)]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the full template, prefix included: /v1/datasets/{dataset_id}
    route: APIRoute
    roles: frozenset[Role] | None  # None: no key needed


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every API endpoint of the app (routers included), with the roles it allows."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            roles = route_roles(route)
            for method in sorted(context.methods or ()):
                found.append(Endpoint(method, context.path_format, route, roles))
    return found


def route_roles(route: APIRoute) -> frozenset[Role] | None:
    """The roles an endpoint allows, or None when it requires no key."""
    authorizer = route_authorizer(route)
    return None if authorizer is None else authorizer.roles
