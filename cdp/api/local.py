"""The app on a loopback port of its own, in a thread of this process, for as long as a block
runs: how ``cdp serve --demo`` loads the demo data over HTTP — through the same routes, jobs and
ingestion a client uses — before the real server starts listening."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


@contextmanager
def serve_in_thread(app: FastAPI, *, start_timeout: float = 60) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT``); stops the server (and the app's workers) after."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    from cdp.api.protocol import MAX_HEADER_BYTES, serving_protocol

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", http=serving_protocol(),
                                           h11_max_incomplete_event_size=MAX_HEADER_BYTES))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="cdp-local-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the local server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
