"""One error shape everywhere: ``{"error": {"code", "message", "details"}}``.

* cdp.errors.CdpError (raised by services) → its own status and code;
* request validation (FastAPI/pydantic) → 422 ``validation_error``, ``details.errors`` listing
  each problem with its location (``["body", "profile", "id"]``) — except a body that is not
  JSON at all: 400 ``invalid_json``, and a body sent with a Content-Type other than JSON to an
  endpoint that takes JSON: 415 ``unsupported_media_type``;
* unknown route → 404 ``not_found``; wrong method → 405 ``method_not_allowed``;
* a value the database refuses → 422 ``invalid_value``; a write that lost a race with another
  (unique constraint) → 409 ``conflict``;
* the database busy (SQLite's lock) or unreachable → 503 ``database_unavailable`` with
  ``Retry-After``;
* anything else → 500 ``internal_error`` with a request id; the traceback goes to the server log,
  never to the client.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdp.api.deps import endpoints
from cdp.errors import CdpError

log = logging.getLogger("cdp.api")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "validation_error", 429: "too_many_requests", 503: "unavailable"}


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable (`invalid_expression`, `not_found` …).")
    message: str = Field(description="For people.")
    details: dict[str, Any] = Field(default_factory=dict, description="Structured context; depends on the code.")


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=status, headers=headers)


def _validation_errors(errors: list[dict]) -> list[dict]:
    """Location, message and type of each problem (never the input itself or exception objects)."""
    return [{"loc": list(error.get("loc", ())), "message": error.get("msg", ""), "type": error.get("type", "")}
            for error in errors]


async def _cdp_error(_request: Request, exc: CdpError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if isinstance(exc.body, (bytes, bytearray)) and exc.body:
        # FastAPI hands a body over as JSON only when its Content-Type says JSON; otherwise it stays
        # bytes, and the endpoint (which takes JSON) cannot use it
        sent = request.headers.get("content-type") or "none"
        return error_response(415, "unsupported_media_type",
                              f"the request body must be JSON sent with `Content-Type: application/json` (got "
                              f"Content-Type {sent[:100]!r})", {"content_type": sent[:100]})
    if any(e.get("type") == "json_invalid" for e in errors):
        problem = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (problem.get("ctx") or {}).get("error", "")
        return error_response(400, "invalid_json", f"the request body is not valid JSON{': ' + reason if reason else ''}",
                              {"errors": _validation_errors([problem])})
    listed = _validation_errors(errors)
    first = listed[0] if listed else {"loc": [], "message": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(listed) - 1} more)" if len(listed) > 1 else ""
    return error_response(422, "validation_error", f"{where}: {first['message']}{more}" if where else first["message"],
                          {"errors": listed})


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "error")
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = allowed_methods(request) or [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",")
                                                if m.strip()]  # the docs pages, which are not API endpoints
        message = f"method {request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
        return error_response(405, code, message, {"allowed_methods": allowed}, headers={"Allow": ", ".join(allowed)})
    elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer when the JSON parser fails other than by a syntax error: Python refuses
        # integers of more than 4,300 digits (a guard against quadratic-time parsing)
        cause = exc.__cause__
        reason = ("a number has more than 4,300 digits" if isinstance(cause, ValueError) and "digits" in str(cause)
                  else str(cause or "unreadable")[:200])
        return error_response(400, "invalid_json", f"the request body cannot be read as JSON: {reason}")
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


def allowed_methods(request: Request) -> list[str]:
    """The methods of the path, as the OpenAPI document has them: of the endpoints whose template
    matches it, those with the fewest parameters (a concrete path, ``/v1/profiles/evaluate``, before
    a templated one, ``/v1/profiles/{profile_id}``). Starlette's own ``Allow`` names the methods of
    the first route that matched, whichever it was."""
    from starlette.routing import compile_path

    app = request.app
    templates = getattr(app.state, "endpoint_patterns", None)
    if templates is None:
        templates = {}
        for endpoint in endpoints(app):
            regex, _format, convertors = compile_path(endpoint.path)
            templates.setdefault((endpoint.path, regex, len(convertors)), set()).add(endpoint.method)
        app.state.endpoint_patterns = templates
    path = request.scope.get("path", request.url.path)
    matching: dict[int, set[str]] = {}
    for (_template, regex, parameters), methods in templates.items():
        if regex.match(path):
            matching.setdefault(parameters, set()).update(methods)
    return sorted(matching[min(matching)]) if matching else []


async def _data_error(_request: Request, exc: sa.exc.DataError) -> JSONResponse:
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
    return error_response(422, "invalid_value", f"a value cannot be stored: {reason}")


async def _integrity_error(_request: Request, exc: sa.exc.IntegrityError) -> JSONResponse:
    log.info("integrity error answered as 409: %s", exc)
    return error_response(409, "conflict", "the write conflicts with existing data (possibly a concurrent request); "
                                           "read the resource and retry")


async def _database_unavailable(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, getattr(exc, "orig", exc))
    return error_response(503, "database_unavailable", "the database is busy or unreachable; retry shortly",
                          headers={"Retry-After": "1"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex[:16]
    log.error("unhandled error (request id %s) on %s %s", request_id, request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", f"internal error; the server log has the details (request id "
                                                 f"{request_id})", {"request_id": request_id})


def install(app: FastAPI) -> None:
    app.add_exception_handler(CdpError, _cdp_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa.exc.DataError, _data_error)
    app.add_exception_handler(sa.exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sa.exc.OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)


# For route declarations: the error responses every authenticated endpoint may give.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed request (body not JSON, invalid X-Sandbox)."},
    401: {"model": ErrorResponse, "description": "Missing, invalid or revoked API key."},
    403: {"model": ErrorResponse, "description": "The key's role is not allowed here, or the key is bound to "
                                                 "another sandbox."},
    404: {"model": ErrorResponse, "description": "No such resource, or no such sandbox (`unknown_sandbox`)."},
    413: {"model": ErrorResponse, "description": "Request body larger than the limit."},
    415: {"model": ErrorResponse, "description": "A body sent with a Content-Type other than the one the endpoint "
                                                 "takes (`application/json`, or `multipart/form-data` for uploads)."},
    422: {"model": ErrorResponse, "description": "Invalid input (`validation_error` and domain codes)."},
    429: {"model": ErrorResponse, "description": "The API key is past its rate limit (`rate_limited`); `Retry-After` "
                                                 "says how many seconds to wait."},
}
