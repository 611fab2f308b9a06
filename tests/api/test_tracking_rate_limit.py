"""The tracking API's write keys are rate limited like API keys (cdp/api/ratelimit.py): a bucket
per write key, 429 ``rate_limited`` with ``Retry-After`` past it, nothing of the refused request
stored, the OpenAPI document saying so on every tracking operation. The buckets of write keys and
API keys are apart: an SDK flooding the tracking API does not lock out the key that reads the
profiles, and the reverse."""

from __future__ import annotations

import base64

import pytest

from tests.api.conftest import ADMIN_KEY, Api, assert_error, make_settings

BURST = 3


@pytest.fixture(scope="module")
def tight(sqlite_url_factory):
    """An app whose keys may make 3 requests at once and 1 a second."""
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    app = create_app(make_settings(sqlite_url_factory(), rate_limit_per_second=1, rate_limit_burst=BURST))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, {"admin": ADMIN_KEY})


def _source(api: Api, name: str) -> str:
    """A tracking source's write key (its creation and datasets are the admin key's requests)."""
    datasets = {kind: api.post("/v1/datasets", json={"name": f"{name} {kind}", "kind": kind}).json()["id"]
                for kind in ("profile", "event")}
    created = api.post("/v1/sources", json={"name": name, "type": "tracking_api", "datasets": datasets})
    assert created.status_code == 201, created.text
    return created.json()["write_key"]


def _track(api: Api, write_key: str, user: str):
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    return api.client.post("/sources/segment/v1/track", headers={"Authorization": f"Basic {auth}"}, json={
        "type": "track", "userId": user, "event": "Product Viewed", "messageId": f"m-{user}",
        "timestamp": "2026-12-06T10:00:00Z", "properties": {"sku": "SKU-1"}})


def _known(api: Api, user: str) -> bool:
    response = api.get("/v1/profiles/lookup", params={"namespace": "crm_id", "id": user})
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def test_a_write_key_past_its_limit_is_refused_with_retry_after(tight):
    limiter = tight.app.state.rate_limiter
    now = [1000.0]
    limiter.clock = lambda: now[0]
    limiter.per_second = 0  # the set-up's requests are not what is counted
    first, second = _source(tight, "web"), _source(tight, "app")
    limiter.per_second = 1
    limiter._buckets.clear()
    for n in range(BURST):
        answer = _track(tight, first, f"u-{n}")
        assert answer.status_code == 200 and answer.json() == {"success": True}, answer.text
    refused = _track(tight, first, "u-refused")
    error = assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "1" and error["details"]["retry_after_seconds"] == 1
    assert "write key" in error["message"]
    assert _track(tight, second, "u-other").status_code == 200, "the limit is per write key"
    # the API key's bucket is its own: the admin key is served, and its requests cost the write key nothing
    now[0] += 100  # every bucket full again
    for _ in range(BURST):
        assert tight.get("/v1/me").status_code == 200
    assert _track(tight, first, "u-after").status_code == 200
    now[0] += 100
    assert _known(tight, "u-0") and _known(tight, "u-after")
    assert not _known(tight, "u-refused"), "nothing of a refused request is stored"
    # a refused request costs nothing: after the wait the write key is served again
    now[0] += 100
    assert [_track(tight, first, f"v-{n}").status_code for n in range(BURST + 1)] == [200] * BURST + [429]
    now[0] += 1.0
    assert _track(tight, first, "v-later").status_code == 200


def test_an_unknown_write_key_is_401_not_counted(tight):
    tight.app.state.rate_limiter._buckets.clear()
    for n in range(BURST + 2):
        assert_error(_track(tight, "wk_unknown", f"x-{n}"), 401, "unauthorized")
    assert not [key for key in tight.app.state.rate_limiter._buckets if key.startswith("write-key:")]


def test_the_openapi_document_describes_the_tracking_limit(api):
    document = api.client.get("/openapi.json").json()
    operations = [item["post"] for path, item in document["paths"].items() if path.startswith("/sources/segment/")]
    assert len(operations) >= 7
    for operation in operations:
        limited = operation["responses"]["429"]
        assert "rate_limited" in limited["description"]
        assert limited["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
