"""Security rules, enumerated from the app itself so that a new route cannot slip past them:

* every route the app serves (API endpoints, pages, static mounts) has a rule in ROUTE_RULES —
  the roles it allows, or why it needs no key — and the app's rules equal the table;
* every endpoint that needs a key refuses a key bound to another sandbox (403 ``sandbox_forbidden``);
* every route that takes a body refuses one past the limit (413), and headers past theirs (431);
* rate limits per key: 429 ``rate_limited`` with ``Retry-After``, per key, described by the
  OpenAPI document;
* keys are stored as SHA-256 digests and compared with :func:`hmac.compare_digest`, for known and
  unknown ids alike.

tests/api/test_auth.py proves 401/403 per endpoint and role; tests/api/test_sandboxes.py that each
resource type's data is invisible from another sandbox; tests/api/test_logs_hold_no_secrets.py
that the server's log holds neither keys nor the demo's emails.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from tests.api.conftest import ADMIN_KEY, Api, assert_error, make_settings, new_sandbox
from tests.api.test_auth import _url

ALL = "admin data_steward marketer reader"
STEWARDS = "admin data_steward"
MARKETERS = "admin data_steward marketer"
ADMIN = "admin"
PUBLIC = "public"  # no key: says nothing about any sandbox's data
WRITE_KEY = "write key"  # the analytics SDKs' tracking API: a source's write key, not an API key

ROUTE_RULES = {
    ("GET", "/v1/schema"): ALL, ("PUT", "/v1/schema"): STEWARDS,
    ("POST", "/v1/datasets"): STEWARDS, ("GET", "/v1/datasets"): ALL, ("GET", "/v1/datasets/{dataset_id}"): ALL,
    ("PATCH", "/v1/datasets/{dataset_id}"): STEWARDS, ("DELETE", "/v1/datasets/{dataset_id}"): STEWARDS,
    ("POST", "/v1/datasets/{dataset_id}/records"): STEWARDS, ("POST", "/v1/datasets/{dataset_id}/batches"): STEWARDS,
    ("GET", "/v1/datasets/{dataset_id}/batches"): STEWARDS, ("GET", "/v1/batches/{batch_id}"): STEWARDS,
    ("GET", "/v1/batches/{batch_id}/errors"): STEWARDS, ("POST", "/v1/batches/{batch_id}/retry"): STEWARDS,
    ("GET", "/v1/identity/namespaces"): ALL, ("POST", "/v1/identity/namespaces"): STEWARDS,
    ("DELETE", "/v1/identity/namespaces/{code}"): STEWARDS, ("GET", "/v1/identity/settings"): ALL,
    ("PUT", "/v1/identity/settings"): STEWARDS, ("POST", "/v1/identity/simulate"): ALL,  # stores nothing
    ("POST", "/v1/expressions/check"): ALL, ("GET", "/v1/expressions/functions"): ALL,
    ("GET", "/v1/profiles"): ALL, ("GET", "/v1/profiles/lookup"): ALL, ("DELETE", "/v1/profiles/lookup"): STEWARDS,
    ("GET", "/v1/profiles/{profile_id}"): ALL, ("GET", "/v1/profiles/{profile_id}/events"): ALL,
    ("POST", "/v1/profiles/evaluate"): ALL, ("GET", "/v1/privacy/deletions"): STEWARDS,
    ("POST", "/v1/segments"): MARKETERS, ("GET", "/v1/segments"): ALL, ("POST", "/v1/segments/estimate"): ALL,
    ("GET", "/v1/segments/{key}"): ALL, ("PATCH", "/v1/segments/{key}"): MARKETERS,
    ("DELETE", "/v1/segments/{key}"): MARKETERS, ("GET", "/v1/segments/{key}/members"): ALL,
    ("GET", "/v1/segments/{key}/estimate"): ALL, ("GET", "/v1/segments/{key}/history"): ALL,
    ("POST", "/v1/segment-jobs"): MARKETERS, ("GET", "/v1/segment-jobs"): ALL, ("GET", "/v1/segment-jobs/{job_id}"): ALL,
    ("POST", "/v1/evaluate"): ALL,
    ("GET", "/v1/labels"): ALL, ("POST", "/v1/labels"): STEWARDS, ("GET", "/v1/labels/{name}"): ALL,
    ("PATCH", "/v1/labels/{name}"): STEWARDS, ("DELETE", "/v1/labels/{name}"): STEWARDS,
    ("GET", "/v1/marketing-actions"): ALL, ("POST", "/v1/marketing-actions"): STEWARDS,
    ("GET", "/v1/marketing-actions/{key}"): ALL, ("PATCH", "/v1/marketing-actions/{key}"): STEWARDS,
    ("DELETE", "/v1/marketing-actions/{key}"): STEWARDS,
    ("POST", "/v1/policies"): STEWARDS, ("GET", "/v1/policies"): ALL, ("POST", "/v1/policies/evaluate"): MARKETERS,
    ("GET", "/v1/policies/{policy_id}"): ALL, ("PATCH", "/v1/policies/{policy_id}"): STEWARDS,
    ("DELETE", "/v1/policies/{policy_id}"): STEWARDS,
    ("POST", "/v1/keys"): ADMIN, ("GET", "/v1/keys"): ADMIN, ("GET", "/v1/keys/{key_id}"): ADMIN,
    ("DELETE", "/v1/keys/{key_id}"): ADMIN, ("GET", "/v1/me"): ALL,
    ("POST", "/v1/sandboxes"): ADMIN, ("GET", "/v1/sandboxes"): ALL,
    ("GET", "/v1/source-types"): ALL, ("POST", "/v1/sources"): STEWARDS, ("GET", "/v1/sources"): ALL,
    ("GET", "/v1/sources/{source_id}"): ALL, ("PATCH", "/v1/sources/{source_id}"): STEWARDS,
    ("DELETE", "/v1/sources/{source_id}"): STEWARDS, ("POST", "/v1/sources/{source_id}/pause"): STEWARDS,
    ("POST", "/v1/sources/{source_id}/resume"): STEWARDS, ("POST", "/v1/sources/{source_id}/test"): STEWARDS,
    ("GET", "/v1/sources/{source_id}/preview"): STEWARDS, ("POST", "/v1/sources/{source_id}/run"): STEWARDS,
    ("GET", "/v1/sources/{source_id}/runs"): ALL, ("GET", "/v1/sources/{source_id}/runs/{run_id}"): ALL,
    ("GET", "/v1/sources/{source_id}/messages"): STEWARDS,
    # destinations hold secrets and reach outside: stewards define them; marketers activate onto them
    ("POST", "/v1/destinations"): STEWARDS, ("GET", "/v1/destinations"): ALL,
    ("GET", "/v1/destinations/{destination_id}"): ALL, ("PATCH", "/v1/destinations/{destination_id}"): STEWARDS,
    ("DELETE", "/v1/destinations/{destination_id}"): STEWARDS,
    ("GET", "/v1/destinations/{destination_id}/deliveries"): ALL,
    ("GET", "/v1/destinations/{destination_id}/deliveries/{delivery_id}"): ALL,
    ("POST", "/v1/destinations/{destination_id}/redeliver"): STEWARDS,
    ("POST", "/v1/destinations/{destination_id}/export"): STEWARDS,
    ("POST", "/v1/activations"): MARKETERS, ("GET", "/v1/activations"): ALL,
    ("GET", "/v1/activations/{activation_id}"): ALL, ("PATCH", "/v1/activations/{activation_id}"): MARKETERS,
    ("DELETE", "/v1/activations/{activation_id}"): MARKETERS, ("GET", "/v1/dataflow"): ALL,
    **{("POST", f"/sources/segment/v1/{call}"): WRITE_KEY
       for call in ("batch", "import", "identify", "track", "page", "screen", "group", "alias")},
    ("GET", "/healthz"): PUBLIC, ("GET", "/metrics"): ALL,
    # the API's documents and pages: no data (the web interface signs in with a key: tests/web)
    ("GET", "/openapi.json"): PUBLIC, ("GET", "/docs"): PUBLIC, ("GET", "/redoc"): PUBLIC,
    ("GET", "/docs/assets"): PUBLIC, ("GET", "/ui"): PUBLIC, ("GET", "/ui/static"): PUBLIC, ("GET", "/"): PUBLIC,
}
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _served(app) -> dict[tuple[str, str], str]:
    """Every route the app serves, with the rule it enforces (roles, or no API key)."""
    from cdp.api.deps import endpoints

    found = {(e.method, e.path): " ".join(r.value for r in sorted(e.roles, key=ALL.split().index)) if e.roles
             else None for e in endpoints(app)}
    for route in app.routes:
        if isinstance(route, Mount):
            found[("GET", route.path)] = None
        elif isinstance(route, Route) and not isinstance(route, APIRoute):
            found.update({(m, route.path): None for m in route.methods or () if m != "HEAD"})
    return found


def test_every_route_has_a_rule_and_enforces_it(api):
    served = _served(api.app)
    missing = set(served) - set(ROUTE_RULES)
    assert not missing, f"routes without a rule in ROUTE_RULES (who may call them?): {sorted(missing)}"
    assert not set(ROUTE_RULES) - set(served), "ROUTE_RULES names routes the app no longer serves"
    for route, rule in ROUTE_RULES.items():
        assert served[route] == (rule if rule not in (PUBLIC, WRITE_KEY) else None), route


def test_every_endpoint_refuses_a_key_bound_to_another_sandbox(api):
    from cdp.api.deps import endpoints

    bound = api.post("/v1/keys", json={"name": "bound admin", "role": "admin"}).json()["key"]
    other = new_sandbox(api)
    checked = 0
    for endpoint in endpoints(api.app):
        if endpoint.roles is None:
            continue
        body = {"json": {}} if endpoint.method in ("POST", "PUT", "PATCH") else {}
        for sandbox in (other, "prod"):
            response = api.request(endpoint.method, _url(endpoint.path), key=bound, sandbox=sandbox, **body)
            assert_error(response, 403, "sandbox_forbidden")
        checked += 1
    assert checked >= 60


@pytest.fixture(scope="module")
def tight(sqlite_url_factory):
    """An app with small limits: 1 KiB bodies, 2 KiB files, 3 requests at once and 1 a second per key."""
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    app = create_app(make_settings(sqlite_url_factory(), max_body_bytes=1024, max_file_bytes=2048,
                                   rate_limit_per_second=1, rate_limit_burst=3))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, {"admin": ADMIN_KEY})


def test_every_route_that_takes_a_body_refuses_one_past_the_limit(tight):
    tight.app.state.rate_limiter.per_second = 0  # this test counts bodies, not requests
    try:
        checked = 0
        for (method, path), rule in ROUTE_RULES.items():
            if method not in BODY_METHODS:
                continue
            upload = path.endswith("/batches")
            size = 1024 + 2048 + 1 if upload else 1025
            response = tight.request(method, _url(path), content=b"x" * size,
                                     headers={"content-type": "application/json"})
            assert_error(response, 413, "file_too_large" if upload else "payload_too_large")
            # without Content-Length (chunked): cut as the body streams (an upload as its parser reads it)
            chunked = tight.request(method, _url(path), content=iter([b"x" * 1000] * 4), headers={
                "content-type": "multipart/form-data; boundary=b" if upload else "application/json"})
            assert chunked.status_code == 413, (method, path, chunked.text)
            checked += 1
        assert checked >= 40
        for (method, path) in list(ROUTE_RULES)[::7]:
            response = tight.request(method, _url(path), headers={"x-big": "a" * 70_000})
            assert_error(response, 431, "headers_too_large")
    finally:
        tight.app.state.rate_limiter.per_second = 1


def test_rate_limit_per_key_with_retry_after(tight):
    limiter = tight.app.state.rate_limiter
    now = [1000.0]
    limiter.clock = lambda: now[0]
    limiter._buckets.clear()
    other = tight.post("/v1/keys", json={"name": "other", "role": "reader", "all_sandboxes": True}).json()["key"]
    for _ in range(2):  # the key creation above was the first of three
        assert tight.get("/v1/me").status_code == 200
    refused = tight.get("/v1/me")
    error = assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "1" and error["details"]["retry_after_seconds"] == 1
    assert tight.get("/v1/me", key=other).status_code == 200, "the limit is per key"
    assert tight.get("/healthz").status_code == 200, "health needs no key and is not limited"
    now[0] += 1.0
    assert tight.get("/v1/me").status_code == 200
    assert_error(tight.get("/v1/me"), 429, "rate_limited")
    now[0] += 0.5
    assert tight.get("/v1/me").headers["Retry-After"] == "1"
    # a refused request costs nothing: after the wait the key is served again
    now[0] += 10
    assert [tight.get("/v1/me").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_the_openapi_document_describes_the_rate_limit(api):
    document = api.client.get("/openapi.json").json()
    from cdp.api.deps import endpoints

    for endpoint in endpoints(api.app):
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        if endpoint.roles is None and ROUTE_RULES[(endpoint.method, endpoint.path)] != WRITE_KEY:
            assert "429" not in operation["responses"], endpoint.path
            continue
        limited = operation["responses"]["429"]  # API keys' and write keys' (tests/api/test_tracking_rate_limit.py)
        assert limited["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    assert "CDP_RATE_LIMIT_PER_SECOND" in document["info"]["description"]


def test_the_default_limit_is_generous(api):
    from cdp.settings import Settings

    settings = Settings()
    assert settings.rate_limit_per_second >= 1000 and settings.rate_limit_burst >= 2000


def test_keys_are_stored_hashed_and_compared_in_constant_time(api, monkeypatch):
    from cdp.storage.models import api_keys
    import sqlalchemy as sa

    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    created = api.post("/v1/keys", json={"name": "fresh", "role": "reader"}).json()
    compared.clear()
    assert api.get("/v1/me", key=created["key"]).status_code == 200
    digest = hashlib.sha256(created["key"].encode()).hexdigest()
    assert (digest, digest) in compared, "a known key is compared as a digest with compare_digest"
    for wrong in (created["key"][:-1] + ("A" if created["key"][-1] != "A" else "B"),  # known id, wrong secret
                  "cdp_ffffffffffff_" + "x" * 43,  # unknown id
                  "not-a-key"):  # malformed: still one comparison, so timing says nothing
        compared.clear()
        assert_error(api.get("/v1/me", key=wrong), 401, "invalid_api_key")
        assert len(compared) == 1 and compared[0][1] == hashlib.sha256(wrong.encode()).hexdigest()
    with api.app.state.engine.connect() as connection:
        stored = [tuple(map(str, row)) for row in connection.execute(sa.select(api_keys))]
    assert all(created["key"] not in value for row in stored for value in row)
    assert any(digest in row for row in stored)
