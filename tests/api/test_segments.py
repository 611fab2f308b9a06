"""Segments over HTTP (API.md, "Segments"), on SQLite and PostgreSQL: saving and validation, the
reference graph, members, estimates, history, batch jobs, /v1/evaluate, roles and sandboxes; the
Luma story steps 3 and 6 with the batch path."""

from __future__ import annotations

import time

from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import SARAH, assert_error, new_sandbox, store_profiles
from tests.api.conftest import create_dataset as _dataset

GIFT_GIVERS = '''loyalty.tier is not null
and (exists event where type = "addToCart"
       and product.category != profile.preferred_category
       and product.size != profile.preferred_size
       within last 7 days)
and (exists event as cart where type = "addToCart" within last 7 days
       then no event where type = "purchase" within 1 day)'''
SARAH_EMAIL = {"namespace": "email", "id": "sarah.rose@example.com"}
CRM = {"namespace": "crm_id", "id": "C-1001"}
WEB_COOKIE = {"namespace": "ecid", "id": "web-cookie-1"}
MOBILE_COOKIE = {"namespace": "ecid", "id": "mobile-cookie-2"}


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _segment(api, key: str, expression: str, **fields) -> dict:
    response = api.post("/v1/segments", json={"key": key, "name": fields.pop("name", key), "expression": expression,
                                              **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _ingest(api, dataset_id: int, records: list) -> list[dict]:
    response = api.post(f"/v1/datasets/{dataset_id}/records", json={"records": records})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["status"] == "accepted" for r in results), results
    return results


def _run(api, **body) -> dict:
    response = api.post("/v1/segment-jobs", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["counts"] == {}
    deadline = time.monotonic() + 60
    while True:  # the service's job runner (cdp/jobs) runs it, in a worker thread
        done = api.get(f"/v1/segment-jobs/{job['id']}")
        assert done.status_code == 200, done.text
        if done.json()["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert done.json()["status"] == "succeeded", done.text
    return done.json()


def _members(api, key: str, **params) -> list[tuple[str, str]]:
    response = api.get(f"/v1/segments/{key}/members", params=params)
    assert response.status_code == 200, response.text
    return [(m["profile_id"], m["status"]) for m in response.json()["items"]]


PROFILES = [SARAH, {"id": "bob", "attributes": {"loyalty": {"tier": "gold", "points": 900}, "email_opt_in": True}},
            {"id": "ana", "attributes": {"loyalty": {"tier": "silver", "points": 450}}},
            {"id": "zoe", "attributes": {"email_opt_in": False}}]


# ---- the Luma story --------------------------------------------------------------------------------


def test_luma_gift_giving_cart_abandoners_batch_path(api):
    """Step 6 (batch): Sarah qualifies for "Gift-giving cart abandoners" after a run; step 3: her
    profile, looked up by email, shows the membership and when she entered; step 8 (batch): her
    purchase on the phone makes her exit at the next run."""
    now = datetime.now(timezone.utc)
    crm, web, mobile = (_dataset(api, "profile", "CRM contacts"), _dataset(api, "event", "Web events"),
                        _dataset(api, "event", "Mobile events"))
    created = _segment(api, "gift-givers", GIFT_GIVERS, name="Gift-giving cart abandoners", evaluation="batch")
    assert created["size"] == 0 and created["canonical"].startswith("loyalty.tier is not null and")
    _ingest(api, crm, [{"identities": [SARAH_EMAIL, CRM], "attributes": {
        "person": {"first_name": "Sarah", "last_name": "Rose"}, "loyalty": {"tier": "bronze"},
        "preferred_category": "womens", "preferred_size": "S"}}])
    _ingest(api, web, [
        {"identities": [WEB_COOKIE], "event": {"id": "w-1", "type": "productView", "timestamp": _iso(now - timedelta(
            days=2, minutes=10)), "channel": "web", "product": {"sku": "MH01-M"}}},
        {"identities": [WEB_COOKIE, SARAH_EMAIL, CRM], "event": {"id": "w-2", "type": "login", "timestamp": _iso(
            now - timedelta(days=2, minutes=5)), "channel": "web"}},
        {"identities": [WEB_COOKIE], "event": {"id": "w-3", "type": "addToCart", "timestamp": _iso(
            now - timedelta(days=2)), "channel": "web",
            "product": {"sku": "MH01-L", "size": "L", "category": "mens", "price": 52.0}}}])
    assert _members(api, "gift-givers") == []  # batch segments wait for the run

    job = _run(api)
    assert job["counts"]["gift-givers"] == {"realized": 1, "existing": 0, "exited": 0}
    sarah = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()
    assert _members(api, "gift-givers") == [(sarah["id"], "realized")]
    membership = next(m for m in sarah["memberships"] if m["segment"] == "gift-givers")
    assert membership["name"] == "Gift-giving cart abandoners" and membership["status"] == "realized"
    assert membership["entered_at"] == job["as_of"] and membership["exited_at"] is None
    assert api.get("/v1/segments/gift-givers").json()["size"] == 1

    job = _run(api)  # still qualifies: existing, nothing entered or left
    assert job["counts"]["gift-givers"] == {"realized": 0, "existing": 1, "exited": 0}

    _ingest(api, mobile, [{"identities": [MOBILE_COOKIE, SARAH_EMAIL], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(now - timedelta(days=1, hours=20)), "channel": "mobile",
        "device": {"type": "phone"}, "order": {"id": "o-1", "total": 52.0}}}])
    job = _run(api)
    assert job["counts"]["gift-givers"] == {"realized": 0, "existing": 0, "exited": 1}
    assert _members(api, "gift-givers", status="exited") == [(sarah["id"], "exited")]
    exited = next(m for m in api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["memberships"]
                  if m["segment"] == "gift-givers")
    assert exited["status"] == "exited" and exited["exited_at"] == job["as_of"]
    evaluated = api.post("/v1/evaluate", json={"segment": "gift-givers", "identity": SARAH_EMAIL}).json()
    assert evaluated == {"qualifies": False, "as_of": evaluated["as_of"], "profile_id": sarah["id"],
                         "segment": "gift-givers"}
    points = api.get("/v1/segments/gift-givers/history").json()["points"]
    assert sum(p["entered"] for p in points) == 1 and sum(p["exited"] for p in points) == 1
    assert points[-1]["size"] == 0


# ---- saving and the reference graph ------------------------------------------------------------------


def test_create_read_list_update_delete(api, engine, sandbox):
    store_profiles(engine, sandbox, PROFILES)
    gold = _segment(api, "gold", 'loyalty.tier = "gold"', description="Top tier", evaluation="streaming")
    assert {k: gold[k] for k in ("key", "name", "description", "expression", "canonical", "status", "evaluation",
                                 "depends_on", "used_by", "size")} == {
        "key": "gold", "name": "gold", "description": "Top tier", "expression": 'loyalty.tier = "gold"',
        "canonical": 'loyalty.tier = "gold"', "status": "active", "evaluation": "streaming", "depends_on": [],
        "used_by": [], "size": 1}
    assert gold["created_at"] == gold["updated_at"] and gold["evaluated_at"] is not None
    assert _members(api, "gold") == [("bob", "realized")]  # an active segment is evaluated when saved
    _segment(api, "loyal", 'in segment "gold" OR loyalty.points>400', status="draft")
    listed = api.get("/v1/segments").json()
    assert listed["total"] == 2 and [s["key"] for s in listed["items"]] == ["gold", "loyal"]
    assert [s["key"] for s in api.get("/v1/segments", params={"status": "draft"}).json()["items"]] == ["loyal"]
    loyal = api.get("/v1/segments/loyal").json()
    assert loyal["canonical"] == 'in segment "gold" or loyalty.points > 400'
    assert loyal["depends_on"] == ["gold"] and loyal["size"] == 0 and loyal["evaluated_at"] is None
    assert api.get("/v1/segments/gold").json()["used_by"] == ["loyal"]

    activated = api.patch("/v1/segments/loyal", json={"status": "active"}).json()
    assert activated["status"] == "active" and activated["size"] == 2
    changed = api.patch("/v1/segments/loyal", json={"expression": "loyalty.points > 100", "name": "Loyal"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["name"] == "Loyal" and body["depends_on"] == [] and body["size"] == 3
    assert body["updated_at"] > body["created_at"]
    assert sorted(_members(api, "loyal")) == [("ana", "existing"), ("bob", "existing"), ("sarah", "realized")]
    assert api.get("/v1/segments/gold").json()["used_by"] == []

    assert api.delete("/v1/segments/gold").status_code == 204
    assert_error(api.get("/v1/segments/gold"), 404, "not_found")
    assert_error(api.delete("/v1/segments/gold"), 404, "not_found")
    assert_error(api.patch("/v1/segments/nope", json={"name": "x"}), 404, "not_found")
    assert_error(api.get("/v1/segments/nope/members"), 404, "not_found")
    assert_error(api.get("/v1/segments/nope/history"), 404, "not_found")
    assert_error(api.get("/v1/segments/nope/estimate"), 404, "not_found")
    assert_error(api.patch("/v1/segments/loyal", json={"key": "other"}), 422, "validation_error")
    assert_error(api.patch("/v1/segments/loyal", json={"name": None}), 422, "validation_error")


def test_invalid_expressions_come_back_with_the_language_errors(api):
    response = api.post("/v1/segments", json={"key": "bad", "name": "Bad",
                                              "expression": 'loyalty.tiers = "gold"\nand loyalty.points > "many"'})
    error = assert_error(response, 422, "invalid_expression")
    errors = error["details"]["errors"]
    assert [e["code"] for e in errors] == ["unknown_field", "type_mismatch"]
    assert {k: errors[0][k] for k in ("line", "column", "end_line", "end_column")} == {
        "line": 1, "column": 1, "end_line": 1, "end_column": 14}
    assert "loyalty.tier" in errors[0]["hint"]
    assert errors[1]["line"] == 2 and errors[1]["column"] == 5
    error = assert_error(api.post("/v1/segments", json={"key": "bad", "name": "Bad", "expression": "loyalty.tier ="}),
                         422, "invalid_expression")
    assert error["details"]["errors"][0]["code"] == "syntax_error"
    assert_error(api.post("/v1/segments", json={"key": "bad", "name": "Bad", "expression": "loyalty.points"}),
                 422, "invalid_expression")
    assert_error(api.post("/v1/segments", json={"key": "has space", "name": "x", "expression": "true"}),
                 422, "validation_error")
    assert_error(api.post("/v1/segments", json={"key": "x", "name": "x", "expression": "true", "status": "on"}),
                 422, "validation_error")
    assert api.get("/v1/segments").json()["total"] == 0
    _segment(api, "ok", "email_opt_in")
    assert_error(api.patch("/v1/segments/ok", json={"expression": "email_opt_in +"}), 422, "invalid_expression")
    assert api.get("/v1/segments/ok").json()["expression"] == "email_opt_in"


def test_references_unknown_cycles_and_delete_in_use(api):
    error = assert_error(api.post("/v1/segments", json={"key": "a", "name": "A", "expression": 'in segment "gold"'}),
                         422, "unknown_segment")
    assert error["details"]["errors"][0]["column"] == 1 and error["details"]["errors"][0]["end_column"] == 18
    _segment(api, "gold", 'loyalty.tier = "gold"')
    error = assert_error(api.post("/v1/segments", json={"key": "a", "name": "A", "expression": 'in segment "glod"'}),
                         422, "unknown_segment")
    assert error["details"]["errors"][0]["hint"] == 'did you mean "gold"?'
    assert_error(api.post("/v1/segments", json={"key": "self", "name": "S", "expression": 'in segment "self"'}),
                 422, "segment_cycle")
    _segment(api, "a", 'in segment "gold"')
    _segment(api, "b", 'in segment "a" and email_opt_in')
    error = assert_error(api.patch("/v1/segments/gold", json={"expression": 'in segment "b"'}), 422, "segment_cycle")
    assert '"b" → "a" → "gold" → "b"' in error["details"]["errors"][0]["message"]
    assert_error(api.post("/v1/segments", json={"key": "gold", "name": "G", "expression": "true"}), 409, "conflict")
    error = assert_error(api.delete("/v1/segments/gold"), 409, "segment_in_use")
    assert error["details"] == {"segments": ["a"], "activations": []}
    assert_error(api.delete("/v1/segments/a"), 409, "segment_in_use")
    assert api.delete("/v1/segments/b").status_code == 204
    assert api.delete("/v1/segments/a").status_code == 204
    assert api.delete("/v1/segments/gold").status_code == 204


# ---- members, jobs, history --------------------------------------------------------------------------


def test_members_by_cursor_and_status(api, engine, sandbox):
    store_profiles(engine, sandbox, [{"id": f"p{i:02d}", "attributes": {"loyalty": {"points": i}}} for i in range(25)])
    _segment(api, "some", "loyalty.points >= 5")
    seen, cursor = [], None
    while True:
        page = api.get("/v1/segments/some/members", params={"limit": 7, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [m["profile_id"] for m in body["items"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == [f"p{i:02d}" for i in range(5, 25)]
    api.patch("/v1/segments/some", json={"expression": "loyalty.points >= 20"})
    assert len(_members(api, "some", status="exited")) == 15
    assert len(_members(api, "some", status="realized,existing,exited")) == 20
    assert_error(api.get("/v1/segments/some/members", params={"status": "gone"}), 422, "validation_error")
    assert_error(api.get("/v1/segments/some/members", params={"cursor": "!!"}), 422, "invalid_cursor")


def test_jobs_count_per_segment_and_refuse_what_they_cannot_run(api, engine, sandbox):
    store_profiles(engine, sandbox, PROFILES)
    _segment(api, "gold", 'loyalty.tier = "gold"')
    _segment(api, "idle", "email_opt_in", status="inactive")
    job = _run(api)
    assert job["counts"] == {"gold": {"realized": 0, "existing": 1, "exited": 0}}
    assert job["as_of"] and job["started_at"] and job["finished_at"] and job["segments"] is None
    job = _run(api, segments=["gold"])
    assert job["segments"] == ["gold"]
    assert_error(api.post("/v1/segment-jobs", json={"segments": ["nope"]}), 404, "not_found")
    assert_error(api.post("/v1/segment-jobs", json={"segments": ["idle"]}), 422, "segment_not_active")
    assert_error(api.get("/v1/segment-jobs/999999999"), 404, "not_found")
    listed = api.get("/v1/segment-jobs").json()
    assert listed["total"] == 2 and listed["items"][0]["id"] > listed["items"][1]["id"]
    history = api.get("/v1/segments/gold/history").json()
    assert history["segment"] == "gold" and history["points"][-1]["size"] == 1
    assert api.get("/v1/segments/gold/history", params={"from": "2000-01-01T00:00:00Z",
                                                        "to": "2000-01-02T00:00:00Z"}).json()["points"] == []


def test_one_job_at_a_time_per_sandbox_and_interrupted_jobs_fail(api, engine, sandbox):
    import sqlalchemy as sa

    from cdp.segments.jobs import fail_interrupted
    from cdp.storage.models import segment_jobs

    with engine.begin() as connection:
        pk = connection.execute(segment_jobs.insert().values(
            sandbox=sandbox, status="running", counts={}, created_at=datetime.now(timezone.utc)
        ).returning(segment_jobs.c.pk)).scalar_one()
    error = assert_error(api.post("/v1/segment-jobs", json={}), 409, "segment_job_running")
    assert error["details"] == {"job_id": pk}
    assert fail_interrupted(engine) >= 1  # what the next start of the service does
    failed = api.get(f"/v1/segment-jobs/{pk}").json()
    assert failed["status"] == "failed" and "run it again" in failed["message"]
    _run(api)
    with engine.connect() as connection:
        assert connection.execute(sa.select(segment_jobs.c.status).where(segment_jobs.c.pk == pk)).scalar() == "failed"


# ---- estimates -------------------------------------------------------------------------------------


def test_estimates_exact(api, engine, sandbox):
    store_profiles(engine, sandbox, PROFILES)
    body = api.post("/v1/segments/estimate", json={"expression": "loyalty.points > 100"}).json()
    assert {k: body[k] for k in ("count", "total_profiles", "sampled")} == {"count": 3, "total_profiles": 4,
                                                                            "sampled": False}
    assert body["sample"] == ["sarah", "bob", "ana"] and body["took_ms"] >= 0 and body.get("error_bound") is None
    _segment(api, "gold", 'loyalty.tier = "gold"', status="draft")
    assert api.get("/v1/segments/gold/estimate").json()["count"] == 1
    body = api.post("/v1/segments/estimate", json={"expression": 'in segment "gold" or not email_opt_in'}).json()
    assert body["count"] == 2 and body["sample"] == ["bob", "zoe"]
    error = assert_error(api.post("/v1/segments/estimate", json={"expression": "loyalty.pints > 1"}), 422,
                         "invalid_expression")
    assert error["details"]["errors"][0]["code"] == "unknown_field"
    assert_error(api.post("/v1/segments/estimate", json={"expression": 'in segment "nope"'}), 422, "unknown_segment")


def test_estimates_sampled_above_the_exact_limit(api, engine, sandbox):
    from cdp.segments.settings import SegmentSettings

    store_profiles(engine, sandbox, [{"id": f"s{i:04d}", "attributes": {"loyalty": {"tier": "gold" if i % 4 == 0
                                                                                     else "silver"}}}
                                     for i in range(2000)])
    exact = api.post("/v1/segments/estimate", json={"expression": 'loyalty.tier = "gold"'}).json()
    assert exact["count"] == 500 and not exact["sampled"]
    _segment(api, "gold", 'loyalty.tier = "gold"', status="draft")
    previous = getattr(api.app.state, "segment_settings", None)
    api.app.state.segment_settings = SegmentSettings(estimate_exact_limit=1000, estimate_sample_rows=800)
    try:
        answers = [api.post("/v1/segments/estimate", json={"expression": expression}).json()
                   for expression in ('loyalty.tier = "gold"', 'in segment "gold" or loyalty.tier = "bronze"')]
        saved = api.get("/v1/segments/gold/estimate").json()
    finally:
        api.app.state.segment_settings = previous
    for body in answers + [saved]:  # the reference is computed on the same sample: exact there
        assert body["sampled"] is True and body["total_profiles"] == 2000
        assert 200 < body["sample_size"] < 1600  # about 800
        assert body["error_bound"] > 0 and abs(body["count"] - 500) <= 4 * body["error_bound"] / 1.96
        assert body["sample"] and all(int(pid[1:]) % 4 == 0 for pid in body["sample"])


def test_a_statement_timeout_stops_an_expensive_estimate(migrated_engine):
    import sqlalchemy as sa

    from cdp.segments.estimates import _statement_timeout, _timed_out

    slow = sa.text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
                   "SELECT count(*) FROM c")
    with migrated_engine.begin() as connection:
        with pytest.raises(sa.exc.DBAPIError) as info:
            with _statement_timeout(connection, 50):
                connection.execute(slow)
        assert _timed_out(info.value)
        assert connection.execute(sa.text("SELECT 1")).scalar() == 1  # the transaction goes on


# ---- /v1/evaluate --------------------------------------------------------------------------------


def test_evaluate_documents_stored_profiles_and_segments(api, engine, sandbox):
    store_profiles(engine, sandbox, PROFILES)
    _segment(api, "gold", 'loyalty.tier = "gold"')
    as_of = "2026-11-28T12:00:00Z"
    body = api.post("/v1/evaluate", json={"expression": 'exists event where type = "addToCart" within last 1 day',
                                          "profile": SARAH, "as_of": as_of}).json()
    assert body == {"qualifies": True, "as_of": as_of}
    body = api.post("/v1/evaluate", json={"segment": "gold", "profile_id": "bob", "explain": True}).json()
    assert body["qualifies"] is True and body["profile_id"] == "bob" and body["segment"] == "gold"
    assert body["explain"][0] == {"depth": 0, "expression": 'loyalty.tier = "gold"', "value": "TRUE"}
    body = api.post("/v1/evaluate", json={"expression": 'in segment "gold" or loyalty.points > 400',
                                          "profile_id": "ana"}).json()
    assert body["qualifies"] is True
    assert_error(api.post("/v1/evaluate", json={"segment": "gold", "profile_id": "nobody"}), 404, "not_found")
    assert_error(api.post("/v1/evaluate", json={"segment": "nope", "profile_id": "bob"}), 404, "not_found")
    assert_error(api.post("/v1/evaluate", json={"segment": "gold", "identity": {"namespace": "email",
                                                                                 "id": "nobody@example.com"}}),
                 404, "not_found")
    assert_error(api.post("/v1/evaluate", json={"expression": "x >", "profile_id": "bob"}), 422, "invalid_expression")
    assert_error(api.post("/v1/evaluate", json={"segment": "gold", "expression": "true", "profile_id": "bob"}),
                 422, "validation_error")
    assert_error(api.post("/v1/evaluate", json={"segment": "gold"}), 422, "validation_error")
    assert_error(api.post("/v1/evaluate", json={"segment": "gold", "profile": {"id": 1, "events": "no"}}),
                 422, "invalid_profile")


# ---- roles and sandboxes ---------------------------------------------------------------------------


def test_roles(api):
    _segment(api, "gold", 'loyalty.tier = "gold"')
    for role in ("marketer", "data_steward"):
        created = api.post("/v1/segments", role=role, json={"key": f"by-{role}", "name": "x", "expression": "true"})
        assert created.status_code == 201, created.text
        assert api.patch(f"/v1/segments/by-{role}", role=role, json={"name": "y"}).status_code == 200
        assert api.delete(f"/v1/segments/by-{role}", role=role).status_code == 204
    assert api.post("/v1/segment-jobs", role="marketer", json={}).status_code == 202
    error = assert_error(api.post("/v1/segments", role="reader", json={"key": "r", "name": "r", "expression": "true"}),
                         403, "forbidden")
    assert error["details"]["role"] == "reader"
    assert_error(api.patch("/v1/segments/gold", role="reader", json={"name": "x"}), 403, "forbidden")
    assert_error(api.delete("/v1/segments/gold", role="reader"), 403, "forbidden")
    assert_error(api.post("/v1/segment-jobs", role="reader", json={}), 403, "forbidden")
    for path in ("/v1/segments", "/v1/segments/gold", "/v1/segments/gold/members", "/v1/segments/gold/history",
                 "/v1/segments/gold/estimate", "/v1/segment-jobs"):
        assert api.get(path, role="reader").status_code == 200, path
        assert_error(api.get(path, role=None), 401)
    assert api.post("/v1/segments/estimate", role="reader", json={"expression": "true"}).status_code == 200
    assert api.post("/v1/evaluate", role="reader", json={"segment": "gold", "profile": SARAH}).status_code == 200


def test_sandboxes_are_isolated(api, engine, sandbox):
    other = new_sandbox(api)
    store_profiles(engine, sandbox, PROFILES)
    store_profiles(engine, other, PROFILES)
    _segment(api, "gold", 'loyalty.tier = "gold"')
    assert_error(api.get("/v1/segments/gold", sandbox=other), 404, "not_found")
    assert api.get("/v1/segments", sandbox=other).json()["total"] == 0
    assert_error(api.post("/v1/segments", sandbox=other, json={"key": "a", "name": "a",
                                                                "expression": 'in segment "gold"'}),
                 422, "unknown_segment")
    created = api.post("/v1/segments", sandbox=other, json={"key": "gold", "name": "other gold",
                                                            "expression": 'loyalty.tier = "silver"'})
    assert created.status_code == 201 and created.json()["size"] == 1
    assert _members(api, "gold") == [("bob", "realized")]
    assert api.post("/v1/segments/estimate", sandbox=other, json={"expression": "true"}).json()["total_profiles"] == 4
    assert_error(api.post("/v1/evaluate", sandbox=other, json={"segment": "gold", "profile_id": "nobody"}), 404)
    job = api.post("/v1/segment-jobs", json={}).json()
    assert_error(api.get(f"/v1/segment-jobs/{job['id']}", sandbox=other), 404, "not_found")


def test_the_openapi_document_describes_the_segment_endpoints(api):
    document = api.get("/openapi.json", role=None).json()
    paths = document["paths"]
    for path, method in (("/v1/segments", "post"), ("/v1/segments", "get"), ("/v1/segments/{key}", "get"),
                         ("/v1/segments/{key}", "patch"), ("/v1/segments/{key}", "delete"),
                         ("/v1/segments/{key}/members", "get"), ("/v1/segments/estimate", "post"),
                         ("/v1/segments/{key}/estimate", "get"), ("/v1/segments/{key}/history", "get"),
                         ("/v1/segment-jobs", "post"), ("/v1/segment-jobs/{job_id}", "get"), ("/v1/evaluate", "post")):
        assert method in paths[path], (path, method)
    assert paths["/v1/segments"]["post"]["x-roles"] == ["admin", "data_steward", "marketer"]
    assert paths["/v1/evaluate"]["post"]["x-roles"] == ["admin", "data_steward", "marketer", "reader"]
    assert "202" in paths["/v1/segment-jobs"]["post"]["responses"]
    read = document["components"]["schemas"]["SegmentRead"]["properties"]
    assert {"key", "name", "description", "expression", "canonical", "status", "evaluation", "depends_on",
            "created_at", "updated_at", "size"} <= set(read)
