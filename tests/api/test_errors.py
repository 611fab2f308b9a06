"""One error shape for every status, never a 500 for bad input, no stack traces to clients."""

from __future__ import annotations

import pytest

from tests.api.conftest import assert_error, make_settings


def test_400_body_is_not_json(api):
    for body in (b"{bad", b"", b"[1, 2", b"\xff\xfe"):
        response = api.post("/v1/datasets", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code in (400, 422), (body, response.text)
        if body:
            assert_error(response, 400, "invalid_json")


def test_400_invalid_sandbox(api):
    assert_error(api.get("/v1/datasets", sandbox="NOT VALID"), 400, "invalid_sandbox")


def test_401_and_403(api):
    assert_error(api.get("/v1/datasets", role=None), 401, "missing_api_key")
    assert_error(api.post("/v1/datasets", role="marketer", json={"name": "x", "kind": "event"}), 403, "forbidden")


def test_404_unknown_route_and_resource(api):
    error = assert_error(api.get("/v1/nothing-here"), 404, "not_found")
    assert "/v1/nothing-here" in error["message"]
    assert_error(api.client.get("/v2/datasets"), 404, "not_found")
    error = assert_error(api.get("/v1/datasets/999999"), 404, "not_found")
    assert error["details"] == {"resource": "dataset", "id": 999999, "sandbox": api.sandbox}


def test_405_wrong_method(api):
    assert_error(api.request("PATCH", "/v1/schema", json={}), 405, "method_not_allowed")


def test_409_conflict(api):
    api.post("/v1/datasets", json={"name": "once", "kind": "event"})
    assert_error(api.post("/v1/datasets", json={"name": "once", "kind": "event"}), 409, "dataset_exists")


def test_413_body_too_large(api):
    limit = api.app.state.settings.max_body_bytes
    big = b'{"name": "' + b"x" * limit + b'", "kind": "event"}'
    error = assert_error(api.post("/v1/datasets", content=big, headers={"Content-Type": "application/json"}),
                         413, "payload_too_large")
    assert error["details"] == {"limit_bytes": limit}

    def chunks():  # no Content-Length: refused while reading
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    response = api.post("/v1/datasets", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")
    # the check comes before authentication and parsing
    assert_error(api.post("/v1/datasets", role=None, content=big), 413, "payload_too_large")
    assert api.get("/v1/datasets").status_code == 200


def test_body_limit_is_configurable(sqlite_url_factory):
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from tests.api.conftest import ADMIN_KEY

    app = create_app(make_settings(sqlite_url_factory(), max_body_bytes=2048))
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        body = {"expression": "loyalty.points > 1 " + " " * 1500}
        assert client.post("/v1/expressions/check", json=body, headers=headers).status_code == 200
        body = {"expression": "loyalty.points > 1 " + " " * 2100}
        assert_error(client.post("/v1/expressions/check", json=body, headers=headers), 413, "payload_too_large")


def test_422_validation_error_lists_locations(api):
    error = assert_error(api.post("/v1/datasets", json={"name": 5, "kind": "table", "labels": "C1", "x": 1}), 422,
                         "validation_error")
    locations = {tuple(e["loc"]) for e in error["details"]["errors"]}
    assert {("body", "name"), ("body", "kind"), ("body", "labels"), ("body", "x")} <= locations
    assert all(set(e) == {"loc", "message", "type"} for e in error["details"]["errors"])


ODD_BODIES = [
    b"null", b"1e999", b'"text"', b"[]", b"[" * 5000 + b"]" * 5000, b'{"expression": "' + b"(" * 3000 + b'"}',
    b'{"expression": "loyalty.points > 99999999999999999999999999999999999"}',
    b'{"expression": "\\u0000"}', b'{"expression": "\\ud800 = 1"}',
    b'{"expression": "' + b" or ".join([b"loyalty.points > 1"] * 3000) + b'"}',
]


@pytest.mark.parametrize("body", ODD_BODIES, ids=range(len(ODD_BODIES)))
def test_odd_input_is_never_a_500(api, body):
    for path in ("/v1/expressions/check", "/v1/profiles/evaluate", "/v1/datasets", "/v1/keys"):
        response = api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (path, response.text[:500])
        assert_error(response, response.status_code)


ODD_PROFILES = [
    {"id": "p", "attributes": {"loyalty": None}},
    {"id": "p", "attributes": {"loyalty": {"points": 1e308}}},
    {"id": "p", "attributes": {"loyalty": {"points": True}}},
    {"id": "p", "attributes": {"person": {"birth_date": "1990-02-30"}}},
    {"id": "p", "attributes": {"interests": "running"}},
    {"id": "p", "attributes": {"a": {"b": {"c": {"d": {}}}}}},
    {"id": "p", "events": "none"},
    {"id": "p", "events": [1]},
    {"id": "p", "events": [{"id": 1, "type": "login", "timestamp": "2026-01-01T00:00:00Z"}]},
    {"id": "p", "events": [{"id": "e", "type": "login", "timestamp": "2026-01-01T00:00:00+25:00"}]},
    {"id": "p", "identities": {"email": "x"}},
    {"id": 5},
]


@pytest.mark.parametrize("profile", ODD_PROFILES, ids=range(len(ODD_PROFILES)))
def test_odd_profiles_are_never_a_500(api, profile):
    response = api.post("/v1/profiles/evaluate", json={
        "expression": 'loyalty.points > 1 or person.birth_date < today() or "running" in interests',
        "profile": profile})
    assert response.status_code in (200, 422), response.text[:500]
    if response.status_code == 422:
        assert_error(response, 422)


def test_500_is_the_same_shape_without_a_traceback(sqlite_url_factory):
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from cdp.api.deps import require
    from cdp.auth import Role
    from tests.api.conftest import ADMIN_KEY

    app = create_app(make_settings(sqlite_url_factory()))

    @app.get("/v1/boom", dependencies=[require(Role.reader, Role.admin)])
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/boom", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    error = assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.text and "RuntimeError" not in response.text
    assert error["details"]["request_id"] in error["message"]


def test_database_trouble_is_503_not_500(sqlite_url_factory):
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from tests.api.conftest import ADMIN_KEY

    url = sqlite_url_factory()
    app = create_app(make_settings(url))
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with app.state.engine.begin() as connection:  # a database in trouble
            connection.exec_driver_sql("DROP TABLE datasets")
        response = client.get("/v1/datasets", headers=headers)
    error = assert_error(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "1" and "datasets" not in error["message"]


def test_431_headers_too_large(api):
    error = assert_error(api.get("/v1/schema", headers={"Authorization": "Bearer " + "x" * 100_000}), 431,
                         "headers_too_large")
    assert error["details"] == {"limit_bytes": 16384}
    assert api.get("/v1/schema", headers={"X-Note": "x" * 10_000}).status_code == 200
