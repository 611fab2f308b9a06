"""A lean keep-alive HTTP/1.1 load client for the benches (issue 16): one blocking socket per
client thread, the request written by hand, the answer's status line, ``Content-Length`` (or
chunks) and body read — nothing else is parsed, nothing pooled, no per-request objects but the
answer's bytes.

Why: the benches' clients share the machine's 2 cores with the server and the database. The
httpx client (``httpx2.Client``, a keep-alive connection per thread) spent 1.1–1.7 ms of CPU per
request (bench/RESULTS.md, issue 16), half of what the server spends on a trivial GET, so it
measured itself as much as the server. This one measures the same thing (a request sent on an
open connection → its whole answer received) at a fraction of the CPU; ``--client httpx``
(bench_baseline.py) keeps the old one for a side-by-side run.

    with LeanConnection("127.0.0.1", 8000, {"Authorization": "Bearer …"}) as c:
        status, body = c.request("POST", "/v1/datasets/1/records", b'{"records": [...]}')

The answer must carry ``Content-Length`` or ``Transfer-Encoding: chunked`` (uvicorn's always
does); ``Connection: close`` in an answer closes the socket and the next request opens another.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


class LeanConnection:
    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None, timeout: float = 300.0):
        self.address, self.timeout = (host, port), timeout
        fixed = {"Host": f"{host}:{port}", **(headers or {})}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("latin-1")
        self._sock: socket.socket | None = None
        self._buffer = b""

    @classmethod
    def to(cls, base: str, headers: dict[str, str] | None = None, timeout: float = 300.0) -> LeanConnection:
        """A connection to ``base`` (``http://host:port``)."""
        parts = urlsplit(base)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, headers, timeout)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buffer = sock, b""
        return sock

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request on the kept-alive connection."""
        sock = self._sock or self._connect()
        head = b"%s %s HTTP/1.1\r\n%s" % (method.encode(), path.encode(), self._fixed)
        if body or method not in ("GET", "HEAD"):
            head += b"Content-Length: %d\r\n" % len(body)
        sock.sendall(head + b"\r\n" + body)
        status, headers = self._read_head()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif b"content-length" in headers:
            data = self._read_exactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = self._read_chunked()
        else:
            raise ConnectionError(f"answer {status} has neither Content-Length nor chunks")
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, data

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            self.close()
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def _read_head(self) -> tuple[int, dict[bytes, bytes]]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self._buffer[:end].split(b"\r\n")
        self._buffer = self._buffer[end + 4:]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split(b" ", 2)[1]), headers

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
        return line

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self._read_line().split(b";", 1)[0], 16):
            parts.append(self._read_exactly(size))
            self._read_line()
        while self._read_line():  # trailers, then the empty line
            pass
        return b"".join(parts)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> LeanConnection:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
