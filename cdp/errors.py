"""Errors as data for the service and the command line: a code, a message and details.

Services raise these (``raise NotFound("dataset", id)``); the HTTP layer (cdp/api/errors.py)
turns every one into the single error shape ``{"error": {"code", "message", "details"}}`` with
the status code the class declares, and the CLI prints ``code: message``. The language has its
own error type (cdp.dsl.PqlError); the API wraps it as ``invalid_expression``.
"""

from __future__ import annotations

from typing import Any


class CdpError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}
        self.headers = headers

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class BadRequest(CdpError):
    status, code = 400, "bad_request"


class Unauthorized(CdpError):
    status, code = 401, "unauthorized"


class Forbidden(CdpError):
    status, code = 403, "forbidden"


class NotFound(CdpError):
    status, code = 404, "not_found"

    @classmethod
    def resource(cls, kind: str, identifier: Any, sandbox: str) -> NotFound:
        return cls(f"no {kind} {identifier!r} in sandbox {sandbox!r}",
                   details={"resource": kind, "id": identifier, "sandbox": sandbox})


class Conflict(CdpError):
    status, code = 409, "conflict"


class PayloadTooLarge(CdpError):
    status, code = 413, "payload_too_large"


class Unprocessable(CdpError):
    """Well-formed input that the rules refuse (an invalid expression, a profile that does not
    fit the schema, a schema that is not a schema)."""

    status, code = 422, "unprocessable"


class Unavailable(CdpError):
    status, code = 503, "unavailable"


class TooManyRequests(CdpError):
    """A key over its rate limit (cdp/api/ratelimit.py); ``Retry-After`` says when to come back."""

    status, code = 429, "rate_limited"
