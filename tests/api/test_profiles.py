"""Unified profiles over HTTP: the Luma story steps 1–3 (anonymous browsing, login linking cookie,
email and CRM id, the mobile cookie joining later), lookup by any identity and by id (merged-away
ids included), events in pages with filters, search, privacy deletion with its record."""

from __future__ import annotations

import sqlalchemy as sa

from tests.api.conftest import assert_error
from tests.api.conftest import create_dataset as _dataset

SARAH_EMAIL = {"namespace": "email", "id": "sarah.rose@example.com"}
CRM = {"namespace": "crm_id", "id": "C-1001"}
LOYALTY = {"namespace": "loyalty_id", "id": "L-77"}
WEB_COOKIE = {"namespace": "ecid", "id": "web-cookie-1"}
MOBILE_COOKIE = {"namespace": "ecid", "id": "mobile-cookie-2"}


def _ingest(api, dataset_id: int, records: list) -> list[dict]:
    response = api.post(f"/v1/datasets/{dataset_id}/records", json={"records": records})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["status"] == "accepted" for r in results), results
    return results


def _lookup(api, identity: dict, **params):
    return api.get("/v1/profiles/lookup", params={"namespace": identity["namespace"], "id": identity["id"], **params})


def _event(event_id: str, type_: str, timestamp: str, **fields) -> dict:
    return {"id": event_id, "type": type_, "timestamp": timestamp, **fields}


def _luma(api) -> dict:
    """Steps 1–2 of the Luma story; returns the ids seen on the way."""
    crm = _dataset(api, "profile", "CRM contacts")
    web = _dataset(api, "event", "Web events")
    mobile = _dataset(api, "event", "Mobile events")
    known = _ingest(api, crm, [{"identities": [SARAH_EMAIL, CRM, LOYALTY], "attributes": {
        "person": {"first_name": "Sarah", "last_name": "Rose"}, "email": "sarah.rose@example.com",
        "loyalty": {"tier": "bronze"}, "preferred_category": "womens", "preferred_size": "S"}}])[0]["profile_id"]
    # 1. an anonymous visitor views two men's running sweatshirts
    anonymous = _ingest(api, web, [
        {"identities": [WEB_COOKIE], "event": _event("w-1", "productView", "2026-11-27T17:55:00Z", channel="web",
                                                     device={"type": "desktop"}, product={"sku": "MH01-M"})},
        {"identities": [WEB_COOKIE], "event": _event("w-2", "productView", "2026-11-27T17:58:00Z", channel="web",
                                                     device={"type": "desktop"}, product={"sku": "MH02-M"})}])
    anonymous_id = anonymous[0]["profile_id"]
    assert anonymous_id != known and anonymous[1]["profile_id"] == anonymous_id
    # 2. she adds a men's size L sweatshirt to her cart and logs in: cookie + email + CRM id
    cart = _ingest(api, web, [{"identities": [WEB_COOKIE], "event": _event(
        "w-3", "addToCart", "2026-11-27T18:04:00Z", channel="web", product={"sku": "MH01-L", "size": "L",
                                                                            "category": "mens", "price": 52.0})}])
    assert cart[0]["profile_id"] == anonymous_id
    login = _ingest(api, web, [{"identities": [WEB_COOKIE, {"namespace": "email", "id": " Sarah.Rose@Example.com "},
                                               CRM], "event": _event("w-4", "login", "2026-11-27T18:05:00Z",
                                                                     channel="web")}])[0]
    assert login["profile_id"] == known, "the anonymous profile merges into the known one, which keeps its id"
    assert any(anonymous_id in w and "merged" in w for w in login["warnings"])
    return {"known": known, "anonymous": anonymous_id, "web": web, "mobile": mobile, "crm": crm}


def test_luma_story_steps_1_to_3(api):
    ids = _luma(api)
    # 3. looking her up by email, either cookie, CRM id or loyalty id shows one profile
    profile = _lookup(api, SARAH_EMAIL).json()
    assert profile["id"] == ids["known"]
    for identity in (WEB_COOKIE, CRM, LOYALTY, {"namespace": "email", "id": "SARAH.ROSE@example.com"}):
        assert _lookup(api, identity).json()["id"] == ids["known"]
    assert {(i["namespace"], i["id"]) for i in profile["identities"]} == {
        ("email", "sarah.rose@example.com"), ("crm_id", "C-1001"), ("loyalty_id", "L-77"), ("ecid", "web-cookie-1")}
    assert profile["attributes"] == {"person": {"first_name": "Sarah", "last_name": "Rose"},
                                     "email": "sarah.rose@example.com", "loyalty": {"tier": "bronze"},
                                     "preferred_category": "womens", "preferred_size": "S"}
    assert profile["provenance"]["loyalty.tier"]["dataset_name"] == "CRM contacts"
    assert profile["provenance"]["loyalty.tier"]["record_index"] == 0
    # every event, the anonymous ones too, newest first, with channel and device
    assert [e["id"] for e in profile["events"]] == ["w-4", "w-3", "w-2", "w-1"]
    assert profile["events_total"] == 4
    assert profile["events"][3]["channel"] == "web" and profile["events"][3]["device"] == {"type": "desktop"}
    assert profile["events"][1]["product"] == {"sku": "MH01-L", "size": "L", "category": "mens", "price": 52.0}
    assert profile["merged_ids"] == [ids["anonymous"]]
    links = profile["graph"].pop("links")
    assert profile["graph"] == {"size": 4, "limit": 50, "removed": [], "removed_links": []}
    assert links and all(link["removed_at"] is None and len(link["identities"]) == 2 for link in links)
    # the merged-away id still finds her
    assert api.get(f"/v1/profiles/{ids['anonymous']}").json()["id"] == ids["known"]

    # later: she buys on her phone, logged in — the mobile cookie joins the same profile
    purchase = _ingest(api, ids["mobile"], [{"identities": [MOBILE_COOKIE, SARAH_EMAIL], "event": _event(
        "m-1", "purchase", "2026-11-28T09:00:00Z", channel="mobile", device={"type": "phone"},
        order={"id": "O-1", "total": 52.0})}])[0]
    assert purchase["profile_id"] == ids["known"] and purchase["warnings"] == []
    again = _lookup(api, MOBILE_COOKIE).json()
    assert again["id"] == ids["known"] and again["graph"]["size"] == 5
    assert [e["id"] for e in again["events"]][:1] == ["m-1"]


def test_events_are_paged_newest_first_and_filtered(api):
    ids = _luma(api)
    url = f"/v1/profiles/{ids['known']}/events"
    page = api.get(url, params={"limit": 2}).json()
    assert page["total"] == 4 and [e["id"] for e in page["items"]] == ["w-4", "w-3"]
    assert [e["id"] for e in api.get(url, params={"limit": 2, "offset": 2}).json()["items"]] == ["w-2", "w-1"]
    views = api.get(url, params={"type": "productView"}).json()
    assert [e["id"] for e in views["items"]] == ["w-2", "w-1"]
    both = api.get(url, params=[("type", "login"), ("type", "addToCart")]).json()
    assert [e["id"] for e in both["items"]] == ["w-4", "w-3"]
    window = api.get(url, params={"since": "2026-11-27T17:58:00Z", "until": "2026-11-27T18:05:00Z"}).json()
    assert [e["id"] for e in window["items"]] == ["w-3", "w-2"]
    assert all(e["dataset_id"] == ids["web"] for e in page["items"])
    assert_error(api.get(url, params={"since": "yesterday"}), 422, "validation_error")
    assert_error(api.get("/v1/profiles/p-nobody/events"), 404, "not_found")


def test_lookup_errors_name_no_personal_data(api):
    error = assert_error(_lookup(api, {"namespace": "email", "id": "nobody@example.com"}), 404, "not_found")
    assert "nobody" not in error["message"] and "nobody" not in str(error["details"])
    # what no profile can have is not found either, and says why without quoting the value
    error = assert_error(_lookup(api, {"namespace": "twitter", "id": "x"}), 404, "not_found")
    assert "no such namespace" in error["message"] and error["details"]["reason"] == "unknown namespace"
    for namespace, value, reason in (("email", "not-an-email", "not an email address"),
                                     ("phone", "+1 call-me-maybe", "not a phone number"),
                                     ("crm_id", "Undefined", "placeholder")):
        for method in ("GET", "DELETE"):
            response = api.request(method, "/v1/profiles/lookup", params={"namespace": namespace, "id": value})
            error = assert_error(response, 404, "not_found")
            assert reason in error["message"] and reason in error["details"]["reason"], error
            assert value not in response.text and value.lower() not in response.text.lower(), response.text
    assert_error(api.get("/v1/profiles/lookup", params={"namespace": "email"}), 422, "validation_error")
    assert_error(api.get("/v1/profiles/p-unknown"), 404, "not_found")


def test_search_by_name_email_or_identity_prefix(api):
    ids = _luma(api)
    other = _ingest(api, ids["crm"], [{"identities": [{"namespace": "email", "id": "rosa.rossi@example.com"}],
                                       "attributes": {"person": {"first_name": "Rosa", "last_name": "Rossi"}}}]
                    )[0]["profile_id"]

    def found(q: str) -> list[str]:
        response = api.get("/v1/profiles", params={"q": q})
        assert response.status_code == 200, response.text
        return sorted(item["id"] for item in response.json()["items"])

    assert found("sarah") == [ids["known"]]
    assert found("ROSE") == [ids["known"]]  # last name, any case
    assert found("Ros") == sorted([ids["known"], other])
    assert found("C-10") == [ids["known"]]  # a CRM id prefix
    assert found("web-cookie") == [ids["known"]]
    assert found("100%") == [] and found("_") == []  # LIKE's wildcards are literal
    odd = _ingest(api, ids["crm"], [{"identities": [{"namespace": "crm_id", "id": "_K\\7%"}],
                                     "attributes": {"person": {"first_name": "50%", "last_name": "O_Back\\slash"}}}]
                  )[0]["profile_id"]
    for q in ("%", "_", "\\", "0%", "o_b", "k\\s", "_K\\7%"):
        assert found(q) == [odd], q
    assert found("%%") == [] and found("__") == [] and found("\\\\") == []
    summary = api.get("/v1/profiles", params={"q": "rosa"}).json()["items"][0]
    assert summary["first_name"] == "Rosa" and summary["identities"] == [
        {"namespace": "email", "id": "rosa.rossi@example.com"}]
    assert_error(api.get("/v1/profiles", params={"q": ""}), 422, "validation_error")
    assert_error(api.get("/v1/profiles", params={"q": " \t "}), 422, "validation_error")  # as the document says:
    [q] = [p for p in api.app.openapi()["paths"]["/v1/profiles"]["get"]["parameters"] if p["name"] == "q"]
    assert q["schema"]["pattern"] == "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"  # not blank, no NUL


def test_privacy_deletion_removes_everything_and_is_recorded_without_personal_data(api):
    ids = _luma(api)
    reader = api.request("DELETE", "/v1/profiles/lookup", params={"namespace": "email", "id": SARAH_EMAIL["id"]},
                         role="marketer")
    assert_error(reader, 403, "forbidden")
    response = api.request("DELETE", "/v1/profiles/lookup", params={"namespace": "ecid", "id": WEB_COOKIE["id"]},
                           role="data_steward")
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["profile_id"] == ids["known"]
    assert (record["identities"], record["events"]) == (4, 4) and record["attribute_sources"] >= 6
    for identity in (SARAH_EMAIL, CRM, LOYALTY, WEB_COOKIE):
        assert_error(_lookup(api, identity), 404, "not_found")
    assert_error(api.get(f"/v1/profiles/{ids['anonymous']}"), 404, "not_found")
    log = api.get("/v1/privacy/deletions").json()
    assert log["total"] == 1 and log["items"][0] == record
    assert "sarah" not in str(log).lower() and "C-1001" not in str(log)
    from cdp.storage.models import events, identities, profiles

    with api.app.state.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(identities)
                                  .where(identities.c.sandbox == api.sandbox)).scalar_one() == 0
        assert connection.execute(sa.select(sa.func.count()).select_from(events)
                                  .join(profiles, profiles.c.pk == events.c.profile_pk)
                                  .where(profiles.c.sandbox == api.sandbox)).scalar_one() == 0
    # the same identity arriving again starts a new, empty profile
    fresh = _ingest(api, ids["web"], [{"identities": [WEB_COOKIE], "event": _event("w-9", "pageView",
                                                                                   "2026-11-29T10:00:00Z")}])
    assert fresh[0]["profile_id"] != ids["known"]
    assert _lookup(api, WEB_COOKIE).json()["events_total"] == 1
