"""Data in one sandbox is invisible from another, for every resource type."""

from __future__ import annotations

import uuid

from tests.api.conftest import SARAH, assert_error, new_sandbox

# Every /v1 resource (first path segment) and the test below that proves its isolation.
ISOLATION_TESTS = {
    "schema": "test_schema_is_per_sandbox",
    "datasets": "test_datasets_are_per_sandbox",
    "keys": "test_keys_are_per_sandbox",
    "me": "test_a_key_reads_itself_only_where_it_works",
    "expressions": "test_expressions_check_against_the_sandbox_schema_and_segments",
    "profiles": "test_profile_evaluation_uses_the_sandbox_schema_and_segments",
    "batches": "test_batches_are_per_sandbox",
    "identity": "test_identity_namespaces_and_settings_are_per_sandbox",
    "privacy": "test_profiles_and_privacy_deletions_are_per_sandbox",
    "sandboxes": "test_a_key_bound_to_a_sandbox_sees_only_that_sandbox",
    "segments": "test_segments_are_per_sandbox",
    "segment-jobs": "test_segment_jobs_are_per_sandbox",
    "evaluate": "test_evaluate_reads_the_sandbox_segments_and_profiles",
    "labels": "test_custom_labels_are_per_sandbox",
    "marketing-actions": "test_custom_marketing_actions_are_per_sandbox",
    "policies": "test_policies_and_their_evaluation_are_per_sandbox",
    "sources": "test_sources_are_per_sandbox",
    "source-types": "test_source_types_are_one_catalog_for_every_sandbox",
    "destinations": "test_destinations_activations_and_the_data_flow_are_per_sandbox",
    "activations": "test_destinations_activations_and_the_data_flow_are_per_sandbox",
    "dataflow": "test_destinations_activations_and_the_data_flow_are_per_sandbox",
}


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
    other = new_sandbox(api)
    theirs = api.get("/v1/schema", sandbox=other).json()
    assert theirs["is_default"] and theirs["version"] == 0 and "shoe_size" not in theirs["profile"]
    assert theirs["sandbox"] == other
    assert api.get("/v1/schema").json()["profile"]["shoe_size"] == "number"


def test_datasets_are_per_sandbox(api):
    created = api.post("/v1/datasets", json={"name": "CRM contacts", "kind": "profile", "labels": ["C2"]}).json()
    other = new_sandbox(api)
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
    other = new_sandbox(api)
    assert_error(api.get(f"/v1/keys/{created['id']}", sandbox=other), 404, "not_found")
    assert_error(api.delete(f"/v1/keys/{created['id']}", sandbox=other), 404, "not_found")
    listed = api.get("/v1/keys", sandbox=other, params={"limit": 500}).json()["items"]
    assert created["id"] not in {k["id"] for k in listed}
    assert all(k["sandbox"] in (None, other) for k in listed)
    assert_error(api.get("/v1/schema", key=created["key"], sandbox=other), 403, "sandbox_forbidden")


def test_a_key_reads_itself_only_where_it_works(api):
    created = api.post("/v1/keys", json={"name": "bound", "role": "marketer"}).json()  # bound to api's sandbox
    me = api.get("/v1/me", key=created["key"])
    assert me.status_code == 200 and me.json()["id"] == created["id"] and me.json()["sandbox"] == created["sandbox"]
    assert_error(api.get("/v1/me", key=created["key"], sandbox=new_sandbox(api)), 403, "sandbox_forbidden")


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
    other = new_sandbox(api)
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
    error = assert_error(api.post("/v1/profiles/evaluate", sandbox=new_sandbox(api), json=body), 422,
                         "invalid_expression")
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
    other = new_sandbox(api)
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
    other = new_sandbox(api)
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
    other = new_sandbox(api)
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


# ---- sandboxes exist before use ------------------------------------------------------------------

def test_an_unknown_sandbox_is_404_and_nothing_is_written(api):
    typo = f"t-{uuid.uuid4().hex[:12]}"  # never created
    for method, path, body in (("GET", "/v1/schema", None), ("GET", "/v1/datasets", None),
                               ("POST", "/v1/datasets", {"name": "Web", "kind": "event"}),
                               ("POST", "/v1/identity/namespaces", {"code": "idfa", "name": "IDFA", "kind": "device"}),
                               ("GET", "/v1/profiles/lookup?namespace=email&id=a@b.co", None),
                               ("POST", "/v1/keys", {"name": "k", "role": "reader"})):
        error = assert_error(api.request(method, path, sandbox=typo, json=body), 404, "unknown_sandbox")
        assert error["details"] == {"resource": "sandbox", "sandbox": typo}
        assert "POST /v1/sandboxes" in error["message"]
    for role in ("reader", "marketer", "data_steward"):
        assert_error(api.get("/v1/datasets", sandbox=typo, role=role), 404, "unknown_sandbox")
    assert_error(api.get("/v1/datasets", sandbox=typo, role=None), 401, "missing_api_key")  # the key comes first
    created = api.post("/v1/sandboxes", json={"name": typo})
    assert created.status_code == 201, created.text
    assert api.get("/v1/datasets", sandbox=typo).json()["total"] == 0  # the refused POST left nothing
    assert api.get("/v1/identity/namespaces", sandbox=typo).status_code == 200


def test_sandboxes_are_created_by_an_admin_valid_everywhere_and_listed(api):
    name = f"s-{uuid.uuid4().hex[:12]}"
    created = api.post("/v1/sandboxes", json={"name": name, "description": "staging"}, sandbox=name)
    assert created.status_code == 201, created.text  # naming it in X-Sandbox while creating it is fine
    assert created.json()["name"] == name and created.json()["description"] == "staging"
    assert_error(api.post("/v1/sandboxes", json={"name": name}), 409, "sandbox_exists")
    listed = api.get("/v1/sandboxes", params={"limit": 500}).json()
    names = [s["name"] for s in listed["items"]]
    assert "prod" in names and name in names and names == sorted(names)
    assert listed["total"] >= 3
    for bad in ("Prod", "", "a" * 65, "1abc", "a b", "dev\n"):
        assert_error(api.post("/v1/sandboxes", json={"name": bad}), 422, "validation_error")
    for role in ("reader", "marketer", "data_steward"):
        assert_error(api.post("/v1/sandboxes", json={"name": f"x-{uuid.uuid4().hex[:8]}"}, role=role), 403,
                     "forbidden")
        assert api.get("/v1/sandboxes", role=role).status_code == 200
    bound = api.post("/v1/keys", json={"name": "sandbox admin", "role": "admin"}).json()["key"]
    error = assert_error(api.post("/v1/sandboxes", json={"name": f"x-{uuid.uuid4().hex[:8]}"}, key=bound), 403,
                         "sandbox_forbidden")
    assert error["details"] == {"key_sandbox": api.sandbox}


def test_a_key_bound_to_a_sandbox_sees_only_that_sandbox(api):
    bound = api.post("/v1/keys", json={"name": "bound", "role": "reader"}).json()["key"]
    listed = api.get("/v1/sandboxes", key=bound).json()
    assert [s["name"] for s in listed["items"]] == [api.sandbox] and listed["total"] == 1


def test_the_migration_registers_prod_and_every_sandbox_already_in_use(sqlite_url_factory):
    import sqlalchemy as sa

    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade
    from cdp.storage.models import sandboxes

    engine = create_engine(sqlite_url_factory())
    try:
        upgrade(engine, "0004")
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO datasets (sandbox, name, kind, labels, field_labels, created_at, updated_at) "
                "VALUES ('legacy', 'Web', 'event', '[]', '{}', '2026-11-29 00:00:00', '2026-11-29 00:00:00')"))
            connection.execute(sa.text("INSERT INTO api_keys (key_id, name, role, sandbox, secret_hash, created_at) "
                                       "VALUES ('abcdefgh', 'k', 'reader', 'keyed', 'x', '2026-11-29 00:00:00')"))
        upgrade(engine)
        with engine.connect() as connection:
            assert sorted(connection.execute(sa.select(sandboxes.c.name)).scalars()) == ["keyed", "legacy", "prod"]
    finally:
        engine.dispose()


def test_segments_are_per_sandbox(api):
    created = api.post("/v1/segments", json={"key": "gold", "name": "Gold", "expression": 'loyalty.tier = "gold"'})
    assert created.status_code == 201, created.text
    other = new_sandbox(api)
    assert api.get("/v1/segments", sandbox=other).json()["total"] == 0
    for method, path in (("GET", "/v1/segments/gold"), ("PATCH", "/v1/segments/gold"), ("DELETE", "/v1/segments/gold"),
                         ("GET", "/v1/segments/gold/members"), ("GET", "/v1/segments/gold/history"),
                         ("GET", "/v1/segments/gold/estimate")):
        kwargs = {"json": {"name": "x"}} if method == "PATCH" else {}
        assert_error(api.request(method, path, sandbox=other, **kwargs), 404, "not_found")
    assert_error(api.post("/v1/segments/estimate", sandbox=other, json={"expression": 'in segment "gold"'}), 422,
                 "unknown_segment")
    assert api.post("/v1/segments", sandbox=other, json={"key": "gold", "name": "Theirs",
                                                         "expression": "true"}).status_code == 201
    assert api.get("/v1/segments/gold").json()["name"] == "Gold"


def test_segment_jobs_are_per_sandbox(api):
    job = api.post("/v1/segment-jobs", json={})
    assert job.status_code == 202, job.text
    other = new_sandbox(api)
    assert_error(api.get(f"/v1/segment-jobs/{job.json()['id']}", sandbox=other), 404, "not_found")
    assert api.get("/v1/segment-jobs", sandbox=other).json()["total"] == 0
    assert api.post("/v1/segment-jobs", sandbox=other, json={}).status_code == 202  # one at a time per sandbox


def test_evaluate_reads_the_sandbox_segments_and_profiles(api):
    assert api.post("/v1/segments", json={"key": "gold", "name": "Gold", "expression": "true"}).status_code == 201
    other = new_sandbox(api)
    assert api.post("/v1/evaluate", json={"segment": "gold", "profile": SARAH}).json()["qualifies"] is True
    assert_error(api.post("/v1/evaluate", sandbox=other, json={"segment": "gold", "profile": SARAH}), 404, "not_found")


def test_custom_labels_are_per_sandbox(api):
    assert api.post("/v1/labels", json={"name": "PARTNER_ONLY"}).status_code == 201
    other = new_sandbox(api)
    assert api.get("/v1/labels", sandbox=other).json()["total"] == 16  # the standard ones
    assert_error(api.get("/v1/labels/PARTNER_ONLY", sandbox=other), 404, "not_found")
    assert_error(api.delete("/v1/labels/PARTNER_ONLY", sandbox=other), 404, "not_found")
    assert_error(api.patch("/v1/labels/PARTNER_ONLY", sandbox=other, json={"description": "x"}), 404, "not_found")
    error = assert_error(api.post("/v1/policies", sandbox=other, json={"name": "p", "marketing_action": "analytics",
                                                                       "deny": "PARTNER_ONLY"}), 422, "invalid_policy")
    assert error["details"]["errors"][0]["code"] == "unknown_label"
    assert api.post("/v1/labels", sandbox=other, json={"name": "PARTNER_ONLY"}).status_code == 201


def test_custom_marketing_actions_are_per_sandbox(api):
    assert api.post("/v1/marketing-actions", json={"key": "sms", "name": "SMS"}).status_code == 201
    other = new_sandbox(api)
    assert api.get("/v1/marketing-actions", sandbox=other).json()["total"] == 10  # the core ones
    assert_error(api.get("/v1/marketing-actions/sms", sandbox=other), 404, "not_found")
    assert_error(api.delete("/v1/marketing-actions/sms", sandbox=other), 404, "not_found")
    assert_error(api.patch("/v1/marketing-actions/sms", sandbox=other, json={"name": "x"}), 404, "not_found")
    assert_error(api.post("/v1/policies", sandbox=other, json={"name": "p", "marketing_action": "sms", "deny": "C1"}),
                 422, "unknown_marketing_action")


def test_policies_and_their_evaluation_are_per_sandbox(api):
    dataset = api.post("/v1/datasets", json={"name": "CRM", "kind": "profile", "labels": ["C2"]}).json()
    records = {"records": [{"identities": [{"namespace": "email", "id": "s@example.com"}],
                            "attributes": {"email": "s@example.com"}}]}
    assert api.post(f"/v1/datasets/{dataset['id']}/records", json=records).status_code == 200
    policy = api.post("/v1/policies", json={"name": "p", "marketing_action": "export_to_third_party", "deny": "C2",
                                            "status": "enabled"}).json()
    body = {"marketing_action": "export_to_third_party", "attributes": ["email"]}
    assert api.post("/v1/policies/evaluate", json=body).json()["allowed"] is False
    other = new_sandbox(api)
    path = f"/v1/policies/{policy['id']}"
    assert api.get("/v1/policies", sandbox=other).json()["total"] == 0
    for method in ("GET", "PATCH", "DELETE"):
        assert_error(api.request(method, path, sandbox=other, **({"json": {}} if method == "PATCH" else {})), 404,
                     "not_found")
    # the other sandbox has neither the policy nor the labelled dataset
    assert api.post("/v1/policies/evaluate", sandbox=other, json=body).json() == {
        "allowed": True, "marketing_action": "export_to_third_party", "labels": [], "violations": []}
    other_dataset = api.post("/v1/datasets", sandbox=other, json={"name": "CRM", "kind": "profile",
                                                                  "labels": ["C2"]}).json()
    assert api.post(f"/v1/datasets/{other_dataset['id']}/records", sandbox=other, json=records).status_code == 200
    assert api.post("/v1/policies/evaluate", sandbox=other, json=body).json()["allowed"] is True  # no policy there
    assert api.get(path).json()["name"] == "p"


def test_sources_are_per_sandbox(api):
    ids = {kind: api.post("/v1/datasets", json={"name": kind, "kind": kind}).json()["id"]
           for kind in ("profile", "event")}
    created = api.post("/v1/sources", json={"name": "web", "type": "tracking_api", "datasets": ids}).json()
    other = new_sandbox(api)
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
    assert api.get("/v1/source-types").json() == api.get("/v1/source-types", sandbox=new_sandbox(api)).json()


def test_destinations_activations_and_the_data_flow_are_per_sandbox(api):
    created = api.post("/v1/datasets", json={"name": "CRM", "kind": "profile"}).json()
    assert api.post("/v1/segments", json={"key": "gold", "name": "Gold", "expression": 'loyalty.tier = "gold"'}
                    ).status_code == 201
    destination = api.post("/v1/destinations", json={
        "name": "Luma Email", "type": "webhook", "marketing_actions": ["email_targeting"],
        "config": {"url": "http://127.0.0.1:9/hook", "secret": "s3cret-s3cret-s3cret"}}).json()
    activation = api.post("/v1/activations", json={"segment": "gold", "destination": destination["id"],
                                                   "attributes": ["person.first_name"]})
    assert activation.status_code == 201, activation.text
    activation = activation.json()
    other = new_sandbox(api)
    assert api.get("/v1/destinations", sandbox=other).json()["total"] == 0
    assert api.get("/v1/activations", sandbox=other).json()["total"] == 0
    assert api.get("/v1/dataflow", sandbox=other).json()["nodes"] == []
    mine = {node["id"] for node in api.get("/v1/dataflow").json()["nodes"]}
    assert {f"dataset:{created['id']}", "segment:gold", f"destination:{destination['id']}"} <= mine
    path = f"/v1/destinations/{destination['id']}"
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/deliveries"),
                           ("GET", "/deliveries/1"), ("POST", "/redeliver"), ("POST", "/export")):
        kwargs = {"json": {}} if method in ("PATCH", "POST") else {}
        assert_error(api.request(method, path + suffix, sandbox=other, **kwargs), 404, "not_found")
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {}} if method == "PATCH" else {}
        assert_error(api.request(method, f"/v1/activations/{activation['id']}", sandbox=other, **kwargs),
                     404, "not_found")
    # another sandbox cannot activate onto this sandbox's destination (nor its segment)
    assert api.post("/v1/segments", sandbox=other, json={"key": "gold", "name": "Gold",
                                                          "expression": 'loyalty.tier = "gold"'}).status_code == 201
    assert_error(api.post("/v1/activations", sandbox=other, json={"segment": "gold", "destination": destination["id"],
                                                                   "attributes": []}), 404, "not_found")
    assert api.get(path).status_code == 200 and api.get(f"/v1/activations/{activation['id']}").json()["status"] == "active"
