"""Sources through the API in process (SQLite and PostgreSQL): changing and deleting sources,
the tracking API's group, screen and single calls, a custom mapping, and the database reader's
run boundaries (on an SQLite source database)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.api.conftest import assert_error, create_dataset


def tracking_source(api, **spec) -> dict:
    ids = {kind: create_dataset(api, kind, f"{kind} {spec.get('name', 'web')}") for kind in ("profile", "event")}
    response = api.post("/v1/sources", json={"name": "web", "type": "tracking_api", "datasets": ids, **spec})
    assert response.status_code == 201, response.text
    return response.json()


def send(api, source: dict, call: str, message: dict):
    response = api.client.post(f"/sources/segment/v1/{call}", auth=(source["write_key"], ""), json=message)
    assert response.status_code == 200 and response.json() == {"success": True}, response.text


def errors_of(api, source: dict) -> dict:
    items = api.get(f"/v1/sources/{source['id']}/messages", params={"level": "error"}).json()["items"]
    return {i["message_id"]: i["errors"] for i in items}


def test_group_screen_and_a_custom_mapping(api):
    source = tracking_source(api, name="app", config={"channel": "mobile"}, mapping={
        "user_id": "loyalty_id", "traits": {"tier": "loyalty.tier", "plan": None},
        "events": {"Cart Viewed": "checkout", "Screen Scrolled": None}, "properties": {"variant": "product.size"},
        "group": {"group_id": "crm_id"}, "unknown": "reject"})
    send(api, source, "identify", {"userId": "L-1", "traits": {"tier": "gold", "plan": "pro"}, "messageId": "i-1"})
    send(api, source, "identify", {"userId": "L-1", "traits": {"shoe": 42}, "messageId": "i-2"})  # rejected
    send(api, source, "track", {"userId": "L-1", "event": "Cart Viewed", "messageId": "t-1",
                                "properties": {"variant": "M"}})
    send(api, source, "track", {"userId": "L-1", "event": "Screen Scrolled", "messageId": "t-2"})  # ignored
    send(api, source, "screen", {"userId": "L-1", "name": "Home", "messageId": "s-1",
                                 "context": {"os": {"name": "iOS"}}})
    send(api, source, "group", {"userId": "L-1", "groupId": "ACME", "messageId": "g-1"})
    profile = api.get("/v1/profiles/lookup", params={"namespace": "loyalty_id", "id": "L-1"}).json()
    assert profile["attributes"]["loyalty"]["tier"] == "gold" and profile["attributes"]["crm_id"] == "ACME"
    events = {e["id"]: e for e in api.get(f"/v1/profiles/{profile['id']}/events").json()["items"]}
    assert set(events) == {"t-1", "s-1"}
    assert (events["t-1"]["type"], events["t-1"]["product"]["size"], events["t-1"]["channel"]) == \
        ("checkout", "M", "mobile")
    assert (events["s-1"]["type"], events["s-1"]["channel"]) == ("pageView", "mobile")
    assert "'shoe'" in errors_of(api, source)["i-2"][0]["message"]
    stats = api.get(f"/v1/sources/{source['id']}").json()["messages"]
    assert (stats["accepted"], stats["rejected"]) == (5, 1)


def test_group_without_a_mapping_is_rejected_and_said_why(api):
    source = tracking_source(api)
    send(api, source, "group", {"userId": "C-1", "groupId": "ACME", "messageId": "g-1"})
    assert "no accounts" in errors_of(api, source)["g-1"][0]["message"]


def test_invalid_sources_are_refused_with_every_problem(api):
    ids = {kind: create_dataset(api, kind) for kind in ("profile", "event")}
    error = assert_error(api.post("/v1/sources", json={
        "name": "web", "type": "tracking_api", "datasets": ids,
        "mapping": {"user_id": "nope", "traits": {"x": "not.a.field"}, "events": {"Y": "notAType"}}}),
        422, "invalid_mapping")
    assert len(error["details"]["errors"]) == 3
    assert_error(api.post("/v1/sources", json={"name": "web", "type": "tracking_api",
                                               "datasets": {"profile": ids["profile"]}}), 422, "invalid_source")
    assert_error(api.post("/v1/sources", json={"name": "web", "type": "tracking_api",
                                               "datasets": {"profile": ids["event"], "event": ids["event"]}}),
                 422, "invalid_source")
    assert_error(api.post("/v1/sources", json={"name": "web", "type": "tracking_api", "datasets": ids,
                                               "schedule": {"every_minutes": 5}}), 422, "invalid_source")
    assert_error(api.post("/v1/sources", json={"name": "web", "type": "ftp", "datasets": ids}), 422)
    created = api.post("/v1/sources", json={"name": "web", "type": "tracking_api", "datasets": ids}).json()
    assert_error(api.post("/v1/sources", json={"name": "web", "type": "tracking_api", "datasets": ids}),
                 409, "source_exists")
    assert_error(api.post(f"/v1/sources/{created['id']}/run"), 409, "source_not_runnable")
    assert_error(api.get(f"/v1/sources/{created['id']}/preview"), 409, "no_preview")


@pytest.fixture
def crm_file(tmp_path) -> str:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE contacts (id INTEGER, email TEXT, version INTEGER)")
        connection.executemany("INSERT INTO contacts VALUES (?, ?, ?)",
                               [(n, f"p{n}@example.com", v) for n, v in enumerate([1, 2, 2, 2, 3])])
    return str(path)


def test_changing_and_deleting_a_database_source(api, crm_file):
    profile = create_dataset(api, "profile")
    created = api.post("/v1/sources", json={
        "name": "crm", "type": "database", "datasets": {"profile": profile},
        "config": {"url": f"sqlite:///{crm_file}", "table": "contacts", "password": "pw-1"},
        "mapping": {"email": "identity.email"}}).json()
    assert created["config"]["password_set"] is True and "pw-1" not in str(created)
    changed = api.patch(f"/v1/sources/{created['id']}", json={"config": {"cursor_column": "version"},
                                                              "schedule": {"every_minutes": 15}}).json()
    assert changed["config"]["cursor_column"] == "version" and changed["config"]["password_set"] is True
    assert changed["schedule"] == {"every_minutes": 15} and changed["next_run_at"] is not None
    unscheduled = api.patch(f"/v1/sources/{created['id']}", json={"schedule": None}).json()
    assert unscheduled["schedule"] is None and unscheduled["next_run_at"] is None
    assert_error(api.patch(f"/v1/sources/{created['id']}", json={"mapping": {"email": "identity.nope"}}),
                 422, "invalid_mapping")
    assert api.get(f"/v1/sources/{created['id']}").json()["mapping"] == {"email": "identity.email"}
    assert api.delete(f"/v1/sources/{created['id']}").status_code == 204
    assert_error(api.get(f"/v1/sources/{created['id']}"), 404, "not_found")


def test_a_run_never_splits_the_rows_of_one_cursor_value(crm_file):
    from cdp.errors import CdpError
    from cdp.sources import database

    config = {"url": f"sqlite:///{crm_file}", "table": "contacts", "cursor_column": "version", "max_rows_per_run": 3}
    ids = []
    after = None
    while True:
        extracted = database.extract(config, {}, after=after)
        if not extracted.rows:
            break
        extracted.file.seek(0)
        ids.append([__import__("json").loads(line)["id"] for line in extracted.file])
        after = extracted.last_cursor
    assert ids == [[0], [1, 2, 3], [4]]
    with pytest.raises(CdpError, match="share the cursor value 2"):
        database.extract({**config, "max_rows_per_run": 2}, {}, after=1)


def test_a_source_may_not_read_cdps_own_database(api):
    profile = create_dataset(api, "profile")
    own = api.app.state.settings.resolved_database_url()
    error = assert_error(api.post("/v1/sources", json={
        "name": "own", "type": "database", "datasets": {"profile": profile},
        "config": {"url": own, "table": "api_keys"}, "mapping": {"name": "identity.email"}}), 422, "invalid_source")
    assert "cdp's own database" in error["message"]


def test_a_dataset_bound_to_a_source_cannot_be_deleted(api):
    source = tracking_source(api)
    assert_error(api.delete(f"/v1/datasets/{source['datasets']['event']}"), 409)
    assert api.delete(f"/v1/sources/{source['id']}").status_code == 204
    assert api.delete(f"/v1/datasets/{source['datasets']['event']}").status_code == 204
