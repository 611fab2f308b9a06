"""The analytics SDKs' tracking API against a real `cdp serve` (SQLite and PostgreSQL), driven by
the real SDK clients from PyPI — Segment's `segment-analytics-python` and RudderStack's
`rudder-sdk-python` (which sends gzip bodies) — configured with cdp's URL and a source's write
key. What they send is checked through the profile API.

A streaming segment picks up a tracked event during ingestion (no batch run)."""

from __future__ import annotations

import base64
import gzip
import json
import uuid

import httpx2 as httpx
import pytest

from tests.api.test_server import KEY, Server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, sqlite_url_factory, tmp_path_factory):
    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    running = Server(url, tmp_path_factory.mktemp("serve") / "stderr.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server) -> dict:
    [key] = KEY.findall(server.stderr)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def source(server, admin) -> dict:
    """A tracking source in a sandbox of its own, with its datasets and write key."""
    sandbox = f"t-{uuid.uuid4().hex[:10]}"
    created = httpx.post(server.base + "/v1/sandboxes", headers=admin, json={"name": sandbox})  # exist before use
    assert created.status_code == 201, created.text
    headers = {**admin, "X-Sandbox": sandbox}
    ids = {}
    for kind in ("profile", "event"):
        response = httpx.post(server.base + "/v1/datasets", headers=headers, json={"name": f"web {kind}", "kind": kind})
        assert response.status_code == 201, response.text
        ids[kind] = response.json()["id"]
    response = httpx.post(server.base + "/v1/sources", headers=headers, json={
        "name": "web site", "type": "tracking_api", "datasets": ids})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["write_key"].startswith("wk_") and created["endpoint"] == "/sources/segment"
    again = httpx.get(server.base + f"/v1/sources/{created['id']}", headers=headers).json()
    assert again["write_key"] is None and created["write_key"] not in json.dumps(again)
    return {**created, "headers": headers, "host": server.base + created["endpoint"], "datasets": ids}


def lookup(server, source, namespace: str, value: str) -> dict | None:
    response = httpx.get(server.base + "/v1/profiles/lookup", headers=source["headers"],
                         params={"namespace": namespace, "id": value})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def events_of(server, source, profile: dict) -> list[dict]:
    response = httpx.get(server.base + f"/v1/profiles/{profile['id']}/events", headers=source["headers"],
                         params={"limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def identities(profile: dict) -> set[tuple[str, str]]:
    return {(i["namespace"], i["id"]) for i in profile["identities"]}


def _segment(source, errors):
    from segment.analytics import Client

    return Client(source["write_key"], host=source["host"], on_error=lambda e, batch: errors.append(e),
                  max_retries=1)


def _rudder(source, errors):
    from rudderstack.analytics import Client

    return Client(source["write_key"], host=source["host"], on_error=lambda e, batch: errors.append(e),
                  max_retries=1)


@pytest.mark.parametrize("make_client", [_segment, _rudder], ids=["segment-analytics-python", "rudder-sdk-python"])
def test_an_sdk_pointed_at_cdp(server, source, make_client):
    errors: list = []
    client = make_client(source, errors)
    # an anonymous visitor browses, then logs in and is identified; an old account id is aliased
    client.page(anonymous_id="anon-1", name="Home", properties={"url": "https://luma.example/men"})
    client.track(anonymous_id="anon-1", event="Product Viewed",
                 properties={"sku": "MH01-L", "category": "mens", "price": 52.0, "colour": "grey"})
    client.identify(user_id="C-1001", anonymous_id="anon-1",
                    traits={"email": "Sarah.Rose@example.com", "firstName": "Sarah", "lastName": "Rose",
                            "favouriteColour": "green"})
    client.track(user_id="C-1001", event="Order Completed", message_id="order-m-1",
                 properties={"order_id": "O-1", "total": 52.0, "currency": "USD"})
    client.track(user_id="C-1001", event="Order Completed", message_id="order-m-1",  # an SDK retry: one event
                 properties={"order_id": "O-1", "total": 52.0, "currency": "USD"})
    client.identify(user_id="C-0042", traits={"firstName": "Old"})
    # an old account id aliased to hers: both are crm_ids, a unique namespace by default (one per
    # profile), so the linking rules refuse it — the message is rejected and reported, not merged
    client.alias(previous_id="C-0042", user_id="C-1001", message_id="alias-1")
    for n in range(300):  # a flush of a few hundred messages
        client.track(anonymous_id=f"visitor-{n}", event="Product Added", message_id=f"bulk-{n}",
                     properties={"sku": f"SKU-{n}", "quantity": 1})
    client.flush()
    client.join()
    assert errors == []

    sarah = lookup(server, source, "email", "sarah.rose@example.com")
    assert sarah is not None
    assert {("ecid", "anon-1"), ("crm_id", "C-1001"), ("email", "sarah.rose@example.com")} <= identities(sarah)
    assert sarah["attributes"]["person"]["first_name"] == "Sarah"
    assert sarah["attributes"]["person"]["last_name"] == "Rose"
    # the refused alias left the old account its own profile
    old = lookup(server, source, "crm_id", "C-0042")
    assert old["id"] != sarah["id"] and identities(old) == {("crm_id", "C-0042")}
    assert old["attributes"]["person"]["first_name"] == "Old"
    types = sorted(e["type"] for e in events_of(server, source, sarah))
    assert types == ["pageView", "productView", "purchase"]  # the retried order is one event
    [view] = [e for e in events_of(server, source, sarah) if e["type"] == "productView"]
    assert view["product"] == {"sku": "MH01-L", "category": "mens", "price": 52.0}
    assert view["channel"] == "web"
    [page] = [e for e in events_of(server, source, sarah) if e["type"] == "pageView"]
    assert page["page"]["url"] == "https://luma.example/men"
    [order] = [e for e in events_of(server, source, sarah) if e["type"] == "purchase"]
    assert order["id"] == "order-m-1" and order["order"] == {"id": "O-1", "total": 52.0, "currency": "USD"}
    for n in (0, 150, 299):
        visitor = lookup(server, source, "ecid", f"visitor-{n}")
        [added] = events_of(server, source, visitor)
        assert (added["id"], added["type"], added["product"]["sku"]) == (f"bulk-{n}", "addToCart", f"SKU-{n}")

    read = httpx.get(server.base + f"/v1/sources/{source['id']}", headers=source["headers"]).json()
    assert read["messages"]["accepted"] == 305 and read["messages"]["duplicate"] == 1
    assert read["messages"]["rejected"] == 1  # the alias
    [refused] = httpx.get(server.base + f"/v1/sources/{source['id']}/messages", headers=source["headers"],
                          params={"level": "error"}).json()["items"]
    assert (refused["message_id"], refused["type"]) == ("alias-1", "alias")
    [reason] = refused["errors"]
    assert reason["path"] == "previousId"
    assert "linking rules" in reason["message"] and "crm_id is a unique namespace" in reason["message"]
    assert "PUT /v1/identity/settings" in reason["message"]
    # the unknown trait and property were stored without, and reported
    warnings = httpx.get(server.base + f"/v1/sources/{source['id']}/messages", headers=source["headers"],
                         params={"level": "warning"}).json()["items"]
    reported = " ".join(e["message"] for w in warnings for e in w["errors"])
    assert "'favouriteColour'" in reported and "'colour'" in reported

    # with linking rules where crm_id is not unique, the same alias merges the old account into hers
    settings = httpx.put(server.base + "/v1/identity/settings", headers=source["headers"],
                         json={"unique_namespaces": ["loyalty_id"]})
    assert settings.status_code == 200, settings.text
    client = make_client(source, errors)  # join() stopped the first one
    client.alias(previous_id="C-0042", user_id="C-1001", message_id="alias-2")
    client.flush()
    client.join()
    assert errors == []
    merged = lookup(server, source, "crm_id", "C-0042")
    assert merged["id"] == sarah["id"] and old["id"] in merged["merged_ids"]
    assert {("crm_id", "C-1001"), ("crm_id", "C-0042"), ("email", "sarah.rose@example.com")} <= identities(merged)
    assert merged["attributes"]["person"]["first_name"] in ("Sarah", "Old")  # both identify calls are hers now
    read = httpx.get(server.base + f"/v1/sources/{source['id']}", headers=source["headers"]).json()
    assert (read["messages"]["accepted"], read["messages"]["rejected"]) == (306, 1)


def _post(source, path: str, body, *, key: str | None = None, gzipped: bool = False) -> httpx.Response:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    key = source["write_key"] if key is None else key
    if key:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return httpx.post(source["host"] + path, content=data, headers=headers)


def test_a_wrong_write_key_is_401_and_stores_nothing(server, source):
    message = {"type": "identify", "userId": "C-7", "traits": {"email": "x@example.com"}, "messageId": "m-1"}
    for key in ("wk_" + "x" * 43, ""):
        response = _post(source, "/v1/batch", {"batch": [message]}, key=key)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
    errors: list = []
    from segment.analytics import Client

    client = Client("wk_wrong", host=source["host"], on_error=lambda e, batch: errors.append(e), max_retries=0)
    client.identify(user_id="C-7", traits={"email": "x@example.com"})
    client.flush()
    client.join()
    assert errors and getattr(errors[0], "status", None) == 401
    assert lookup(server, source, "crm_id", "C-7") is None
    read = httpx.get(server.base + f"/v1/sources/{source['id']}", headers=source["headers"]).json()
    assert read["messages"] == {"accepted": 0, "rejected": 0, "duplicate": 0, "last_message_at": None}


def test_a_malformed_message_in_a_batch_is_reported_and_the_rest_stored(server, source):
    batch = {"sentAt": "2026-12-06T10:00:00Z", "batch": [
        {"type": "track", "anonymousId": "a-1", "event": "Product Viewed", "messageId": "ok-1",
         "timestamp": "2026-12-06T09:59:00Z", "properties": {"sku": "S-1"}},
        {"type": "track", "anonymousId": "a-2", "event": "Product Viewed", "messageId": "bad-1",
         "properties": {"price": "cheap"}},  # not a number
        {"type": "track", "anonymousId": "a-3", "messageId": "bad-2"},  # no event name
        {"type": "explode", "anonymousId": "a-4", "messageId": "bad-3"},
        {"type": "identify", "messageId": "bad-4", "traits": {"firstName": "Nobody"}},  # no id at all
        {"type": "identify", "userId": "C-9", "messageId": "ok-2", "traits": {"email": "not an email"}},
        {"type": "track", "anonymousId": "a-5", "event": "Product Viewed", "messageId": "big",
         "properties": {"sku": "x" * 40_000}},
        {"type": "identify", "userId": "C-10", "messageId": "ok-3", "traits": {"lastName": "Fine"}},
    ]}
    response = _post(source, "/v1/batch", batch, gzipped=True)
    assert response.status_code == 200 and response.json() == {"success": True}
    viewed = lookup(server, source, "ecid", "a-1")
    [event] = events_of(server, source, viewed)
    # clock skew: the device said 09:59 and sent at 10:00; received now → stored at now − 1 min
    assert event["id"] == "ok-1"
    assert lookup(server, source, "crm_id", "C-10")["attributes"]["person"]["last_name"] == "Fine"
    for namespace, value in (("ecid", "a-2"), ("ecid", "a-3"), ("ecid", "a-4"), ("crm_id", "C-9"), ("ecid", "a-5")):
        assert lookup(server, source, namespace, value) is None, value
    issues = httpx.get(server.base + f"/v1/sources/{source['id']}/messages", headers=source["headers"],
                       params={"level": "error"}).json()
    by_id = {i["message_id"]: i for i in issues["items"]}
    assert set(by_id) == {"bad-1", "bad-2", "bad-3", "bad-4", "ok-2", "big"}
    assert "price" in json.dumps(by_id["bad-1"]["errors"])
    assert by_id["bad-2"]["errors"][0]["path"] == "event"
    assert "unknown message type" in by_id["bad-3"]["errors"][0]["message"]
    assert "email" in json.dumps(by_id["ok-2"]["errors"])
    assert "message_too_large" in by_id["big"]["errors"][0]["message"] and by_id["big"]["raw_bytes"] > 32 * 1024
    assert by_id["bad-1"]["index"] == 1 and json.loads(by_id["bad-1"]["raw"])["messageId"] == "bad-1"
    read = httpx.get(server.base + f"/v1/sources/{source['id']}", headers=source["headers"]).json()
    assert (read["messages"]["accepted"], read["messages"]["rejected"]) == (2, 6)
    metrics = httpx.get(server.base + "/metrics", headers=source["headers"]).text
    assert f'cdp_source_messages_total{{sandbox="{source["headers"]["X-Sandbox"]}",source="{source["id"]}",' \
           f'status="rejected"}} 6.0' in metrics


def test_limits_and_single_calls(server, source):
    big = {"batch": [{"type": "track", "anonymousId": f"b-{n}", "event": "Product Viewed",
                      "properties": {"sku": "y" * 1000}} for n in range(600)]}
    response = _post(source, "/v1/batch", big, gzipped=True)  # small on the wire, 600 KB once unzipped
    assert response.status_code == 413 and response.json()["error"]["code"] == "batch_too_large"
    assert lookup(server, source, "ecid", "b-0") is None
    response = _post(source, "/v1/track", {"anonymousId": "single-1", "event": "Product Viewed",
                                           "messageId": "s-1", "properties": {"sku": "S"}})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert events_of(server, source, lookup(server, source, "ecid", "single-1"))[0]["id"] == "s-1"
    response = httpx.post(source["host"] + "/v1/track", content=b"{not json",
                          headers={"Authorization": "Basic " + base64.b64encode(
                              (source["write_key"] + ":").encode()).decode()})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_json"
    # pause: the SDK is refused (403) and nothing is stored; resume takes messages again
    assert httpx.post(server.base + f"/v1/sources/{source['id']}/pause", headers=source["headers"]).status_code == 200
    response = _post(source, "/v1/identify", {"userId": "P-1"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "source_paused"
    assert httpx.post(server.base + f"/v1/sources/{source['id']}/resume", headers=source["headers"]).status_code == 200
    assert _post(source, "/v1/identify", {"userId": "P-1"}).status_code == 200
    assert lookup(server, source, "crm_id", "P-1") is not None


def test_a_streaming_segment_picks_up_a_tracked_event(server, source):
    """What an SDK sends reaches the audiences at once: the tracked event enters its profile into a
    streaming segment during ingestion, before any batch run."""
    from segment.analytics import Client

    created = httpx.post(server.base + "/v1/segments", headers=source["headers"], json={
        "key": "viewers", "name": "Product viewers", "evaluation": "streaming",
        "expression": 'exists event where type = "productView"'})
    assert created.status_code == 201, created.text
    errors: list = []
    client = Client(source["write_key"], host=source["host"], on_error=lambda e, batch: errors.append(e),
                    max_retries=1)
    client.track(anonymous_id="stream-1", event="Product Viewed", message_id="sv-1", properties={"sku": "MH01-L"})
    client.flush()
    client.join()
    assert errors == []
    profile = lookup(server, source, "ecid", "stream-1")
    assert profile is not None
    assert [(m["segment"], m["status"]) for m in profile["memberships"]] == [("viewers", "realized")]
