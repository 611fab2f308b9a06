"""The HTTP protocol `cdp serve` runs: uvicorn's h11 protocol, answering the requests it cannot
parse (before the app sees them) in the one error shape instead of uvicorn's plain text.

A header section still incomplete past :data:`MAX_HEADER_BYTES` (a 100 KB ``Authorization``
header arriving in pieces, say) is 431 ``headers_too_large``, as the app's own check answers one
that arrived whole (cdp/api/middleware.py ``HeaderSizeLimit``); any other malformed request is
400 ``bad_request``. Both close the connection, as uvicorn does.
"""

from __future__ import annotations

import json
import sys

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 * 1024  # the request line and headers; h11's default bound on an incomplete event

_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


def error_body(status: int) -> bytes:
    if status == 431:
        code, message = "headers_too_large", (f"the request's headers are larger than {MAX_HEADER_BYTES} bytes "
                                              f"altogether")
        details: dict = {"limit_bytes": MAX_HEADER_BYTES}
    else:
        code, message, details = "bad_request", "the request is not valid HTTP/1.1", {}
    return json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()


class JsonErrorsH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from inside `except h11.RemoteProtocolError`, so the error is at hand
        error = sys.exc_info()[1]
        hint = getattr(error, "error_status_hint", 400)
        status = 431 if hint == 431 else 400
        body = error_body(status)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=status, headers=headers, reason=_REASONS[status]), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
