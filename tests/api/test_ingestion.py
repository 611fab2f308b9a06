"""Streaming ingestion: per-record validation against the schema in force, profile resolution
by identity (the graph itself: tests/identity), attribute upserts, idempotent events, limits,
roles, sandbox isolation."""

from __future__ import annotations

import sqlalchemy as sa

from tests.api.conftest import assert_error
from tests.api.conftest import create_dataset as _dataset

SARAH_EMAIL = {"namespace": "email", "id": "sarah.rose@example.com"}


def _ingest(api, dataset_id: int, body, **kwargs):
    response = api.post(f"/v1/datasets/{dataset_id}/records", json=body, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def _profile(api, profile_id: str) -> dict:
    from cdp.storage.models import profiles

    with api.app.state.engine.connect() as connection:
        row = connection.execute(sa.select(profiles).where(profiles.c.sandbox == api.sandbox,
                                                           profiles.c.external_id == profile_id)).one()
    return dict(row.attributes)


def _events(api, profile_id: str) -> list:
    from cdp.storage.models import events, profiles

    with api.app.state.engine.connect() as connection:
        return connection.execute(
            sa.select(events.c.event_id, events.c.type, events.c.ts, events.c.fields)
            .join(profiles, profiles.c.pk == events.c.profile_pk)
            .where(profiles.c.sandbox == api.sandbox, profiles.c.external_id == profile_id)
            .order_by(events.c.event_id)).all()


def _identities(api) -> set:
    from cdp.storage.models import identities, profiles

    with api.app.state.engine.connect() as connection:
        rows = connection.execute(sa.select(identities.c.namespace, identities.c.value, profiles.c.external_id)
                                  .join(profiles, profiles.c.pk == identities.c.profile_pk)
                                  .where(identities.c.sandbox == api.sandbox)).all()
    return {tuple(row) for row in rows}


def test_profile_records_create_and_upsert(api):
    crm = _dataset(api, "profile")
    single = _ingest(api, crm, {"identities": [SARAH_EMAIL, {"namespace": "crm_id", "id": "C-1"}],
                                "attributes": {"person": {"first_name": "Sarah", "birth_date": "1990-04-02"},
                                               "loyalty": {"tier": "bronze", "points": 120},
                                               "interests": ["running"]}}, role="data_steward")
    assert single["accepted"] == 1 and single["rejected"] == 0
    result = single["results"][0]
    assert result["status"] == "accepted" and result["index"] == 0 and result["errors"] == []
    profile_id = result["profile_id"]
    assert _profile(api, profile_id) == {"person.first_name": "Sarah", "person.birth_date": "1990-04-02",
                                         "loyalty.tier": "bronze", "loyalty.points": 120, "interests": ["running"]}
    assert _identities(api) == {("email", "sarah.rose@example.com", profile_id), ("crm_id", "C-1", profile_id)}

    # found by another of its identities; latest write wins; null removes; a new identity is added
    update = _ingest(api, crm, {"records": [
        {"identities": [{"namespace": "crm_id", "id": "C-1"}, {"namespace": "loyalty_id", "id": "L-9"}],
         "attributes": {"loyalty": {"tier": "gold"}, "person": {"birth_date": None}}}]})
    assert update["results"][0]["profile_id"] == profile_id
    assert _profile(api, profile_id) == {"person.first_name": "Sarah", "loyalty.tier": "gold",
                                         "loyalty.points": 120, "interests": ["running"]}
    _ingest(api, crm, {"identities": [SARAH_EMAIL], "attributes": {"loyalty": None}})
    assert _profile(api, profile_id) == {"person.first_name": "Sarah", "interests": ["running"]}
    assert ("loyalty_id", "L-9", profile_id) in _identities(api)


def test_bad_records_are_rejected_with_reasons_and_the_rest_accepted(api):
    crm = _dataset(api, "profile")
    body = {"records": [
        {"identities": [SARAH_EMAIL], "attributes": {"email": "sarah.rose@example.com"}},
        {"identities": [SARAH_EMAIL], "attributes": {"emial": "x", "loyalty": {"points": "many"}}},
        {"attributes": {"email": "nobody@example.com"}},
        {"identities": [{"namespace": "twitter", "id": "@s"}, {"namespace": "email", "id": ""}]},
        {"identities": [SARAH_EMAIL], "attributes": {"person": {"birth_date": "02/04/1990"}, "loyalty": "gold"}},
        {"identities": [SARAH_EMAIL], "event": {"id": "e1"}},
        "not an object",
        {"identities": [SARAH_EMAIL], "attributes": {"created_at": "not a time", "email_opt_in": "yes"}},
    ]}
    answer = _ingest(api, crm, body)
    assert (answer["accepted"], answer["rejected"], answer["duplicates"]) == (1, 7, 0)
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(8))
    assert results[0]["status"] == "accepted"
    assert all(r["status"] == "rejected" and r["profile_id"] is None for r in results[1:])

    def paths(i):
        return {e["path"]: e["message"] for e in results[i]["errors"]}

    assert "did you mean 'email'" in paths(1)["attributes.emial"]
    assert "expected integer" in paths(1)["attributes.loyalty.points"]
    assert "at least one identity" in paths(2)["identities"]
    assert "unknown namespace 'twitter'" in paths(3)["identities[0].namespace"]
    assert "identities[1].id" in paths(3)
    assert set(paths(4)) == {"attributes.person.birth_date", "attributes.loyalty"}
    assert "a profile dataset takes `attributes`" in paths(5)["event"]
    assert paths(6) == {"": "a record must be a JSON object"}
    assert set(paths(7)) == {"attributes.created_at", "attributes.email_opt_in"}
    # nothing of the rejected records was stored
    assert _profile(api, results[0]["profile_id"]) == {"email": "sarah.rose@example.com"}
    assert {i[0] for i in _identities(api)} == {"email"}


def test_events_are_validated_and_idempotent_per_dataset(api):
    web = _dataset(api, "event", "Web events")
    mobile = _dataset(api, "event", "Mobile events")
    cookie = {"namespace": "ecid", "id": "cookie-1"}
    view = {"id": "e-1", "type": "productView", "timestamp": "2026-11-27T18:00:00+01:00", "channel": "web",
            "product": {"sku": "MH01-L", "price": 52}}
    cart = {"id": "e-2", "type": "addToCart", "timestamp": "2026-11-27T18:04:00Z", "product": {"quantity": 1}}
    answer = _ingest(api, web, {"records": [
        {"identities": [cookie], "event": view},
        {"identities": [cookie], "event": cart},
        {"identities": [cookie], "event": view},  # the same id twice in one request
        {"identities": [cookie], "event": {**cart, "id": "e-3", "type": "teleport"}},
        {"identities": [cookie], "event": {**cart, "id": "e-4", "timestamp": "yesterday"}},
        {"identities": [cookie], "event": {"id": "e-5", "type": "login"}},
        {"identities": [cookie], "event": {**cart, "id": "e-6", "product": {"quantity": 1.5, "colour": "red"}}},
        {"identities": [cookie], "attributes": {"email": "x@example.com"}},
    ]})
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["accepted", "accepted", "duplicate", "rejected", "rejected", "rejected", "rejected",
                        "rejected"]
    errors = [{e["path"] for e in r["errors"]} for r in answer["results"]]
    assert errors[3] == {"event.type"} and errors[4] == {"event.timestamp"}
    assert errors[5] == {"event.timestamp"}
    assert errors[6] == {"event.product.quantity", "event.product.colour"}
    assert errors[7] == {"attributes", "event"}
    profile_id = answer["results"][0]["profile_id"]
    assert answer["results"][2]["profile_id"] is None
    stored = _events(api, profile_id)
    assert [(e.event_id, e.type) for e in stored] == [("e-1", "productView"), ("e-2", "addToCart")]
    assert stored[0].ts.isoformat() == "2026-11-27T17:00:00+00:00"
    assert stored[0].fields == {"channel": "web", "product.sku": "MH01-L", "product.price": 52}

    again = _ingest(api, web, {"records": [{"identities": [cookie], "event": view},
                                           {"identities": [cookie], "event": cart}]})
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert again["duplicates"] == 2 and again["accepted"] == 0
    # another dataset may carry the same event id
    other = _ingest(api, mobile, {"identities": [cookie], "event": view})
    assert other["results"][0]["status"] == "accepted" and other["results"][0]["profile_id"] == profile_id
    assert len(_events(api, profile_id)) == 3


def test_a_record_linking_two_profiles_merges_them_into_the_older(api):
    crm = _dataset(api, "profile")
    a = _ingest(api, crm, {"identities": [SARAH_EMAIL], "attributes": {"crm_id": "A"}})["results"][0]["profile_id"]
    b = _ingest(api, crm, {"identities": [{"namespace": "ecid", "id": "c-9"}]})["results"][0]["profile_id"]
    assert a != b
    answer = _ingest(api, crm, {"identities": [{"namespace": "ecid", "id": "c-9"}, SARAH_EMAIL,
                                               {"namespace": "phone", "id": "+1 (415) 555-0100"}],
                                "attributes": {"phone": "+14155550100"}})
    result = answer["results"][0]
    assert result["status"] == "accepted" and result["profile_id"] == a
    assert len(result["warnings"]) == 1 and "merged" in result["warnings"][0] and b in result["warnings"][0]
    assert _identities(api) == {("email", "sarah.rose@example.com", a), ("ecid", "c-9", a),
                                ("phone", "+14155550100", a)}
    assert _profile(api, a) == {"phone": "+14155550100", "crm_id": "A"}


def test_limits(api, monkeypatch):
    import cdp.ingestion

    crm = _dataset(api, "profile")
    web = _dataset(api, "event")
    too_many = {"records": [{"identities": [SARAH_EMAIL]}] * 1001}
    error = assert_error(api.post(f"/v1/datasets/{crm}/records", json=too_many), 413, "batch_too_large")
    assert error["details"] == {"records": 1001, "limit": 1000}
    assert _ingest(api, crm, {"records": [{"identities": [SARAH_EMAIL]}] * 1000})["accepted"] == 1000
    assert_error(api.post(f"/v1/datasets/{crm}/records", json={"records": []}), 422, "validation_error")
    assert_error(api.post(f"/v1/datasets/{crm}/records", json=[1, 2]), 422, "validation_error")

    big = {"identities": [SARAH_EMAIL], "attributes": {"person": {"first_name": "x" * (65 * 1024)}}}
    answer = _ingest(api, crm, {"records": [big, {"identities": [SARAH_EMAIL], "attributes": {"crm_id": "1"}}]})
    assert [r["status"] for r in answer["results"]] == ["rejected", "accepted"]
    assert answer["results"][0]["errors"][0]["message"].startswith("record_too_large")

    monkeypatch.setattr(cdp.ingestion, "MAX_EVENTS_PER_PROFILE", 2)
    events = [{"identities": [SARAH_EMAIL], "event": {"id": f"e-{i}", "type": "pageView",
                                                      "timestamp": "2026-11-27T18:00:00Z"}} for i in range(3)]
    answer = _ingest(api, web, {"records": events})
    assert [r["status"] for r in answer["results"]] == ["accepted", "accepted", "rejected"]
    assert "too_many_events" in answer["results"][2]["errors"][0]["message"]
    assert answer["results"][2]["profile_id"] == answer["results"][0]["profile_id"]
    assert len(_events(api, answer["results"][0]["profile_id"])) == 2


def test_unknown_dataset_roles_and_metrics(api):
    assert_error(api.post("/v1/datasets/999999/records", json={"identities": [SARAH_EMAIL]}), 404, "not_found")
    crm = _dataset(api, "profile")
    for role in ("marketer", "reader"):
        assert_error(api.post(f"/v1/datasets/{crm}/records", role=role, json={"identities": [SARAH_EMAIL]}),
                     403, "forbidden")
    _ingest(api, crm, {"records": [{"identities": [SARAH_EMAIL]}, {"identities": []}]})
    text = api.get("/metrics").text
    assert f'cdp_ingested_records_total{{kind="profile",sandbox="{api.sandbox}"}} 1.0' in text
    assert f'cdp_rejected_records_total{{kind="profile",sandbox="{api.sandbox}"}} 1.0' in text


def test_ingested_data_is_per_sandbox(api):
    from tests.api.conftest import new_sandbox

    crm = _dataset(api, "profile")
    other = new_sandbox(api)
    assert_error(api.post(f"/v1/datasets/{crm}/records", sandbox=other, json={"identities": [SARAH_EMAIL]}),
                 404, "not_found")
    mine = _ingest(api, crm, {"identities": [SARAH_EMAIL], "attributes": {"crm_id": "mine"}})
    theirs_crm = _dataset(api, "profile", sandbox=other)
    theirs = _ingest(api, theirs_crm, {"identities": [SARAH_EMAIL], "attributes": {"crm_id": "theirs"}},
                     sandbox=other)
    # the same identity is a different profile in each sandbox
    assert mine["results"][0]["profile_id"] != theirs["results"][0]["profile_id"]
    assert _profile(api, mine["results"][0]["profile_id"]) == {"crm_id": "mine"}
    assert _identities(api) == {("email", "sarah.rose@example.com", mine["results"][0]["profile_id"])}
