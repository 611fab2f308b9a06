"""A webhook receiver on a loopback port: the stand-in for Luma's email and ad platforms in
``cdp demo``. It keeps every POST it gets (per path), checks its ``X-CDP-Signature`` against the
destination's secret, and answers 200 — as a platform's endpoint would (API.md, "Destinations and
activation")."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, secret: str):
        self.secret = secret.encode()
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-CDP-Signature", ""), expected)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
                with receiver.lock:
                    receiver.received.setdefault(self.path, []).append({"signed": signed, "payload": payload})
                self.send_response(200 if signed else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet: the demo narrates
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="cdp-demo-receiver", daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def changes(self, path: str) -> list[dict]:
        """Every change received at ``path`` from correctly signed deliveries, each delivery once."""
        with self.lock:
            posts = list(self.received.get(path, []))
        seen, out = set(), []
        for post in posts:
            payload = post["payload"]
            if not post["signed"] or not isinstance(payload, dict) or payload.get("delivery_id") in seen:
                continue
            seen.add(payload.get("delivery_id"))
            out += payload.get("changes") or []
        return out
