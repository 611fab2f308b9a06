"""``cdp demo``: the Luma story against a real ``cdp serve`` — one it starts on a free local port
(on a fresh SQLite file, or the database given), or one already running (``--url``) — in a
sandbox of its own (``luma-demo``, or ``luma-demo-2`` … when taken), with a local webhook receiver
standing in for the email and ad platforms. Narrated for people, or a JSON transcript for tools."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, TextIO

from cdp.demo.activation import SECRET
from cdp.demo.client import ApiError, Client
from cdp.demo.narrate import Narrator
from cdp.demo.receiver import Receiver
from cdp.demo.story import LAST_STEP, Step, Story, play

SANDBOX = "luma-demo"
TRANSCRIPT_VERSION = 1


class DemoError(Exception):
    """The demo could not run (no server, a refused key …): one line for the user."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(database_url: str | None, *, timeout: float = 120) -> Iterator[tuple[str, str]]:
    """``cdp serve`` in a subprocess on a free port: yields (base URL, admin key). Without a
    database URL it runs on an SQLite file in a temporary folder, removed after."""
    from cdp.auth.service import generate_key

    with tempfile.TemporaryDirectory(prefix="cdp-demo-") as folder:
        key = generate_key()
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_") or k == "CDP_PG_BIN"}
        env.update({"CDP_DATABASE_URL": database_url or f"sqlite:///{folder}/cdp.db", "CDP_BOOTSTRAP_ADMIN_KEY": key,
                    "CDP_DATA_DIR": folder})
        log_path = Path(folder) / "serve.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, "-c", "from cdp.cli import main; main()", "serve", "--port",
                                        str(port), "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                                       stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise DemoError(f"cdp serve exited ({process.returncode}): {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise DemoError(f"cdp serve did not answer within {timeout:.0f} s")
                time.sleep(0.1)
            yield base, key
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _own_sandbox(client: Client) -> str:
    for n in range(1, 100):
        name = SANDBOX if n == 1 else f"{SANDBOX}-{n}"
        try:
            client.post("/v1/sandboxes", {"name": name, "description": "cdp demo: the Luma story"})
            return name
        except ApiError as exc:
            if exc.status != 409:
                raise DemoError(f"cannot create the demo's sandbox: {exc}") from None
    raise DemoError(f"sandboxes {SANDBOX} to {SANDBOX}-99 exist already")


def run_demo(*, url: str | None, key: str | None, database_url: str | None, until: int = LAST_STEP,
             as_json: bool = False, profiles: int = 1000, colour: bool = False, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr) -> int:
    """Play the story; 0 when every step ran, 1 when one failed (the transcript says where)."""
    narrator = Narrator(out if not as_json else err, err, colour=colour, until=until)
    transcript: dict[str, Any] = {"cdp_demo": TRANSCRIPT_VERSION, "until": until, "profiles": profiles, "steps": []}
    steps: list[Step] = []
    code = 0
    with ExitStack() as stack:
        try:
            if url is None:
                narrator.start(0, "starting cdp serve")
                url, key = stack.enter_context(local_server(database_url))
            elif not key:
                raise DemoError("--url needs an admin key: --key, or CDP_DEMO_KEY in the environment")
            admin = Client(url, key)
            sandbox = _own_sandbox(admin)
            receiver = stack.enter_context(Receiver(SECRET))
            transcript.update({"url": url, "sandbox": sandbox, "receiver": receiver.url})
            story = Story(admin.in_sandbox(sandbox), start=datetime.now(timezone.utc).replace(microsecond=0),
                          receiver=receiver, profiles=profiles)

            def reported(step: Step) -> None:  # as each step ends: the failed one too, for the transcript
                steps.append(step)
                if not as_json:
                    narrator.step(step)

            play(story, until=until, on_start=narrator.start, on_step=reported, progress=narrator.progress)
            if not as_json:
                narrator.done(steps, url=url, sandbox=sandbox)
        except (DemoError, ApiError, TimeoutError, OSError) as exc:
            transcript["error"] = str(exc)
            narrator.failed(str(exc))
            code = 1
    transcript["steps"] = [s.as_dict() for s in steps]
    transcript["ok"] = code == 0
    if as_json:
        out.write(json.dumps(transcript, ensure_ascii=False, default=str) + "\n")
        out.flush()
    return code
