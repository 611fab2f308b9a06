"""Destinations and activations over HTTP (API.md, "Destinations and activation"), on SQLite and
PostgreSQL: the policy evaluation that refuses an activation with its lineage, secrets never
read back, segment and destination deletion refused while in use, re-checks that pause, the
data-flow graph, and errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.api.conftest import assert_error
from tests.api.test_governance import GIFT_GIVERS, SARAH_EMAIL, CRM_ID, _ingest, _labelled, _policy, _segment

SECRET = "luma-email-secret-0123456789"


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _destination(api, name: str, actions: list[str], *, consent: str | None = None, config: dict | None = None,
                 type_: str = "webhook") -> dict:
    body = {"name": name, "type": type_, "marketing_actions": actions,
            "config": config or {"url": "http://127.0.0.1:9/hook", "secret": SECRET}}
    if consent:
        body["consent"] = consent
    response = api.post("/v1/destinations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def luma_governance(api) -> dict:
    """The story's labels and policies, Sarah's CRM profile and her cart, the gift-giving segment."""
    crm = _labelled(api, "profile", "CRM contacts", ["C2"], {"email": ["I1"], "home_address.street": ["S1"]})
    web = _labelled(api, "event", "Web events")
    now = datetime.now(timezone.utc)
    _ingest(api, crm, [{"identities": [SARAH_EMAIL, CRM_ID], "attributes": {
        "person": {"first_name": "Sarah", "last_name": "Rose"}, "email": "sarah.rose@example.com",
        "home_address": {"street": "1 Main St"}, "loyalty": {"tier": "bronze"}, "preferred_category": "womens",
        "preferred_size": "S", "consents": {"email": "y", "ads": "y"}}}])
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "cart-1", "type": "addToCart", "timestamp": _iso(now - timedelta(hours=2)), "channel": "web",
        "product": {"sku": "MH01-L", "category": "mens", "size": "L"}}}])
    _policy(api, "No third-party export of contract data", "export_to_third_party", "C2")
    _policy(api, "No email targeting of located identities", "email_targeting", "C4 OR (I1 AND S1)")
    _segment(api, "gift-givers", GIFT_GIVERS)
    return {"crm": crm, "web": web}


def test_an_activation_that_would_break_a_policy_is_refused_with_its_lineage(api):
    luma_governance(api)
    display = _destination(api, "Google Display", ["cross_site_targeting", "export_to_third_party"],
                           consent="consents.ads")
    response = api.post("/v1/activations", role="marketer", json={
        "segment": "gift-givers", "destination": display["id"], "attributes": ["email"], "identities": ["email"]})
    error = assert_error(response, 409, "policy_violation")
    [violation] = error["details"]["violations"]
    assert violation["policy"]["name"] == "No third-party export of contract data"
    assert violation["marketing_action"] == "export_to_third_party" and violation["labels"] == ["C2"]
    steps = {(s["attribute"], s["dataset"]["name"], s["label"], s["level"]) for s in violation["lineage"]}
    assert ("email", "CRM contacts", "C2", "dataset") in steps and ("loyalty.tier", "CRM contacts", "C2", "dataset") in steps
    # nothing was created
    assert api.get("/v1/activations").json()["total"] == 0
    assert api.get(f"/v1/destinations/{display['id']}").json()["activations"] == 0


def test_an_allowed_activation_defaults_and_reads(api):
    luma_governance(api)
    email = _destination(api, "Luma Email", ["email_targeting"], consent="consents.email")
    assert email["config"] == {"url": "http://127.0.0.1:9/hook", "secret_set": True}
    assert SECRET not in api.get(f"/v1/destinations/{email['id']}").text
    assert SECRET not in api.get("/v1/destinations").text
    response = api.post("/v1/activations", role="marketer", json={
        "segment": "gift-givers", "destination": email["id"], "attributes": ["email", "person.first_name"],
        "identities": ["email"]})
    assert response.status_code == 201, response.text
    activation = response.json()
    start, end = (datetime.fromisoformat(activation[k]) for k in ("start", "end"))
    assert end - start == timedelta(days=90)
    assert activation["status"] == "active" and activation["violations"] == []
    assert api.get(f"/v1/activations/{activation['id']}").json()["segment"] == "gift-givers"
    # the same pair again
    assert_error(api.post("/v1/activations", json={"segment": "gift-givers", "destination": email["id"]}), 409)
    # in use: neither the segment nor the destination can go
    error = assert_error(api.delete("/v1/segments/gift-givers"), 409, "segment_in_use")
    assert error["details"]["activations"] == [activation["id"]]
    assert_error(api.delete(f"/v1/destinations/{email['id']}"), 409, "destination_in_use")
    # exporting the street address too would break the email policy: refused, nothing changes
    changed = api.patch(f"/v1/activations/{activation['id']}", json={"attributes": ["email", "home_address.street"]})
    assert_error(changed, 409, "policy_violation")
    assert api.get(f"/v1/activations/{activation['id']}").json()["attributes"] == ["email", "person.first_name"]
    assert api.delete(f"/v1/activations/{activation['id']}").status_code == 204
    assert api.delete("/v1/segments/gift-givers").status_code == 204


def test_a_new_policy_pauses_an_active_activation_with_the_reason(api):
    luma_governance(api)
    email = _destination(api, "Luma Email", ["email_targeting"], consent="consents.email")
    activation = api.post("/v1/activations", json={"segment": "gift-givers", "destination": email["id"],
                                                   "attributes": ["email"]}).json()
    _policy(api, "No email targeting of contract data", "email_targeting", "C2")
    paused = api.get(f"/v1/activations/{activation['id']}").json()
    assert paused["status"] == "paused" and "No email targeting of contract data" in paused["paused_reason"]
    assert paused["violations"][0]["labels"] == ["C2"]
    # resuming evaluates again: still refused
    assert_error(api.patch(f"/v1/activations/{activation['id']}", json={"status": "active"}), 409, "policy_violation")
    flow = api.get("/v1/dataflow").json()
    node = next(n for n in flow["nodes"] if n["id"] == f"activation:{activation['id']}")
    assert node["policy"] == "violation" and node["status"] == "paused"


def test_dataflow_graph(api):
    ids = luma_governance(api)
    email = _destination(api, "Luma Email", ["email_targeting"], consent="consents.email")
    activation = api.post("/v1/activations", json={"segment": "gift-givers", "destination": email["id"],
                                                   "attributes": ["email"]}).json()
    flow = api.get("/v1/dataflow").json()
    kinds = {n["id"]: n["kind"] for n in flow["nodes"]}
    assert kinds[f"dataset:{ids['crm']}"] == "dataset" and kinds["segment:gift-givers"] == "segment"
    assert kinds[f"destination:{email['id']}"] == "destination"
    edges = {(e["source"], e["target"]): e for e in flow["edges"]}
    assert edges[(f"dataset:{ids['crm']}", "segment:gift-givers")]["labels"] == ["C2"]
    assert (f"dataset:{ids['web']}", "segment:gift-givers") in edges
    assert edges[("segment:gift-givers", f"activation:{activation['id']}")]["policy"] == "allowed"
    assert (f"activation:{activation['id']}", f"destination:{email['id']}") in edges


def test_errors(api):
    luma_governance(api)
    bad = {"name": "x", "type": "webhook", "marketing_actions": ["email_targeting"],
           "config": {"directory": "out"}}
    assert_error(api.post("/v1/destinations", json=bad), 422)
    assert_error(api.post("/v1/destinations", json={**bad, "marketing_actions": ["nope"],
                                                    "config": {"url": "http://x", "secret": SECRET}}), 422,
                 "unknown_marketing_action")
    assert_error(api.post("/v1/destinations", json={**bad, "type": "file", "config": {"directory": "a/../../etc"}}),
                 422, "invalid_destination")
    assert_error(api.post("/v1/destinations", json={**bad, "consent": "consents.mail",
                                                    "config": {"url": "http://x", "secret": SECRET}}),
                 422, "invalid_destination")
    email = _destination(api, "Luma Email", ["email_targeting"])
    assert_error(api.post("/v1/activations", json={"segment": "nope", "destination": email["id"]}), 404)
    assert_error(api.post("/v1/activations", json={"segment": "gift-givers", "destination": 99999}), 404)
    assert_error(api.post("/v1/activations", json={"segment": "gift-givers", "destination": email["id"],
                                                   "attributes": ["emial"]}), 422, "invalid_attributes")
    assert_error(api.post("/v1/activations", json={"segment": "gift-givers", "destination": email["id"],
                                                   "identities": ["nope"]}), 422, "invalid_identities")
    assert_error(api.post("/v1/activations", json={"segment": "gift-givers", "destination": email["id"],
                                                   "start": "2026-12-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}),
                 422, "invalid_activation")
    assert_error(api.get(f"/v1/destinations/{email['id']}/deliveries?cursor=zzz"), 422, "invalid_cursor")
    assert_error(api.post("/v1/destinations", role="marketer", json=bad), 403)
    assert_error(api.post("/v1/activations", role="reader", json={"segment": "gift-givers", "destination": 1}), 403)
