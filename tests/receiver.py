"""A real HTTP receiver on a local port for the activation tests: it records every webhook POST,
checks its ``X-CDP-Signature`` against the secret, and can be told to fail (answer a status, be
slow, or be down)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, secret: str, port: int = 0):
        self.secret = secret.encode()
        self.posts: list[dict] = []  # every POST that arrived, in arrival order, with its answer
        self.bad_signatures = 0
        self.answer: Callable[[dict], int] = lambda body: 200  # the status to answer (per body)
        self.delay = 0.0
        self.delays: list[float] = []  # per request, first to last (then ``delay``)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server protocol
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                expected = "sha256=" + hmac.new(receiver.secret, raw, hashlib.sha256).hexdigest()
                good = hmac.compare_digest(self.headers.get("X-CDP-Signature", ""), expected)
                body = json.loads(raw)
                with receiver._lock:
                    delay = receiver.delays.pop(0) if receiver.delays else receiver.delay
                if delay:
                    time.sleep(delay)
                status = receiver.answer(body) if good else 401
                with receiver._lock:
                    receiver.bad_signatures += not good
                    receiver.posts.append({"body": body, "status": status, "at": time.monotonic()})
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:  # the sender gave up waiting (its timeout): it will send again
                    pass

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[dict]:
        """Bodies answered 2xx, first arrival of each delivery_id (what a receiver keeps)."""
        seen, found = set(), []
        with self._lock:
            for post in self.posts:
                if 200 <= post["status"] < 300 and post["body"]["delivery_id"] not in seen:
                    seen.add(post["body"]["delivery_id"])
                    found.append(post["body"])
        return found

    def changes(self) -> list[dict]:
        return [change for body in self.accepted() for change in body["changes"]]

    def wait(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver did not get what was expected in {timeout} s; it got "
                                     f"{json.dumps(self.posts)[:3000]}")
            time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
