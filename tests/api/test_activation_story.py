"""The Luma story, steps 7 and 8, end to end through the API on SQLite and PostgreSQL, with a real
HTTP receiver on a local port that checks every signature: the activation to Google Display is
refused with its lineage, the one to Luma Email is allowed; members without email consent are
left out and counted; Sarah's entry arrives with her mapped attributes and identities, and after
her purchase (ingested) her removal; a profile that withdraws consent is removed too."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import assert_error
from tests.api.conftest import create_dataset as _dataset
from tests.api.test_governance import GIFT_GIVERS, _labelled, _policy
from tests.receiver import Receiver

SECRET = "luma-email-secret-0123456789"
SARAH = {"namespace": "email", "id": "sarah.rose@example.com"}
JON = {"namespace": "email", "id": "jon.park@example.com"}
ANA = {"namespace": "email", "id": "ana.lima@example.com"}


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _ingest(api, dataset_id: int, records: list) -> None:
    response = api.post(f"/v1/datasets/{dataset_id}/records", json={"records": records})
    assert response.status_code == 200, response.text
    assert all(r["status"] == "accepted" for r in response.json()["results"]), response.text


def _cart(identity: dict, event_id: str, at: datetime) -> dict:
    return {"identities": [identity], "event": {"id": event_id, "type": "addToCart", "timestamp": _iso(at),
                                                "channel": "web",
                                                "product": {"sku": "MH01-L", "category": "mens", "size": "L"}}}


def _person(identity: dict, first: str, email_consent: str | None) -> dict:
    attributes = {"person": {"first_name": first}, "email": identity["id"], "loyalty": {"tier": "bronze"},
                  "preferred_category": "womens", "preferred_size": "S", "home_address": {"street": "1 Main St"}}
    if email_consent:
        attributes["consents"] = {"email": email_consent, "ads": "y"}
    return {"identities": [identity], "attributes": attributes}


@pytest.fixture
def receiver():
    running = Receiver(SECRET)
    yield running
    running.stop()


def test_luma_steps_7_and_8(api, receiver):
    crm = _labelled(api, "profile", "CRM contacts", ["C2"], {"email": ["I1"], "home_address.street": ["S1"]})
    web, mobile = _labelled(api, "event", "Web events"), _dataset(api, "event", "Mobile events")
    _policy(api, "No third-party export of contract data", "export_to_third_party", "C2")
    _policy(api, "No email targeting of located identities", "email_targeting", "C4 OR (I1 AND S1)")
    now = datetime.now(timezone.utc)
    _ingest(api, crm, [_person(SARAH, "Sarah", "y"), _person(JON, "Jon", None), _person(ANA, "Ana", "y")])
    _ingest(api, web, [_cart(SARAH, "w-1", now - timedelta(hours=2)), _cart(JON, "w-2", now - timedelta(hours=2))])
    response = api.post("/v1/segments", role="marketer", json={
        "key": "gift-givers", "name": "Gift-giving cart abandoners", "expression": GIFT_GIVERS,
        "evaluation": "streaming"})
    assert response.status_code == 201, response.text
    assert response.json()["size"] == 2

    # step 7: Google Display (an ad platform: cross-site targeting, a third party) is refused
    display = api.post("/v1/destinations", json={
        "name": "Google Display", "type": "webhook", "marketing_actions": ["cross_site_targeting",
                                                                          "export_to_third_party"],
        "consent": "consents.ads", "config": {"url": receiver.url, "secret": SECRET}}).json()
    refused = api.post("/v1/activations", role="marketer", json={
        "segment": "gift-givers", "destination": display["id"], "attributes": ["email"], "identities": ["email"]})
    [violation] = assert_error(refused, 409, "policy_violation")["details"]["violations"]
    assert (violation["policy"]["name"], violation["marketing_action"]) == (
        "No third-party export of contract data", "export_to_third_party")
    assert {"attribute": "email", "kind": "profile", "use": "export", "dataset": {"id": crm, "name": "CRM contacts"},
            "label": "C2", "level": "dataset", "via_segment": None} in violation["lineage"]
    # Luma Email (email targeting, with email consent) is allowed: I1 alone breaks nothing
    email = api.post("/v1/destinations", json={
        "name": "Luma Email", "type": "webhook", "marketing_actions": ["email_targeting"],
        "consent": "consents.email", "config": {"url": receiver.url, "secret": SECRET}}).json()
    response = api.post("/v1/activations", role="marketer", json={
        "segment": "gift-givers", "destination": email["id"], "attributes": ["email", "person.first_name"],
        "identities": ["email"]})
    assert response.status_code == 201, response.text
    activation = response.json()
    receiver.wait(lambda: len(receiver.changes()) >= 1)
    sarah = api.get("/v1/profiles/lookup", params=SARAH).json()["id"]
    [entry] = receiver.changes()
    assert entry == {"profile_id": sarah, "segment": "gift-givers", "status": "entered", "at": entry["at"],
                     "identities": {"email": ["sarah.rose@example.com"]},
                     "attributes": {"email": "sarah.rose@example.com", "person.first_name": "Sarah"}}
    assert receiver.bad_signatures == 0
    # Jon has no email consent: never sent, counted
    read = api.get(f"/v1/activations/{activation['id']}").json()
    assert (read["members_exported"], read["excluded_no_consent"]) == (1, 1)
    [delivery] = api.get(f"/v1/destinations/{email['id']}/deliveries").json()["items"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1 and delivery["response_status"] == 200
    assert (delivery["changes"], delivery["excluded_no_consent"]) == (1, 1)

    # Ana joins the audience (streaming): her entry arrives
    _ingest(api, web, [_cart(ANA, "w-3", now - timedelta(hours=1))])
    receiver.wait(lambda: len(receiver.changes()) >= 2)
    ana = api.get("/v1/profiles/lookup", params=ANA).json()["id"]
    assert receiver.changes()[1]["profile_id"] == ana and receiver.changes()[1]["status"] == "entered"

    # step 8: Sarah buys the sweatshirt on her phone: she exits at once, and the removal arrives
    _ingest(api, mobile, [{"identities": [{"namespace": "ecid", "id": "mobile-1"}, SARAH], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(now), "channel": "mobile",
        "device": {"type": "phone"}, "order": {"id": "o-1", "total": 52.0}}}])
    receiver.wait(lambda: any(c["status"] == "exited" for c in receiver.changes()))
    removal = next(c for c in receiver.changes() if c["status"] == "exited")
    assert removal["profile_id"] == sarah and removal["identities"] == {"email": ["sarah.rose@example.com"]}
    assert removal["at"] > entry["at"]

    # Ana withdraws her email consent: she is removed from the destination, and counted as left out
    _ingest(api, crm, [{"identities": [ANA], "attributes": {"consents": {"email": "n"}}}])
    receiver.wait(lambda: any(c["status"] == "exited" and c["profile_id"] == ana for c in receiver.changes()))
    read = api.get(f"/v1/activations/{activation['id']}").json()
    assert (read["members_exported"], read["excluded_no_consent"]) == (0, 2)
    assert receiver.bad_signatures == 0
    # each change arrived once (nothing failed, nothing was sent twice)
    assert len(receiver.posts) == len(receiver.accepted())
