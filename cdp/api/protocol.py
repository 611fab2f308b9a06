"""The HTTP protocol `cdp serve` runs, answering the requests it cannot parse (before the app sees
them) in the one error shape instead of uvicorn's plain text.

:func:`serving_protocol` picks it: uvicorn's httptools protocol (llhttp, a C parser) when httptools
is installed — it is a dependency; measured in bench/RESULTS.md (issue 16), uvicorn's pure-Python
h11 parser and writer were a tenth of a trivial request's server CPU — and the h11 protocol
otherwise. Both behave the same to a client:

* a header section still incomplete past :data:`MAX_HEADER_BYTES` (a 100 KB ``Authorization``
  header arriving in pieces, say) is 431 ``headers_too_large``, as the app's own check answers one
  that arrived whole (cdp/api/middleware.py ``RequestGate``);
* any other malformed request is 400 ``bad_request``.

Both close the connection, as uvicorn does. h11 bounds an incomplete header section itself
(``h11_max_incomplete_event_size``); llhttp has no such bound, so :class:`JsonErrorsHttpToolsProtocol`
counts the bytes of the section while it is incomplete (see there).
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


def _error_response(status: int) -> bytes:
    """The whole answer, status line to body, for a request the protocol refuses."""
    body = error_body(status)
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]), b"content-type: application/json\r\n",
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body])


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


class _HeadWithBody:
    """The transport as one response sees it: the response's head (uvicorn writes the status line
    and headers as soon as the app starts its answer) is held until the body's first bytes, and
    both go out in one write — one send(2) and one TCP segment for a small answer instead of two,
    on both ends (measured on the trivial GET: uvicorn's send was a third of the event loop's
    CPU). A head whose body is late (a streamed answer) goes out at the loop's next turn; closing
    writes what is held first. Everything else is the transport's."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport, loop):
        self._transport, self._loop = transport, loop
        self._held: bytes | None = b""  # b"": nothing written yet; None: the head went out

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._transport.write(data)
        elif held:  # the head, with the first bytes after it
            self._held = None
            self._transport.write(held + data)
        else:  # the response's first write: its head
            self._held = data
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: serving_protocol() answers the h11 protocol
    HttpToolsProtocol = None  # type: ignore[assignment, misc]


if HttpToolsProtocol is not None:
    class JsonErrorsHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[valid-type, misc]
        """uvicorn's httptools protocol with the error shape and the bound on an incomplete header
        section.

        The bound: llhttp reports a request line or a header only once it is complete, and keeps a
        partial one to itself, so the bytes are counted as they arrive. While a header section is
        incomplete at the end of a read, all of that read after the section's first byte belongs
        to it. Where in the read the section began is what the earlier messages of the read left:
        their header sections (request line and headers as llhttp reports them, each header
        counted as ``name: value\\r\\n``) and their bodies (``on_body``). A pipelined request behind
        a large body is therefore not taken for a large header section; what is not counted
        (chunked encoding's size lines, extra blanks around a header's value) makes the count a few
        bytes high, never low."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._in_head = False  # a header section has begun and is not complete
            self._head_bytes = 0  # bytes of the incomplete section in the reads before this one
            self._began_at: int | None = None  # where in this read the current section began
            self._read_used = 0  # bytes of this read taken by earlier messages
            self._head_size = 0  # the current section as reported so far (request line, headers)

        def data_received(self, data: bytes) -> None:
            self._began_at = None
            self._read_used = 0
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return
            if self._began_at is None:  # the whole read is more of a section begun before
                self._head_bytes += len(data)
            else:
                self._head_bytes = len(data) - self._began_at
            if self._head_bytes > MAX_HEADER_BYTES:
                self.logger.warning("Request headers larger than %d bytes.", MAX_HEADER_BYTES)
                self.transport.write(_error_response(431))
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            self.transport.write(_error_response(400))
            self.transport.close()

        def on_message_begin(self) -> None:
            self._in_head = True
            self._began_at = self._read_used
            self._head_bytes = 0
            self._head_size = len(b" HTTP/1.1\r\n\r\n")
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._head_size += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_size += len(name) + len(value) + 4
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            size = self._head_size + len(self.parser.get_method()) + 1
            # the section's bytes in this read: all of it if it began here, else what earlier reads lacked
            self._read_used = self._began_at + size if self._began_at is not None else max(0, size - self._head_bytes)
            before = self.cycle
            super().on_headers_complete()
            if self.cycle is not None and self.cycle is not before:  # a new request's cycle (not an upgrade)
                self.cycle.transport = _HeadWithBody(self.transport, self.loop)

        def on_body(self, body: bytes) -> None:
            self._read_used += len(body)
            super().on_body(body)
else:
    JsonErrorsHttpToolsProtocol = None  # type: ignore[assignment, misc]


def serving_protocol() -> type:
    """The protocol class `cdp serve` runs: httptools' when installed, else h11's."""
    return JsonErrorsHttpToolsProtocol if JsonErrorsHttpToolsProtocol is not None else JsonErrorsH11Protocol
