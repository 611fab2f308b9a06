"""The identity graph over HTTP: namespaces (normalisation, validation, custom ones), merge
policies per attribute (timestamp-ordered, dataset precedence) with provenance, memberships
re-evaluated on merge, the graph limit."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from tests.api.conftest import assert_error
from tests.api.conftest import create_dataset as _dataset


def _post(api, dataset_id: int, records: list) -> list[dict]:
    response = api.post(f"/v1/datasets/{dataset_id}/records", json={"records": records})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _accepted(api, dataset_id: int, records: list) -> list[dict]:
    results = _post(api, dataset_id, records)
    assert all(r["status"] == "accepted" for r in results), results
    return results


def _profile(api, namespace: str, value: str) -> dict:
    response = api.get("/v1/profiles/lookup", params={"namespace": namespace, "id": value})
    assert response.status_code == 200, response.text
    return response.json()


def _email(value: str) -> dict:
    return {"namespace": "email", "id": value}


# ---- namespaces ----------------------------------------------------------------------------------

@pytest.mark.parametrize("namespace, raw, stored", [
    ("email", "  Sarah.Rose@Example.COM ", "sarah.rose@example.com"),
    ("phone", "+1 (415) 555-0123", "+14155550123"),
    ("phone", "0044 20 7946 0958", "+442079460958"),
    ("phone", "+33 6 12 34 56 78", "+33612345678"),
    ("crm_id", "  AbC-1 ", "AbC-1"),  # trimmed, case kept
    ("ecid", "XYZ", "XYZ"),
])
def test_values_are_normalised_per_namespace(api, namespace, raw, stored):
    crm = _dataset(api, "profile", "CRM")
    profile_id = _accepted(api, crm, [{"identities": [{"namespace": namespace, "id": raw}]}])[0]["profile_id"]
    profile = _profile(api, namespace, stored)
    assert profile["id"] == profile_id
    assert [(i["namespace"], i["id"]) for i in profile["identities"]] == [(namespace, stored)]
    # any spelling of the same value finds the same profile, and links to it
    assert _accepted(api, crm, [{"identities": [{"namespace": namespace, "id": raw.upper() if namespace == "email"
                                                 else raw}]}])[0]["profile_id"] == profile_id


@pytest.mark.parametrize("namespace, value, reason", [
    ("email", "  ", "must not be empty"),
    ("email", "not-an-email", "not an email address"),
    ("ecid", "null", "placeholder"),
    ("ecid", "Anonymous", "placeholder"),
    ("crm_id", "undefined", "placeholder"),
    ("ecid", "x" * 513, "at most 512"),
    ("ecid", "a\x01b", "control characters"),
    ("phone", "555-0123", "country code"),
    ("phone", "+1 555", "not a"),
    ("twitter", "@sarah", "unknown namespace"),
])
def test_invalid_identities_are_rejected_with_a_clear_reason(api, namespace, value, reason):
    crm = _dataset(api, "profile", "CRM")
    result = _post(api, crm, [{"identities": [_email("ok@example.com"), {"namespace": namespace, "id": value}]}])[0]
    assert result["status"] == "rejected"
    assert len(result["errors"]) == 1 and result["errors"][0]["path"].startswith("identities[1]")
    assert reason in result["errors"][0]["message"]
    assert_error(api.get("/v1/profiles/lookup", params={"namespace": "email", "id": "ok@example.com"}), 404)


def test_custom_namespaces(api):
    listed = {n["code"]: n for n in api.get("/v1/identity/namespaces", role="reader").json()}
    assert set(listed) == {"ecid", "email", "phone", "crm_id", "loyalty_id"}
    assert listed["ecid"]["kind"] == "cookie" and listed["email"]["builtin"] is True
    created = api.post("/v1/identity/namespaces", json={"code": "idfa", "name": "Apple ad id", "kind": "device"},
                       role="data_steward")
    assert created.status_code == 201, created.text
    assert created.json() == {"code": "idfa", "name": "Apple ad id", "kind": "device", "builtin": False,
                              "description": None, "identities": 0}
    assert_error(api.post("/v1/identity/namespaces", json={"code": "idfa", "name": "again", "kind": "device"}), 409,
                 "namespace_exists")
    assert_error(api.post("/v1/identity/namespaces", json={"code": "email", "name": "x", "kind": "person"}), 409,
                 "namespace_exists")
    assert_error(api.post("/v1/identity/namespaces", json={"code": "Bad Code", "name": "x", "kind": "person"}), 422)
    assert_error(api.post("/v1/identity/namespaces", json={"code": "abc", "name": "x", "kind": "pet"}), 422)
    assert_error(api.post("/v1/identity/namespaces", json={"code": "abc", "name": "x", "kind": "person"},
                          role="marketer"), 403)
    app = _dataset(api, "event", "App events")
    result = _accepted(api, app, [{"identities": [{"namespace": "idfa", "id": " AD-1 "}], "event": {
        "id": "a-1", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}])[0]
    assert _profile(api, "idfa", "AD-1")["id"] == result["profile_id"]
    assert_error(api.delete("/v1/identity/namespaces/idfa"), 409, "namespace_in_use")
    assert_error(api.delete("/v1/identity/namespaces/email"), 409, "namespace_builtin")
    assert_error(api.delete("/v1/identity/namespaces/nope"), 404, "not_found")
    assert api.post("/v1/identity/namespaces", json={"code": "spare", "name": "x", "kind": "person"}).status_code == 201
    assert api.delete("/v1/identity/namespaces/spare").status_code == 204


def test_a_custom_namespace_can_be_mapped_in_a_batch_file(api):
    api.post("/v1/identity/namespaces", json={"code": "member_no", "name": "Member number", "kind": "person"})
    crm = _dataset(api, "profile", "CRM")
    response = api.post(f"/v1/datasets/{crm}/batches", files={"file": ("c.csv", b"member,name\nM-1,Sarah\n")},
                        data={"mapping": '{"member": "identity.member_no", "name": "person.first_name"}'})
    assert response.status_code == 202, response.text
    for _ in range(200):
        job = api.get(f"/v1/datasets/{crm}/batches").json()["items"][0]
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    assert _profile(api, "member_no", "M-1")["attributes"] == {"person": {"first_name": "Sarah"}}


# ---- merge policies --------------------------------------------------------------------------------

def _stamp(hour: int) -> str:
    return datetime(2026, 11, 28, hour, tzinfo=timezone.utc).isoformat()


def test_timestamp_ordered_latest_value_of_each_attribute_wins(api):
    crm = _dataset(api, "profile", "CRM")
    loyalty = _dataset(api, "profile", "Loyalty")
    sarah = _email("sarah@example.com")
    _accepted(api, crm, [{"identities": [sarah], "timestamp": _stamp(10), "attributes": {
        "loyalty": {"tier": "bronze", "points": 100}, "person": {"first_name": "Sarah"}}}])
    _accepted(api, loyalty, [{"identities": [sarah], "timestamp": _stamp(12), "attributes": {
        "loyalty": {"tier": "silver"}}}])
    # an older record arriving late does not overwrite a newer value …
    _accepted(api, crm, [{"identities": [sarah], "timestamp": _stamp(11), "attributes": {
        "loyalty": {"tier": "gold", "points": 150}}}])
    profile = _profile(api, "email", "sarah@example.com")
    assert profile["attributes"]["loyalty"] == {"tier": "silver", "points": 150}
    assert profile["provenance"]["loyalty.tier"]["dataset_id"] == loyalty
    assert profile["provenance"]["loyalty.points"]["dataset_id"] == crm
    assert profile["provenance"]["loyalty.points"]["observed_at"].startswith("2026-11-28T11:00:00")
    # … and a newer null removes it
    _accepted(api, crm, [{"identities": [sarah], "timestamp": _stamp(13), "attributes": {"loyalty": None}}])
    profile = _profile(api, "email", "sarah@example.com")
    assert "loyalty" not in profile["attributes"] and "loyalty.tier" not in profile["provenance"]
    assert profile["attributes"]["person"] == {"first_name": "Sarah"}


def test_dataset_precedence_first_listed_dataset_with_a_value_wins(api):
    crm = _dataset(api, "profile", "CRM")
    loyalty = _dataset(api, "profile", "Loyalty")
    web_forms = _dataset(api, "profile", "Web forms")
    sarah = _email("sarah@example.com")
    _accepted(api, crm, [{"identities": [sarah], "timestamp": _stamp(9), "attributes": {
        "loyalty": {"tier": "bronze"}, "person": {"first_name": "Sarah"}, "phone": "+1 415 555 0100"}}])
    _accepted(api, loyalty, [{"identities": [sarah], "timestamp": _stamp(8), "attributes": {
        "loyalty": {"tier": "gold", "points": 900}}}])
    _accepted(api, web_forms, [{"identities": [sarah], "timestamp": _stamp(12), "attributes": {
        "person": {"first_name": "Sally"}, "loyalty": {"tier": "platinum"}}}])
    assert _profile(api, "email", "sarah@example.com")["attributes"]["loyalty"]["tier"] == "platinum"  # latest

    changed = api.put("/v1/identity/settings", json={"merge_policy": "dataset_precedence",
                                                     "dataset_precedence": [loyalty, crm]}, role="data_steward")
    assert changed.status_code == 200, changed.text
    assert changed.json()["profiles_recomputed"] == 1
    profile = _profile(api, "email", "sarah@example.com")
    assert profile["attributes"]["loyalty"] == {"tier": "gold", "points": 900}  # loyalty first, though older
    assert profile["attributes"]["person"]["first_name"] == "Sarah"  # CRM before the unlisted web forms
    assert profile["provenance"]["person.first_name"]["dataset_id"] == crm
    # the first dataset's null does not hide the next dataset's value
    _accepted(api, loyalty, [{"identities": [sarah], "timestamp": _stamp(14), "attributes": {"loyalty": None}}])
    profile = _profile(api, "email", "sarah@example.com")
    assert profile["attributes"]["loyalty"] == {"tier": "bronze"}
    assert profile["provenance"]["loyalty.tier"]["dataset_id"] == crm

    back = api.put("/v1/identity/settings", json={"merge_policy": "timestamp_ordered"}).json()
    assert back["merge_policy"] == "timestamp_ordered" and back["dataset_precedence"] == []
    # back to the latest word: the loyalty dataset's removal (14:00) is the latest on the tier
    attributes = _profile(api, "email", "sarah@example.com")["attributes"]
    assert "loyalty" not in attributes and attributes["person"]["first_name"] == "Sally"


def test_identity_settings_are_validated(api):
    crm = _dataset(api, "profile", "CRM")
    web = _dataset(api, "event", "Web")
    assert api.get("/v1/identity/settings", role="reader").json() == {
        "merge_policy": "timestamp_ordered", "dataset_precedence": [], "graph_limit": 50, "updated_at": None,
        "profiles_recomputed": None, "unique_namespaces": ["crm_id", "loyalty_id"],
        "namespace_priority": ["crm_id", "loyalty_id", "email", "phone", "ecid"], "reevaluation": None}
    for body, fragment in [
        ({"merge_policy": "dataset_precedence"}, "needs the ordered list"),
        ({"merge_policy": "dataset_precedence", "dataset_precedence": [crm, crm]}, "appears twice"),
        ({"merge_policy": "dataset_precedence", "dataset_precedence": [web]}, "holds events"),
        ({"merge_policy": "dataset_precedence", "dataset_precedence": [999999]}, "no dataset 999999"),
        ({"merge_policy": "timestamp_ordered", "dataset_precedence": [crm]}, "only the dataset_precedence"),
    ]:
        error = assert_error(api.put("/v1/identity/settings", json=body), 422, "invalid_identity_settings")
        assert fragment in error["message"], error
    assert_error(api.put("/v1/identity/settings", json={"graph_limit": 1}), 422, "validation_error")
    assert_error(api.put("/v1/identity/settings", json={"merge_policy": "random"}), 422, "validation_error")
    assert_error(api.put("/v1/identity/settings", json={"graph_limit": 5}, role="marketer"), 403)


def test_merging_profiles_applies_the_policy_to_the_union_of_their_sources(api):
    crm = _dataset(api, "profile", "CRM")
    web = _dataset(api, "event", "Web")
    loyalty = _dataset(api, "profile", "Loyalty")
    a = _accepted(api, crm, [{"identities": [_email("s@example.com")], "timestamp": _stamp(10),
                              "attributes": {"loyalty": {"tier": "bronze"}, "preferred_size": "S"}}])[0]["profile_id"]
    b = _accepted(api, loyalty, [{"identities": [{"namespace": "loyalty_id", "id": "L-1"}], "timestamp": _stamp(11),
                                  "attributes": {"loyalty": {"tier": "silver", "points": 5}}}])[0]["profile_id"]
    _accepted(api, web, [{"identities": [{"namespace": "loyalty_id", "id": "L-1"}], "event": {
        "id": "e-1", "type": "pageView", "timestamp": "2026-11-28T09:00:00Z"}}])
    linked = _accepted(api, crm, [{"identities": [_email("s@example.com"), {"namespace": "loyalty_id", "id": "L-1"}],
                                   "timestamp": _stamp(9), "attributes": {"preferred_size": "M"}}])[0]
    assert linked["profile_id"] == a and b in linked["warnings"][0]
    profile = _profile(api, "loyalty_id", "L-1")
    assert profile["attributes"] == {"loyalty": {"tier": "silver", "points": 5}, "preferred_size": "S"}
    assert profile["events_total"] == 1 and profile["merged_ids"] == [b]
    assert profile["provenance"]["loyalty.tier"]["dataset_id"] == loyalty


# ---- memberships ------------------------------------------------------------------------------------

def test_memberships_are_re_evaluated_on_merge_not_unioned(api, engine):
    from cdp.storage.models import memberships, profiles, segments

    now = datetime.now(timezone.utc)
    web = _dataset(api, "event", "Web")
    with engine.begin() as connection:
        rows = connection.execute(segments.insert().returning(segments.c.pk, segments.c.key), [
            {"sandbox": api.sandbox, "key": key, "name": key, "expression": text, "canonical": text,
             "created_at": now, "updated_at": now} for key, text in [
                ("viewers", 'exists event where type = "productView"'),
                ("carted", 'exists event where type = "addToCart"'),
                ("browsed_only", '(exists event where type = "productView") and not (exists event where type = '
                                 '"addToCart")')]]).all()
    segment_pk = {row.key: row.pk for row in rows}
    cookie_a, cookie_b = {"namespace": "ecid", "id": "A"}, {"namespace": "ecid", "id": "B"}
    first = _accepted(api, web, [{"identities": [cookie_a], "event": {
        "id": "v", "type": "productView", "timestamp": now.isoformat()}}])[0]["profile_id"]
    second = _accepted(api, web, [{"identities": [cookie_b], "event": {
        "id": "c", "type": "addToCart", "timestamp": now.isoformat()}}])[0]["profile_id"]
    # as streaming evaluation would have left them: A in viewers and browsed_only, B in carted
    with engine.begin() as connection:
        pk = dict(connection.execute(sa.select(profiles.c.external_id, profiles.c.pk)
                                     .where(profiles.c.sandbox == api.sandbox)).all())
        connection.execute(memberships.insert(), [
            {"segment_pk": segment_pk[key], "profile_pk": pk[profile], "status": "realized", "entered_at": now,
             "updated_at": now} for key, profile in [("viewers", first), ("browsed_only", first), ("carted", second)]])
    merged = _accepted(api, web, [{"identities": [cookie_a, cookie_b], "event": {
        "id": "l", "type": "login", "timestamp": now.isoformat()}}])[0]
    assert merged["profile_id"] == first
    states = {m["segment"]: m["status"] for m in _profile(api, "ecid", "B")["memberships"]}
    # viewers stays, carted is entered, browsed_only is left: re-evaluated on the merged data
    assert states == {"viewers": "realized", "carted": "realized", "browsed_only": "exited"}


# ---- the graph limit --------------------------------------------------------------------------------

def test_graph_limit_drops_cookies_first_then_devices_then_people_and_keeps_events(api):
    # linking rules off: a second crm_id joins the profile (with them on it would be another person)
    api.put("/v1/identity/settings", json={"graph_limit": 4, "unique_namespaces": []})
    api.post("/v1/identity/namespaces", json={"code": "device_id", "name": "Device", "kind": "device"})
    web = _dataset(api, "event", "Web")
    person = _email("p@example.com")

    def event(n: int, *identities) -> dict:
        return {"identities": [person, *identities], "event": {"id": f"e{n}", "type": "pageView",
                                                                "timestamp": f"2026-11-28T10:00:0{n}Z"}}

    _accepted(api, web, [event(1, {"namespace": "ecid", "id": "old-cookie"}, {"namespace": "device_id", "id": "D1"})])
    _accepted(api, web, [event(2, {"namespace": "ecid", "id": "new-cookie"})])
    assert _profile(api, "email", "p@example.com")["graph"]["size"] == 4
    # a fifth identity: the least recently seen cookie goes, not the device or the person
    result = _accepted(api, web, [event(3, {"namespace": "crm_id", "id": "C-5"})])[0]
    assert "graph limit" in " ".join(result["warnings"]) and "ecid:old-cookie" in " ".join(result["warnings"])
    profile = _profile(api, "email", "p@example.com")
    assert {i["id"] for i in profile["identities"]} == {"p@example.com", "D1", "new-cookie", "C-5"}
    assert [(r["namespace"], r["id"]) for r in profile["graph"]["removed"]] == [("ecid", "old-cookie")]
    assert "cookie" in profile["graph"]["removed"][0]["reason"]
    assert profile["events_total"] == 3  # no event was lost
    # with no cookie left, a device id goes next
    _accepted(api, web, [event(4, {"namespace": "loyalty_id", "id": "L-5"})])
    _accepted(api, web, [event(5, {"namespace": "phone", "id": "+14155550100"})])
    profile = _profile(api, "email", "p@example.com")
    assert {i["namespace"] for i in profile["identities"]} == {"email", "crm_id", "loyalty_id", "phone"}
    assert [r["id"] for r in profile["graph"]["removed"]][::-1] == ["old-cookie", "new-cookie", "D1"]
    # then people ids, least recently seen first (the email is carried by every record)
    _accepted(api, web, [event(6, {"namespace": "crm_id", "id": "C-6"})])
    profile = _profile(api, "email", "p@example.com")
    assert "C-5" not in {i["id"] for i in profile["identities"]} and profile["graph"]["size"] == 4
    assert profile["events_total"] == 6
    # a removed cookie seen again alone starts a profile of its own
    alone = _accepted(api, web, [{"identities": [{"namespace": "ecid", "id": "old-cookie"}], "event": {
        "id": "e7", "type": "pageView", "timestamp": "2026-11-28T11:00:00Z"}}])[0]
    assert alone["profile_id"] != profile["id"]
