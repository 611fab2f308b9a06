"""Data in one sandbox is invisible from another, for every resource type."""

from __future__ import annotations

import uuid

from tests.api.conftest import SARAH, assert_error

# Every /v1 resource (first path segment) and the test below that proves its isolation.
ISOLATION_TESTS = {
    "schema": "test_schema_is_per_sandbox",
    "datasets": "test_datasets_are_per_sandbox",
    "keys": "test_keys_are_per_sandbox",
    "expressions": "test_expressions_check_against_the_sandbox_schema_and_segments",
    "profiles": "test_profile_evaluation_uses_the_sandbox_schema_and_segments",
    "batches": "test_batches_are_per_sandbox",
    "identity": "test_identity_namespaces_and_settings_are_per_sandbox",
    "privacy": "test_profiles_and_privacy_deletions_are_per_sandbox",
    "sources": "test_sources_are_per_sandbox",
    "source-types": "test_source_types_are_one_catalog_for_every_sandbox",
}


def _other() -> str:
    return f"o-{uuid.uuid4().hex[:12]}"


def test_every_resource_type_has_an_isolation_test(api):
    from cdp.api.deps import endpoints

    resources = {e.path.split("/")[2] for e in endpoints(api.app) if e.path.startswith("/v1/")}
    assert resources == set(ISOLATION_TESTS), "add an isolation test for the new resource type"
    for name in ISOLATION_TESTS.values():
        assert callable(globals()[name])


def test_schema_is_per_sandbox(api):
    schema = api.get("/v1/schema").json()
    schema["profile"]["shoe_size"] = "number"
    replaced = api.put("/v1/schema", json={k: schema[k] for k in ("profile", "event", "event_types", "enums")})
    assert replaced.status_code == 200, replaced.text
    other = _other()
    theirs = api.get("/v1/schema", sandbox=other).json()
    assert theirs["is_default"] and theirs["version"] == 0 and "shoe_size" not in theirs["profile"]
    assert theirs["sandbox"] == other
    assert api.get("/v1/schema").json()["profile"]["shoe_size"] == "number"


def test_datasets_are_per_sandbox(api):
    created = api.post("/v1/datasets", json={"name": "CRM contacts", "kind": "profile", "labels": ["C2"]}).json()
    other = _other()
    assert api.get("/v1/datasets", sandbox=other).json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
    path = f"/v1/datasets/{created['id']}"
    assert_error(api.get(path, sandbox=other), 404, "not_found")
    assert_error(api.patch(path, sandbox=other, json={"labels": []}), 404, "not_found")
    assert_error(api.delete(path, sandbox=other), 404, "not_found")
    # the same name is free in another sandbox
    assert api.post("/v1/datasets", sandbox=other, json={"name": "CRM contacts", "kind": "event"}).status_code == 201
    assert api.get(path).json()["labels"] == ["C2"]  # untouched
    assert [d["kind"] for d in api.get("/v1/datasets").json()["items"]] == ["profile"]


def test_keys_are_per_sandbox(api):
    created = api.post("/v1/keys", json={"name": "mine", "role": "reader"}).json()
    other = _other()
    assert_error(api.get(f"/v1/keys/{created['id']}", sandbox=other), 404, "not_found")
    assert_error(api.delete(f"/v1/keys/{created['id']}", sandbox=other), 404, "not_found")
    listed = api.get("/v1/keys", sandbox=other, params={"limit": 500}).json()["items"]
    assert created["id"] not in {k["id"] for k in listed}
    assert all(k["sandbox"] in (None, other) for k in listed)
    assert_error(api.get("/v1/schema", key=created["key"], sandbox=other), 403, "sandbox_forbidden")


def _insert_segment(engine, sandbox: str, key: str, expression: str) -> None:
    from datetime import datetime, timezone

    from cdp.storage.models import segments

    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        connection.execute(segments.insert().values(sandbox=sandbox, key=key, name=key, expression=expression,
                                                    canonical=expression, created_at=now, updated_at=now))


def test_expressions_check_against_the_sandbox_schema_and_segments(api, engine):
    schema = api.get("/v1/schema").json()
    schema["profile"]["shoe_size"] = "number"
    api.put("/v1/schema", json={k: schema[k] for k in ("profile", "event", "event_types", "enums")})
    _insert_segment(engine, api.sandbox, "bronze", 'loyalty.tier = "bronze"')
    other = _other()
    assert api.post("/v1/expressions/check", json={"expression": "shoe_size > 40"}).json()["ok"] is True
    error = assert_error(api.post("/v1/expressions/check", sandbox=other, json={"expression": "shoe_size > 40"}),
                         422, "invalid_expression")
    assert error["details"]["errors"][0]["code"] == "unknown_field"
    assert api.post("/v1/expressions/check", json={"expression": 'in segment "bronze"'}).status_code == 200
    error = assert_error(api.post("/v1/expressions/check", sandbox=other, json={"expression": 'in segment "bronze"'}),
                         422, "invalid_expression")
    assert error["details"]["errors"][0]["code"] == "unknown_segment"


def test_profile_evaluation_uses_the_sandbox_schema_and_segments(api, engine):
    schema = api.get("/v1/schema").json()
    schema["profile"]["shoe_size"] = "number"
    api.put("/v1/schema", json={k: schema[k] for k in ("profile", "event", "event_types", "enums")})
    _insert_segment(engine, api.sandbox, "bronze", 'loyalty.tier = "bronze"')
    profile = {**SARAH, "attributes": {**SARAH["attributes"], "shoe_size": 38}}
    body = {"expression": 'shoe_size < 40 and in segment "bronze"', "profile": profile}
    assert api.post("/v1/profiles/evaluate", json=body).json()["qualifies"] is True
    error = assert_error(api.post("/v1/profiles/evaluate", sandbox=_other(), json=body), 422, "invalid_expression")
    assert {e["code"] for e in error["details"]["errors"]} == {"unknown_field", "unknown_segment"}


def test_default_sandbox_is_prod_and_names_are_checked(api):
    response = api.client.get("/v1/schema", headers={"Authorization": f"Bearer {api.keys['reader']}"})
    assert response.json()["sandbox"] == "prod"
    for bad in ("Prod", "", "a" * 65, "1abc", "a b", "é"):
        error = assert_error(api.get("/v1/schema", sandbox=None, headers={"X-Sandbox": bad.encode("utf-8")}),
                             400, "invalid_sandbox")
        assert "sandbox" in error["message"]


def test_batches_are_per_sandbox(api):
    import time

    dataset = api.post("/v1/datasets", json={"name": "CRM", "kind": "profile"}).json()["id"]
    line = b'{"identities": [{"namespace": "crm_id", "id": "C-1"}], "attributes": {"tier": "gold"}}\n'
    job = api.post(f"/v1/datasets/{dataset}/batches", files={"file": ("crm.jsonl", line)}).json()
    deadline = time.monotonic() + 30
    while (batch := api.get(f"/v1/batches/{job['id']}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)
    assert batch["status"] == "failed" and batch["rejected_rows"] == 1  # no field "tier": a failed job, retryable
    other = _other()
    for method, path in [("GET", ""), ("GET", "/errors"), ("POST", "/retry")]:
        error = assert_error(api.request(method, f"/v1/batches/{job['id']}{path}", sandbox=other), 404, "not_found")
        assert error["details"] == {"resource": "batch", "id": job["id"], "sandbox": other}
    assert api.get(f"/v1/batches/{job['id']}").json() == batch  # the retry from elsewhere changed nothing
    assert_error(api.get(f"/v1/datasets/{dataset}/batches", sandbox=other), 404, "not_found")
    assert api.get(f"/v1/batches/{job['id']}/errors").json()["total"] == 1


def test_identity_namespaces_and_settings_are_per_sandbox(api):
    assert api.post("/v1/identity/namespaces", json={"code": "idfa", "name": "Ad id", "kind": "device"}
                    ).status_code == 201
    assert api.put("/v1/identity/settings", json={"graph_limit": 7}).status_code == 200
    other = _other()
    assert "idfa" not in {n["code"] for n in api.get("/v1/identity/namespaces", sandbox=other).json()}
    assert api.get("/v1/identity/settings", sandbox=other).json()["graph_limit"] == 50
    assert_error(api.delete("/v1/identity/namespaces/idfa", sandbox=other), 404, "not_found")
    # the same identity in two sandboxes is two people
    web = {s: api.post("/v1/datasets", json={"name": "Web", "kind": "event"}, sandbox=s).json()["id"]
           for s in (api.sandbox, other)}
    record = {"identities": [{"namespace": "email", "id": "same@example.com"}],
              "event": {"id": "e-1", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}
    ids = {s: api.post(f"/v1/datasets/{web[s]}/records", json=record, sandbox=s).json()["results"][0]["profile_id"]
           for s in web}
    assert ids[api.sandbox] != ids[other]


def test_profiles_and_privacy_deletions_are_per_sandbox(api):
    crm = api.post("/v1/datasets", json={"name": "CRM", "kind": "profile"}).json()["id"]
    answer = api.post(f"/v1/datasets/{crm}/records", json={
        "identities": [{"namespace": "email", "id": "sarah.rose@example.com"}],
        "attributes": {"person": {"first_name": "Sarah"}}}).json()
    profile_id = answer["results"][0]["profile_id"]
    other = _other()
    lookup = {"namespace": "email", "id": "sarah.rose@example.com"}
    assert_error(api.get("/v1/profiles/lookup", params=lookup, sandbox=other), 404, "not_found")
    assert_error(api.get(f"/v1/profiles/{profile_id}", sandbox=other), 404, "not_found")
    assert_error(api.get(f"/v1/profiles/{profile_id}/events", sandbox=other), 404, "not_found")
    assert api.get("/v1/profiles", params={"q": "sarah"}, sandbox=other).json()["total"] == 0
    assert_error(api.request("DELETE", "/v1/profiles/lookup", params=lookup, sandbox=other), 404, "not_found")
    assert api.get("/v1/profiles/lookup", params=lookup).status_code == 200  # untouched here
    assert api.request("DELETE", "/v1/profiles/lookup", params=lookup).status_code == 200
    assert api.get("/v1/privacy/deletions").json()["total"] == 1
    assert api.get("/v1/privacy/deletions", sandbox=other).json()["total"] == 0


def test_sources_are_per_sandbox(api):
    ids = {kind: api.post("/v1/datasets", json={"name": kind, "kind": kind}).json()["id"]
           for kind in ("profile", "event")}
    created = api.post("/v1/sources", json={"name": "web", "type": "tracking_api", "datasets": ids}).json()
    other = _other()
    assert api.get("/v1/sources", sandbox=other).json()["total"] == 0
    path = f"/v1/sources/{created['id']}"
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/resume"),
                           ("POST", "/run"), ("POST", "/test"), ("GET", "/preview"), ("GET", "/runs"),
                           ("GET", "/runs/1"), ("GET", "/messages")):
        kwargs = {"json": {}} if method == "PATCH" else {}
        assert_error(api.request(method, path + suffix, sandbox=other, **kwargs), 404, "not_found")
    # a source cannot bind another sandbox's datasets
    assert_error(api.post("/v1/sources", sandbox=other, json={"name": "web", "type": "tracking_api",
                                                              "datasets": ids}), 404, "not_found")
    # the write key writes into its source's sandbox, whatever X-Sandbox says
    response = api.client.post("/sources/segment/v1/identify", auth=(created["write_key"], ""),
                               headers={"X-Sandbox": other}, json={"userId": "C-1", "messageId": "m-1"})
    assert response.status_code == 200, response.text
    lookup = {"namespace": "crm_id", "id": "C-1"}
    assert api.get("/v1/profiles/lookup", params=lookup).status_code == 200
    assert_error(api.get("/v1/profiles/lookup", params=lookup, sandbox=other), 404, "not_found")
    assert api.get(path).status_code == 200  # untouched by the other sandbox's attempts


def test_source_types_are_one_catalog_for_every_sandbox(api):
    assert api.get("/v1/source-types").json() == api.get("/v1/source-types", sandbox=_other()).json()
