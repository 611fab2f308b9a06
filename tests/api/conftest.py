"""API test fixtures: the app in process (FastAPI's TestClient) on SQLite and on PostgreSQL.

One database per backend per test run, migrated by the app's own start-up; each test works in
a sandbox of its own, created for it through the API (``sandbox`` and ``api`` fixtures; a test
that needs another one calls :func:`new_sandbox`), so tests never see each other's data — the
isolation the service promises is what isolates the tests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)

ADMIN_KEY = "cdp_testadmin01_" + "A" * 40
ROLES = ("admin", "data_steward", "marketer", "reader")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, sqlite_url_factory) -> str:
    if request.param == "sqlite":
        return sqlite_url_factory()
    return request.getfixturevalue("postgres_url_factory")()


def make_settings(url: str, **overrides: Any):
    from cdp.settings import Settings

    return Settings(**{"database_url": url, "bootstrap_admin_key": ADMIN_KEY, **overrides})


@dataclass
class Api:
    """A TestClient with the test's sandbox and a key per role at hand."""

    client: Any
    keys: dict[str, str]
    sandbox: str = "prod"

    def headers(self, role: str | None = "admin", sandbox: str | None = None, key: str | None = None) -> dict:
        headers = {"X-Sandbox": sandbox or self.sandbox}
        key = key if key is not None else (self.keys[role] if role else None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def request(self, method: str, path: str, *, role: str | None = "admin", sandbox: str | None = None,
                key: str | None = None, headers: dict | None = None, **kwargs):
        all_headers = {**self.headers(role, sandbox, key), **(headers or {})}
        return self.client.request(method, path, headers=all_headers, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs):
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)

    @property
    def app(self):
        return self.client.app


@pytest.fixture(scope="session")
def service(database_url):
    """The app, started (migrations, bootstrap admin), with a key for each role valid everywhere."""
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    app = create_app(make_settings(database_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        keys = {"admin": ADMIN_KEY}
        for role in ROLES[1:]:
            response = client.post("/v1/keys", json={"name": f"test {role}", "role": role, "all_sandboxes": True},
                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert response.status_code == 201, response.text
            keys[role] = response.json()["key"]
        yield client, keys


def new_sandbox(api: Api, prefix: str = "o") -> str:
    """A new sandbox, created the way an admin creates one (sandboxes exist before use)."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    response = api.client.post("/v1/sandboxes", json={"name": name},
                               headers={"Authorization": f"Bearer {api.keys['admin']}"})
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def sandbox(service) -> str:
    client, keys = service
    return new_sandbox(Api(client, keys), "t")


@pytest.fixture
def api(service, sandbox) -> Api:
    client, keys = service
    return Api(client, keys, sandbox)


@pytest.fixture
def engine(api):
    """The app's own engine, to put data in place the way ingestion will."""
    return api.app.state.engine


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one error shape, with the expected status (and code); returns the error object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and isinstance(error["details"], dict)
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return error


def count_awaits(monkeypatch, owner: Any, name: str) -> list[int]:
    """The calls of the coroutine function ``owner.<name>`` during the test, counted in the one
    item of the returned list (which the test may reset)."""
    count = [0]
    original = getattr(owner, name)

    async def counting(*args, **kwargs):
        count[0] += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return count


def create_dataset(api, kind: str, name: str | None = None, **kwargs) -> int:
    """A new dataset of the test's sandbox; its id."""
    response = api.post("/v1/datasets", json={"name": name or f"{kind} data", "kind": kind}, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def store_profiles(engine, sandbox: str, documents: list[dict]) -> None:
    from cdp.engine.sql.loading import load_documents

    with engine.begin() as connection:
        load_documents(connection, documents, sandbox=sandbox)


SARAH = {"id": "sarah", "identities": [{"namespace": "email", "id": "sarah.rose@example.com"}],
         "attributes": {"person": {"first_name": "Sarah"}, "loyalty": {"tier": "bronze", "points": 120}},
         "events": [{"id": "e-1", "type": "addToCart", "timestamp": "2026-11-27T18:04:00Z", "channel": "web",
                     "product": {"sku": "MH01-L", "category": "mens", "size": "L", "price": 52.0}}]}
