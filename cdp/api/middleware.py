"""ASGI middleware (:class:`RequestGate`, one layer): request metrics, the header size limit, no NUL in
the URL and the request-body size limit.

Headers larger than ``MAX_HEADER_BYTES`` altogether (a 100 KB ``Authorization`` header, say) are
431 ``headers_too_large`` in the error shape, whichever sees them first: this middleware, or the
HTTP protocol of `cdp serve` (cdp/api/protocol.py), which refuses a header section still
incomplete past the same bound — which of the two depends only on how the bytes arrived.

The body limit is enforced before anything parses the body: a ``Content-Length`` over the
limit is refused at once, and a body without one (chunked) is read up to the limit and refused
as soon as it passes it — 413 ``payload_too_large`` in the one error shape. Within the limit,
the body is buffered and handed on unchanged.

File uploads (the routes named in ``file_routes``: batch files) are not held to the body limit
but to the file limit plus the body limit (room for the other form fields), and they are not
buffered here: the body streams through to the multipart parser, which spools the file to a
temporary file, while this middleware counts the bytes. A ``Content-Length`` over that bound is
refused at once; a body that passes it while streaming is cut there — 413 ``file_too_large``
either way, sent by this middleware; the application then sees the client as gone and its own
answer is dropped. The exact file limit is checked by the upload endpoint as it reads the file
(cdp/ingestion/uploads.py :func:`read_upload`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp.observability.metrics import Metrics
from cdp.api.protocol import MAX_HEADER_BYTES, error_body

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


async def _send_error(send: Send, status: int, code: str, message: str, details: dict) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _template_pattern(template: str) -> re.Pattern:
    """``/v1/datasets/{dataset_id}/batches`` → a pattern matching its paths."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "/?")


async def _declared_length_fits(scope: Scope, send: Send, limit: int, code: str, too_large: tuple[str, dict]) -> bool:
    """False (and the error sent) when Content-Length is malformed (400) or over ``limit`` (413)."""
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is None:
        return True
    try:
        length = int(declared)
    except ValueError:
        await _send_error(send, 400, "bad_request", "invalid Content-Length header", {})
        return False
    if length > limit:
        await _send_error(send, 413, code, *too_large)
        return False
    return True


class RequestGate:
    """cdp's one ASGI middleware: per request, in this order — the request's metrics (outermost:
    the 413s and 431s below are counted too), the header size limit (431), no NUL in the URL
    (422), the body size limit (413; uploads to the file limit, streamed) — one layer instead of
    four, each costing the event loop an await and a frame a request (issue 16)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_bytes: int, file_routes: Iterable[tuple[str, str]] = (),
                 max_file_bytes: int | None = None, max_header_bytes: int = MAX_HEADER_BYTES):
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.max_file_bytes = max_file_bytes if max_file_bytes is not None else max_bytes
        self.file_routes = [(method, _template_pattern(template)) for method, template in file_routes]
        self.max_header_bytes = max_header_bytes
        self._templates: dict[int, str] | None = None

    # ---- metrics ----------------------------------------------------------------------------

    def _template(self, scope: Scope) -> str:
        """The full route template of the matched route (``scope["route"]`` holds the route as
        declared in its router, without the prefixes it was included under)."""
        route = scope.get("route")
        if route is None:
            return "unmatched"
        if self._templates is None:
            from cdp.api.deps import endpoints

            self._templates = {id(e.route): e.path for e in endpoints(scope["app"])}
        return self._templates.get(id(route)) or getattr(route, "path", None) or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._checked(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(scope["method"], self._template(scope), status,
                                         time.perf_counter() - started)

    # ---- the limits -------------------------------------------------------------------------

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers") or ()
        if sum(len(name) + len(value) + 4 for name, value in headers) > self.max_header_bytes:  # "N: V\r\n"
            body = error_body(431)
            await send({"type": "http.response.start", "status": 431,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        # a path or query string holding NUL (%00) is 422 validation_error: no stored text holds NUL
        # (PostgreSQL cannot), and the OpenAPI document's string parameters say so with a pattern
        # (cdp/api/app.py)
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _send_error(send, 422, "validation_error", "the URL may not contain the NUL character (%00)",
                              {"errors": [{"loc": ["path" if "\x00" in scope["path"] else "query"],
                                           "message": "may not contain NUL", "type": "string_pattern_mismatch"}]})
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        if self._is_upload(scope):
            await self._upload(scope, receive, send)
            return
        too_large = (f"the request body is larger than {self.max_bytes} bytes (CDP_MAX_BODY_BYTES)",
                     {"limit_bytes": self.max_bytes})
        if not await _declared_length_fits(scope, send, self.max_bytes, "payload_too_large", too_large):
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "payload_too_large", *too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _is_upload(self, scope: Scope) -> bool:
        return any(scope["method"] == method and pattern.fullmatch(scope["path"])
                   for method, pattern in self.file_routes)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_file_bytes + self.max_bytes
        too_large = (f"the upload is larger than {limit} bytes: a batch file may hold {self.max_file_bytes} bytes "
                     f"(CDP_MAX_FILE_BYTES) and the rest of the form {self.max_bytes} (CDP_MAX_BODY_BYTES)",
                     {"limit_bytes": self.max_file_bytes, "request_limit_bytes": limit})
        if not await _declared_length_fits(scope, send, limit, "file_too_large", too_large):
            return
        size = 0
        refused = answered = started = False

        async def counting() -> Message:
            nonlocal size, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = True
                    if not started:
                        answered = True
                        await _send_error(send, 413, "file_too_large", *too_large)
                    return {"type": "http.disconnect"}  # the parser stops: the client is gone as far as it knows
            return message

        async def unless_answered(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting, unless_answered)
