"""A real `cdp serve` in a subprocess on a free local port, on SQLite and on PostgreSQL: start-up
(migrations, the bootstrap key printed once), health, auth and a schema round trip over HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

CDP = str(Path(sys.executable).parent / "cdp")
KEY = re.compile(r"cdp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_") or k == "CDP_PG_BIN"}
    return {**env, "CDP_DATABASE_URL": url, **extra}


class Server:
    """``cdp serve`` on a free port: on the database ``url``, or (url None) on what ``env`` says
    (the default: ``var/cdp.db`` under ``cwd``); ``args`` go on its command line."""

    def __init__(self, url: str | None, log: Path, *, cwd: Path | None = None, env: dict | None = None,
                 args: list[str] | tuple[str, ...] = (), timeout: float = 60):
        self.url = url
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = env if env is not None else _environment(url)
        with open(log, "w") as stderr:
            self.process = subprocess.Popen([CDP, "serve", "--port", str(self.port), "--log-level", "warning",
                                             *args], cwd=cwd, env=environment, stdout=subprocess.DEVNULL,
                                            stderr=stderr)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"cdp serve exited {self.process.returncode}: {log.read_text()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"cdp serve did not answer within {timeout} s: {log.read_text()}")
            time.sleep(0.1)

    @property
    def stderr(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind (open transactions die with the process)."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, sqlite_url_factory, tmp_path_factory):
    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    running = Server(url, tmp_path_factory.mktemp("serve") / "stderr.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin_key(server) -> str:
    [key] = KEY.findall(server.stderr)
    return key


def test_health_without_a_key(server):
    response = httpx.get(server.base + "/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert "database upgraded from migration none (empty) to" in server.stderr


def test_auth(server, admin_key):
    response = httpx.get(server.base + "/v1/schema")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"
    response = httpx.get(server.base + "/v1/schema", headers={"Authorization": "Bearer " + admin_key[:-2] + "xx"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    response = httpx.get(server.base + "/v1/schema", headers={"Authorization": "Bearer " + admin_key})
    assert response.status_code == 200


def _cdp(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CDP, *args], check=False, env=_environment(server.url), capture_output=True, text=True,
                          timeout=60)


def test_a_key_made_by_the_command_line_works_with_its_role(server, admin_key):
    refused = _cdp(server, "keys", "create", "--role", "reader", "--sandbox", "cli")  # no such sandbox yet
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("unknown_sandbox: no sandbox 'cli'"), refused.stderr
    made = _cdp(server, "sandboxes", "create", "cli", "--description", "keys made by the command line")
    assert made.returncode == 0 and made.stdout == "created sandbox cli\n", made.stderr
    again = _cdp(server, "sandboxes", "create", "cli")
    assert again.returncode == 1 and again.stderr.startswith("sandbox_exists: "), again.stderr
    invalid = _cdp(server, "sandboxes", "create", "Not Valid")
    assert invalid.returncode == 1 and invalid.stderr.startswith("invalid_sandbox: "), invalid.stderr
    assert "cli" in _cdp(server, "sandboxes", "list").stdout.split()
    created = _cdp(server, "keys", "create", "--role", "reader", "--sandbox", "cli")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert KEY.fullmatch(key) and "shown only this once" in created.stderr
    headers = {"Authorization": f"Bearer {key}", "X-Sandbox": "cli"}
    assert httpx.get(server.base + "/v1/schema", headers=headers).status_code == 200
    response = httpx.put(server.base + "/v1/schema", headers=headers, json={"profile": {}})
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    response = httpx.get(server.base + "/v1/schema", headers={**headers, "X-Sandbox": "prod"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "sandbox_forbidden"


def test_schema_round_trip(server, admin_key):
    headers = {"Authorization": f"Bearer {admin_key}", "X-Sandbox": "roundtrip"}
    assert httpx.get(server.base + "/v1/schema", headers=headers).json()["error"]["code"] == "unknown_sandbox"
    created = httpx.post(server.base + "/v1/sandboxes", headers=headers, json={"name": "roundtrip"})
    assert created.status_code == 201, created.text
    schema = httpx.get(server.base + "/v1/schema", headers=headers).json()
    assert schema["is_default"] is True
    body = {k: schema[k] for k in ("profile", "event", "event_types", "enums")}
    body["profile"]["shoe_size"] = "number"
    replaced = httpx.put(server.base + "/v1/schema", headers=headers, json=body)
    assert replaced.status_code == 200, replaced.text
    read = httpx.get(server.base + "/v1/schema", headers=headers).json()
    assert read == replaced.json() and read["version"] == 1 and read["profile"]["shoe_size"] == "number"
    checked = httpx.post(server.base + "/v1/expressions/check", headers=headers, json={"expression": "shoe_size >= 42"})
    assert checked.json()["canonical"] == "shoe_size >= 42"
    body["profile"]["shoe_size"] = "string"  # retyping is fine while the sandbox holds no data
    assert httpx.put(server.base + "/v1/schema", headers=headers, json=body).json()["version"] == 2


def test_openapi_is_served(server):
    document = httpx.get(server.base + "/openapi.json").json()
    assert "/v1/schema" in document["paths"] and "/v1/datasets/{dataset_id}" in document["paths"]


def test_restart_prints_no_new_key_and_keeps_data(sqlite_url_factory, tmp_path):
    url = sqlite_url_factory()
    first = Server(url, tmp_path / "first.log")
    try:
        [key] = KEY.findall(first.stderr)
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(first.base + "/v1/datasets", headers=headers, json={"name": "Web events", "kind": "event"})
        assert created.status_code == 201
    finally:
        first.stop()
    second = Server(url, tmp_path / "second.log")
    try:
        assert KEY.findall(second.stderr) == [] and "upgraded" not in second.stderr
        listed = httpx.get(second.base + "/v1/datasets", headers=headers).json()
        assert [d["name"] for d in listed["items"]] == ["Web events"]
    finally:
        second.stop()


def test_refusal_to_start_says_why(sqlite_url_factory):
    result = subprocess.run([CDP, "serve", "--port", str(_free_port())], check=False, capture_output=True, text=True,
                            timeout=60,
                            env=_environment(sqlite_url_factory(), CDP_MIGRATE_ON_START="false"))
    assert result.returncode == 1
    assert re.match(r"cannot_start: the database .* is at migration none \(empty\), this cdp needs '\w+'; start "
                    r"with CDP_MIGRATE_ON_START=true", result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def _raw(server, request: bytes) -> tuple[str, dict, bytes]:
    """Send bytes as they are; the status line, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}, body


def test_requests_the_server_cannot_parse_get_the_error_shape(server):
    import json

    response = httpx.get(server.base + "/v1/schema", headers={"Authorization": "Bearer " + "x" * 100_000})
    assert response.status_code == 431 and response.headers["content-type"] == "application/json"
    assert response.json()["error"] == {"code": "headers_too_large", "details": {"limit_bytes": 16384},
                                        "message": "the request's headers are larger than 16384 bytes altogether"}
    # the same header, sent in pieces: refused by the HTTP protocol before the app sees it
    status, headers, body = _raw(server, b"GET /v1/schema HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                         + b"x" * 20_000)
    assert status.startswith("HTTP/1.1 431") and headers["content-type"] == "application/json"
    assert json.loads(body) == response.json()
    status, headers, body = _raw(server, b"GARBAGE\r\n\r\n")
    assert status.startswith("HTTP/1.1 400") and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert httpx.get(server.base + "/healthz").status_code == 200  # and the server goes on


def _worker_processes(pid: int) -> list[int]:
    """uvicorn's worker processes under ``cdp serve`` (multiprocessing children running spawn_main)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except FileNotFoundError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts the server's processes in /proc")
def test_workers_are_processes_serving_one_database(postgres_url_factory, tmp_path):
    """``cdp serve --workers 2`` on PostgreSQL: two server processes on one port, and concurrent
    writers through them resolve one identity graph (the records of a person end in one profile)."""
    import concurrent.futures

    url = postgres_url_factory()
    key = "cdp_0123456789ab_" + "k" * 43
    running = Server(url, tmp_path / "stderr.log", env=_environment(url, CDP_BOOTSTRAP_ADMIN_KEY=key),
                     args=["--workers", "2"])
    try:
        deadline = time.monotonic() + 60
        while len(_worker_processes(running.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _worker_processes(running.process.pid)
        assert len(workers) == 2, running.stderr
        headers = {"Authorization": f"Bearer {key}"}
        dataset = httpx.post(running.base + "/v1/datasets", headers=headers,
                             json={"name": "web", "kind": "event"}).json()["id"]

        def send(n: int) -> int:
            with httpx.Client(base_url=running.base, headers=headers) as client:  # keep-alive, like a client
                accepted = 0
                for i in range(15):
                    person = (n * 15 + i) % 10
                    record = {"identities": [{"namespace": "ecid", "id": f"e-{person}"},
                                             {"namespace": "email", "id": f"p{person}@example.com"}],
                              "event": {"id": f"{n}-{i}", "type": "pageView", "timestamp": "2026-12-01T10:00:00Z"}}
                    response = client.post(f"/v1/datasets/{dataset}/records", json=record)
                    assert response.status_code == 200, response.text
                    accepted += response.json()["accepted"]
                return accepted

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(send, range(8))) == 120
        page = httpx.get(running.base + "/v1/profiles", headers=headers, params={"q": "e-", "limit": 100}).json()
        assert page["total"] == 10, page
        assert "ERROR" not in running.stderr and "Traceback" not in running.stderr, running.stderr
    finally:
        running.stop()
    assert all(not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
               for pid in workers)
