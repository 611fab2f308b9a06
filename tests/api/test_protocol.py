"""The HTTP protocols of `cdp serve` (cdp/api/protocol.py), over a real socket: the one `cdp serve`
runs (httptools', a dependency) and h11's fallback answer what they cannot parse in the error shape,
and bound a header section that stays incomplete — without taking a large body, or a header section
that arrives in many pieces within the bound, for a large header section. Each protocol serves a
bare ASGI app on a loopback port in a thread of this process (tests/api/test_server.py runs the
whole `cdp serve`)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn

from cdp.api.protocol import (MAX_HEADER_BYTES, JsonErrorsH11Protocol, JsonErrorsHttpToolsProtocol,
                              _HeadWithBody, serving_protocol)


async def _echo(scope, receive, send):
    """200 with how many body bytes the request had."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"body_bytes": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module", params=["httptools", "h11"])
def port(request):
    protocol = JsonErrorsHttpToolsProtocol if request.param == "httptools" else JsonErrorsH11Protocol
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_echo, http=protocol, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                                          log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _exchange(port: int, pieces: list[bytes], *, answers: int = 1) -> list[tuple[int, dict, bytes]]:
    """Send ``pieces`` one by one (a pause between: separate reads for the server), then read
    ``answers`` responses, or until the server closes; (status, headers, body) each."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for piece in pieces:
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):  # answered and closed already
                break
            time.sleep(0.01)
        data = b""
        found: list[tuple[int, dict, bytes]] = []
        while len(found) < answers:
            head, separator, rest = data.partition(b"\r\n\r\n")
            if separator:
                status, *lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
                length = int(headers["content-length"])
                if len(rest) >= length:
                    found.append((int(status.split()[1]), headers, rest[:length]))
                    data = rest[length:]
                    continue
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            data += chunk
        return found


def test_serve_runs_the_httptools_protocol():
    assert serving_protocol() is JsonErrorsHttpToolsProtocol


def test_malformed_request_is_400_in_the_error_shape(port):
    [(status, headers, body)] = _exchange(port, [b"GARBAGE\r\n\r\n"])
    assert status == 400 and headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert json.loads(body)["error"] == {"code": "bad_request", "message": "the request is not valid HTTP/1.1",
                                         "details": {}}


def test_header_section_incomplete_past_the_bound_is_431(port):
    pieces = [b"GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "] + [b"x" * 2048] * 10  # 20 KiB, no end
    [(status, headers, body)] = _exchange(port, pieces)
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body)["error"] == {
        "code": "headers_too_large", "details": {"limit_bytes": MAX_HEADER_BYTES},
        "message": f"the request's headers are larger than {MAX_HEADER_BYTES} bytes altogether"}


def test_header_section_within_the_bound_in_many_pieces_is_served(port):
    lines = b"".join(b"X-Filler-%02d: %s\r\n" % (i, b"v" * 900) for i in range(15))  # ~13.9 KiB of headers
    request = b"GET /x HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"
    assert len(request) < MAX_HEADER_BYTES
    pieces = [request[i:i + 1000] for i in range(0, len(request), 1000)]
    [(status, _headers, body)] = _exchange(port, pieces)
    assert status == 200 and json.loads(body) == {"body_bytes": 0}


def test_pipelined_request_behind_a_large_body_is_not_taken_for_large_headers(port):
    """One read holds a 60 KB body and the start of the next request's headers: what counts toward
    the next request's bound is its own header section only."""
    body = b"b" * 60_000
    first = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    second = b"GET /x HTTP/1.1\r\nHost: x\r\nX-Second: yes\r\n\r\n"
    answers = _exchange(port, [first + second[:20], second[20:]], answers=2)
    assert [(status, json.loads(text)) for status, _, text in answers] == [
        (200, {"body_bytes": 60_000}), (200, {"body_bytes": 0})]


def test_keep_alive_requests_after_an_incomplete_section_count_afresh(port):
    """Many requests on one connection, each head split in two reads: no count carries over."""
    request = b"GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n"
    pieces = [part for _ in range(4) for part in (request[:5000], request[5000:])]
    answers = _exchange(port, pieces, answers=4)
    assert [status for status, _, _ in answers] == [200] * 4


class _Transport:
    def __init__(self):
        self.writes: list = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.writes.append("closed")

    def get_extra_info(self, name):
        return name


def test_a_response_head_goes_out_with_its_body_in_one_write():
    """The httptools protocol holds a response's head until its body (one send, one segment)."""
    loop = asyncio.new_event_loop()
    try:
        raw = _Transport()
        t = _HeadWithBody(raw, loop)
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert raw.writes == []
        t.write(b"body")
        t.write(b"more")
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
        loop.run_until_complete(asyncio.sleep(0))  # its flush finds nothing held
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
        assert t.get_extra_info("peername") == "peername"  # the rest is the transport's

        raw = _Transport()
        late = _HeadWithBody(raw, loop)
        late.write(b"head")  # a body that is late (a streamed answer): the head goes out at the next turn
        loop.run_until_complete(asyncio.sleep(0))
        assert raw.writes == [b"head"]

        raw = _Transport()
        closed = _HeadWithBody(raw, loop)
        closed.write(b"head")
        closed.close()  # what is held is written before the close
        assert raw.writes == [b"head", "closed"]
    finally:
        loop.close()
