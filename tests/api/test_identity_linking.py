"""Identity-graph linking rules over HTTP, on SQLite and PostgreSQL: the worked examples of
docs/identity.md (a shared laptop, a family email, one person's two devices), a split after which
a streaming segment's membership exits for one side and stays for the other, the simulation, the
settings and the re-evaluation job."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from cdp.storage.models import membership_changes
from tests.api.conftest import assert_error
from tests.api.conftest import create_dataset as _dataset

LAPTOP = {"namespace": "ecid", "id": "family-laptop"}
PHONE = {"namespace": "ecid", "id": "anna-phone"}
ANNA = {"namespace": "crm_id", "id": "C-ANNA"}
BEN = {"namespace": "crm_id", "id": "C-BEN"}
FAMILY = {"namespace": "email", "id": "family@example.com"}
T0 = datetime(2026, 12, 3, 15, 0, tzinfo=timezone.utc)


def _event(event_id: str, *identities: dict, kind: str = "pageView") -> dict:
    return {"identities": list(identities), "event": {"id": event_id, "type": kind,
                                                      "timestamp": "2026-12-03T15:00:00Z"}}


def _send(api, dataset: int, *records: dict) -> list[dict]:
    response = api.post(f"/v1/datasets/{dataset}/records", json={"records": list(records)})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _profile(api, identity: dict) -> dict:
    response = api.get("/v1/profiles/lookup", params=identity)
    assert response.status_code == 200, response.text
    return response.json()


def _holds(profile: dict) -> set[str]:
    return {f"{i['namespace']}:{i['id']}" for i in profile["identities"]}


def _event_ids(api, profile: dict) -> set[str]:
    return {e["id"] for e in api.get(f"/v1/profiles/{profile['id']}/events").json()["items"]}


def test_a_shared_laptop_follows_the_person_who_logged_in_last(api):
    web = _dataset(api, "event", "Web")
    _send(api, web, _event("a-1", ANNA, LAPTOP, kind="purchase"))
    anna_id = _profile(api, ANNA)["id"]
    [answer] = _send(api, web, _event("b-1", BEN, LAPTOP))
    assert any("linking rules: removed the link(s) crm_id:C-ANNA – ecid:family-laptop" in w for w in answer["warnings"])
    anna, ben = _profile(api, ANNA), _profile(api, BEN)
    assert anna["id"] == anna_id != ben["id"]  # Anna's id still names Anna; the laptop's part is split off
    assert _holds(anna) == {"crm_id:C-ANNA"} and _holds(ben) == {"crm_id:C-BEN", "ecid:family-laptop"}
    assert _event_ids(api, anna) == {"a-1"} and _event_ids(api, ben) == {"b-1"}  # the purchase stays Anna's
    [removed] = anna["graph"]["removed_links"]
    assert {i["id"] for i in removed["identities"]} == {"C-ANNA", "family-laptop"}
    assert "unique namespace crm_id" in removed["reason"] and removed["removed_at"]
    [link] = ben["graph"]["links"]
    assert link["dataset_id"] == web and link["request_id"] and link["record_index"] == 0
    # anonymous browsing on the laptop belongs to whoever holds it
    _send(api, web, _event("x-1", LAPTOP))
    assert _event_ids(api, _profile(api, BEN)) == {"b-1", "x-1"}
    # Anna logs in again: the laptop, and what it carried alone, go back to her
    _send(api, web, _event("a-2", LAPTOP, ANNA))
    anna, ben = _profile(api, ANNA), _profile(api, BEN)
    assert anna["id"] == anna_id and _holds(anna) == {"crm_id:C-ANNA", "ecid:family-laptop"}
    assert _event_ids(api, anna) == {"a-1", "a-2", "x-1"} and _event_ids(api, ben) == {"b-1"}
    assert _holds(ben) == {"crm_id:C-BEN"}
    # the old id of a profile split off and merged back still resolves
    assert api.get(f"/v1/profiles/{anna_id}").json()["id"] == anna_id


def test_two_people_sharing_a_family_email(api):
    """email is not unique, but one graph holds one crm_id: the email goes with the person who
    used it last, and each person keeps their own records."""
    crm = _dataset(api, "profile", "CRM")
    for person, name in ((ANNA, "Anna"), (BEN, "Ben")):
        response = api.post(f"/v1/datasets/{crm}/records", json={"identities": [person, FAMILY],
                                                                 "attributes": {"person": {"first_name": name}}})
        assert response.json()["accepted"] == 1, response.text
    anna, ben = _profile(api, ANNA), _profile(api, BEN)
    assert anna["id"] != ben["id"]
    assert _holds(anna) == {"crm_id:C-ANNA"} and _holds(ben) == {"crm_id:C-BEN", "email:family@example.com"}
    assert anna["attributes"]["person"]["first_name"] == "Anna" and ben["attributes"]["person"]["first_name"] == "Ben"
    assert anna["provenance"]["person.first_name"]["dataset_id"] == crm


def test_one_person_with_two_devices_is_one_profile(api):
    web = _dataset(api, "event", "Web")
    _send(api, web, _event("1", ANNA, LAPTOP), _event("2", ANNA, PHONE), _event("3", PHONE), _event("4", LAPTOP))
    anna = _profile(api, ANNA)
    assert _holds(anna) == {"crm_id:C-ANNA", "ecid:family-laptop", "ecid:anna-phone"}
    assert _event_ids(api, anna) == {"1", "2", "3", "4"} and anna["graph"]["removed_links"] == []
    assert len(anna["graph"]["links"]) == 2


def test_a_split_exits_a_streaming_segment_for_one_side_and_keeps_it_for_the_other(api, engine, sandbox):
    web = _dataset(api, "event", "Web")
    for key, kind in (("buyers", "purchase"), ("carts", "addToCart")):
        response = api.post("/v1/segments", json={"key": key, "name": key, "evaluation": "streaming",
                                                  "expression": f'exists event where type = "{kind}"'})
        assert response.status_code == 201, response.text
    _send(api, web, _event("a-cart", ANNA, LAPTOP, kind="addToCart"))
    _send(api, web, _event("anon-buy", LAPTOP, kind="purchase"))  # on the laptop, nobody logged in
    anna_id = _profile(api, ANNA)["id"]
    _send(api, web, _event("b-view", BEN, LAPTOP))  # Ben logs in: the laptop and its purchase go to him
    ben_id = _profile(api, BEN)["id"]
    with engine.connect() as connection:
        changes = [(r.segment_key, r.profile_id, r.status) for r in connection.execute(
            sa.select(membership_changes).where(membership_changes.c.sandbox == sandbox)
            .order_by(membership_changes.c.pk))]
    assert changes == [("carts", anna_id, "entered"), ("buyers", anna_id, "entered"),
                       ("buyers", anna_id, "exited"), ("buyers", ben_id, "entered")]
    members = {m["segment"]: m["status"] for m in _profile(api, ANNA)["memberships"]}
    assert members == {"carts": "realized", "buyers": "exited"}
    assert {m["segment"]: m["status"] for m in _profile(api, BEN)["memberships"]} == {"buyers": "realized"}


def test_a_record_with_two_ids_of_a_unique_namespace_is_rejected(api):
    web = _dataset(api, "event", "Web")
    [result] = _send(api, web, _event("1", ANNA, BEN))
    assert result["status"] == "rejected" and "unique namespace" in result["errors"][0]["message"]
    assert api.get("/v1/profiles/lookup", params=ANNA).status_code == 404


def test_the_simulation_shows_profiles_and_removed_links_and_stores_nothing(api):
    body = {"records": [{"identities": [ANNA, LAPTOP]}, {"identities": [BEN, LAPTOP]},
                        {"identities": [ANNA, BEN]}, {"identities": [{"namespace": "email", "id": "nope"}]}]}
    answer = api.post("/v1/identity/simulate", json=body, role="reader")
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [[i["id"] for i in p["identities"]] for p in got["profiles"]] == [["C-ANNA"], ["C-BEN", "family-laptop"]]
    assert [p["records"] for p in got["profiles"]] == [[0], [1]]
    [removed] = got["removed_links"]
    assert removed["record"] == 0 and "crm_id" in removed["reason"]
    assert [r["record"] for r in got["rejected"]] == [2, 3]
    assert api.get("/v1/profiles/lookup", params=ANNA).status_code == 404  # nothing stored
    # rules to try: no unique namespace, everything seen together is one profile
    tried = api.post("/v1/identity/simulate", json={**body, "unique_namespaces": []}, role="reader").json()
    assert len(tried["profiles"]) == 1 and tried["removed_links"] == [] and [r["record"] for r in tried["rejected"]] == [3]
    assert_error(api.post("/v1/identity/simulate", json={**body, "unique_namespaces": ["idfa"]}), 422,
                 "invalid_identity_settings")


def test_rules_in_the_settings_and_the_reevaluation_job(api, engine, sandbox):
    web = _dataset(api, "event", "Web")
    api.put("/v1/identity/settings", json={"unique_namespaces": []})
    _send(api, web, _event("1", ANNA, LAPTOP), _event("2", BEN, LAPTOP))
    assert _profile(api, ANNA)["id"] == _profile(api, BEN)["id"]  # rules off: one profile
    assert_error(api.put("/v1/identity/settings", json={"unique_namespaces": ["idfa"]}), 422,
                 "invalid_identity_settings")
    assert_error(api.put("/v1/identity/settings", json={"namespace_priority": ["email", "email"]}), 422,
                 "invalid_identity_settings")
    changed = api.put("/v1/identity/settings", json={"unique_namespaces": ["crm_id"],
                                                     "namespace_priority": ["email"], "reevaluate": True})
    assert changed.status_code == 200, changed.text
    settings = changed.json()
    assert settings["unique_namespaces"] == ["crm_id"]
    assert settings["namespace_priority"] == ["email", "crm_id", "loyalty_id", "phone", "ecid"]
    assert settings["reevaluation"]["status"] in ("queued", "running", "succeeded")
    # the service's job runner applies the rules to the sandbox's graphs
    deadline = time.monotonic() + 60
    while (job := api.get("/v1/identity/settings").json()["reevaluation"])["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded" and job["message"].startswith("1 graph(s) changed"), job
    anna, ben = _profile(api, ANNA), _profile(api, BEN)
    assert anna["id"] != ben["id"] and _holds(ben) == {"crm_id:C-BEN", "ecid:family-laptop"}
    assert _event_ids(api, anna) == {"1"} and _event_ids(api, ben) == {"2"}
    from cdp.identity.reevaluation import reevaluate_sandbox
    from cdp.storage.database import write_transaction

    with write_transaction(engine) as connection:  # nothing more to do
        assert reevaluate_sandbox(connection, sandbox=sandbox, now=T0 + timedelta(days=1)) == (0, set())


def test_a_privacy_deletion_takes_the_links_of_its_identities_on_both_sides(api):
    web = _dataset(api, "event", "Web")
    _send(api, web, _event("a-1", ANNA, LAPTOP), _event("b-1", BEN, LAPTOP))
    assert len(_profile(api, BEN)["graph"]["removed_links"]) == 1
    assert api.delete("/v1/profiles/lookup", params=ANNA).status_code == 200
    ben = _profile(api, BEN)
    assert ben["graph"]["removed_links"] == [] and len(ben["graph"]["links"]) == 1
