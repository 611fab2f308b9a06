"""Governance over HTTP (API.md, "Governance"), on SQLite and PostgreSQL: labels, marketing
actions, policies (deny conditions with their errors), and evaluation with lineage — the Luma
story step 5, deny trees of every shape, labels at dataset and field level, labels reached only
through a referenced segment, a field supplied by two datasets, draft policies, roles."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.api.conftest import assert_error
from tests.api.conftest import create_dataset as _dataset

GIFT_GIVERS = '''loyalty.tier is not null
and (exists event where type = "addToCart"
       and product.category != profile.preferred_category
       and product.size != profile.preferred_size
       within last 7 days)
and (exists event as cart where type = "addToCart" within last 7 days
       then no event where type = "purchase" within 1 day)'''
SARAH_EMAIL = {"namespace": "email", "id": "sarah.rose@example.com"}
CRM_ID = {"namespace": "crm_id", "id": "C-1001"}


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _labelled(api, kind: str, name: str, labels=(), field_labels=None) -> int:
    dataset = _dataset(api, kind, name)
    response = api.patch(f"/v1/datasets/{dataset}", json={"labels": list(labels), "field_labels": field_labels or {}})
    assert response.status_code == 200, response.text
    return dataset


def _ingest(api, dataset_id: int, records: list) -> None:
    response = api.post(f"/v1/datasets/{dataset_id}/records", json={"records": records})
    assert response.status_code == 200, response.text
    assert all(r["status"] == "accepted" for r in response.json()["results"]), response.text


def _policy(api, name: str, action: str, deny: str, status: str = "enabled", role: str = "data_steward") -> dict:
    response = api.post("/v1/policies", role=role, json={"name": name, "marketing_action": action, "deny": deny,
                                                          "status": status})
    assert response.status_code == 201, response.text
    return response.json()


def _segment(api, key: str, expression: str) -> None:
    response = api.post("/v1/segments", role="marketer", json={"key": key, "name": key, "expression": expression})
    assert response.status_code == 201, response.text


def _evaluate(api, role: str = "marketer", **body) -> dict:
    response = api.post("/v1/policies/evaluate", role=role, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _steps(violation: dict) -> set[tuple]:
    return {(s["attribute"], s["dataset"]["name"], s["label"], s["level"], s.get("via_segment"))
            for s in violation["lineage"]}


# ---- the Luma story, step 5 --------------------------------------------------------------------------


def test_luma_story_step_5_policies_on_the_gift_giving_segment_with_email_exported(api):
    """The CRM dataset is labelled (C2 on the whole dataset; I1 on email, S1 on the street
    address); "Export to third party" is denied for C2 and "Email targeting" for C4 OR (I1 AND
    S1). For the gift-giving segment with email exported: export to a third party is refused
    with the lineage of every CRM field in play; email targeting is allowed (I1 alone does not
    make the condition true) until the street address is exported too."""
    crm = _labelled(api, "profile", "CRM contacts", ["C2"], {"email": ["I1"], "home_address.street": ["S1"]})
    web = _labelled(api, "event", "Web events")
    now = datetime.now(timezone.utc)
    _ingest(api, crm, [{"identities": [SARAH_EMAIL, CRM_ID], "attributes": {
        "person": {"first_name": "Sarah", "last_name": "Rose"}, "email": "sarah.rose@example.com",
        "home_address": {"street": "1 Main St"}, "loyalty": {"tier": "bronze"}, "preferred_category": "womens",
        "preferred_size": "S"}}])
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "w-1", "type": "addToCart", "timestamp": _iso(now - timedelta(hours=30)), "channel": "web",
        "product": {"sku": "MH01-L", "category": "mens", "size": "L", "price": 52.0}}}])
    export = _policy(api, "Export to third party", "export_to_third_party", "C2")
    email = _policy(api, "Email targeting", "email_targeting", "c4 or (I1 and S1)".replace("c4", "C4"))
    assert email["deny"] == "C4 OR (I1 AND S1)"
    assert email["deny_tree"] == {"or": [{"label": "C4"}, {"and": [{"label": "I1"}, {"label": "S1"}]}]}
    _segment(api, "gift-givers", GIFT_GIVERS)
    assert api.get("/v1/segments/gift-givers").json()["size"] == 1

    refused = _evaluate(api, marketing_action="export_to_third_party", segment="gift-givers", attributes=["email"])
    assert refused["allowed"] is False and refused["marketing_action"] == "export_to_third_party"
    assert refused["labels"] == ["C2", "I1"]
    [violation] = refused["violations"]
    assert violation["policy"] == {"id": export["id"], "name": "Export to third party", "deny": "C2"}
    assert violation["marketing_action"] == "export_to_third_party" and violation["labels"] == ["C2"]
    assert _steps(violation) == {(path, "CRM contacts", "C2", "dataset", None) for path in
                                 ("email", "loyalty.tier", "preferred_category", "preferred_size")}
    exported = [s for s in violation["lineage"] if s["use"] == "export"]
    assert [(s["attribute"], s["dataset"]) for s in exported] == [("email", {"id": crm, "name": "CRM contacts"})]
    assert all("via_segment" not in s for s in violation["lineage"])

    allowed = _evaluate(api, marketing_action="email_targeting", segment="gift-givers", attributes=["email"])
    assert allowed == {"allowed": True, "marketing_action": "email_targeting", "labels": ["C2", "I1"],
                       "violations": []}

    denied = _evaluate(api, marketing_action="email_targeting", segment="gift-givers",
                       attributes=["email", "home_address.street"])
    [violation] = denied["violations"]
    assert denied["allowed"] is False and violation["policy"]["name"] == "Email targeting"
    assert violation["labels"] == ["I1", "S1"]
    assert _steps(violation) == {("email", "CRM contacts", "I1", "field", None),
                                 ("home_address.street", "CRM contacts", "S1", "field", None)}


# ---- deny trees ------------------------------------------------------------------------------------


def test_deny_trees_and_or_and_nesting_over_dataset_and_field_labels(api):
    crm = _labelled(api, "profile", "CRM", ["C5"], {"email": ["I1"], "phone": ["I1", "C3"]})
    loyalty = _labelled(api, "profile", "Loyalty", [], {"loyalty.points": ["C9"]})
    _ingest(api, crm, [{"identities": [SARAH_EMAIL], "attributes": {"email": "s@example.com", "phone": "+1 555",
                                                                    "loyalty": {"tier": "gold"}}}])
    _ingest(api, loyalty, [{"identities": [SARAH_EMAIL], "attributes": {"loyalty": {"points": 10}}}])
    policies = {
        "and-both": _policy(api, "and both", "data_science", "C5 AND C9"),
        "and-missing": _policy(api, "and missing", "data_science", "C5 AND C12"),
        "or-one": _policy(api, "or one", "data_science", "C12 OR I1"),
        "nested": _policy(api, "nested", "data_science", "(C12 OR C9) AND (C3 OR (S1 AND S2))"),
        "nested-true": _policy(api, "nested true", "data_science", "C12 OR (C5 AND (C9 OR S2))"),
    }

    def names(**body) -> dict[str, list[str]]:
        answer = _evaluate(api, marketing_action="data_science", **body)
        assert answer["allowed"] is (not answer["violations"])
        return {v["policy"]["name"]: v["labels"] for v in answer["violations"]}

    # reads loyalty.points (Loyalty: C9 on the field) and loyalty.tier (CRM: C5 on the dataset)
    assert names(expression="loyalty.points > 5 and loyalty.tier = \"gold\"") == {
        "and both": ["C5", "C9"], "nested true": ["C5", "C9"]}
    # only the CRM: the dataset-level label reaches every CRM field, the field-level one only its field
    assert names(expression="loyalty.tier = \"gold\"") == {}
    assert names(expression="email is not null") == {"or one": ["I1"]}
    assert names(attributes=["phone", "loyalty.points"]) == {
        "and both": ["C5", "C9"], "or one": ["I1"], "nested": ["C3", "C9"], "nested true": ["C5", "C9"]}
    answer = _evaluate(api, marketing_action="data_science", attributes=["phone"])
    [violation] = answer["violations"]
    assert _steps(violation) == {("phone", "CRM", "I1", "field", None)}
    assert answer["labels"] == ["C3", "C5", "I1"]
    # an object path stands for every field under it
    assert names(attributes=["loyalty"])["and both"] == ["C5", "C9"]
    assert policies["and-missing"]["labels"] == ["C12", "C5"]


def test_a_field_supplied_by_two_datasets_of_which_one_is_labelled(api):
    crm = _labelled(api, "profile", "CRM", ["C2"])
    loyalty = _labelled(api, "profile", "Loyalty")
    _ingest(api, crm, [{"identities": [SARAH_EMAIL], "attributes": {"loyalty": {"tier": "bronze"}}}])
    _ingest(api, loyalty, [{"identities": [SARAH_EMAIL], "attributes": {"loyalty": {"tier": "gold"}}}])
    _policy(api, "No third parties", "export_to_third_party", "C2")
    answer = _evaluate(api, marketing_action="export_to_third_party", expression='loyalty.tier = "gold"')
    [violation] = answer["violations"]
    assert [(s["attribute"], s["dataset"]["id"], s["label"]) for s in violation["lineage"]] == [
        ("loyalty.tier", crm, "C2")]
    # a dataset that never supplied the field is not in play…
    assert _evaluate(api, marketing_action="export_to_third_party", expression="loyalty.points > 1")["allowed"]
    # …unless it labels that field (what is labelled is never left out)
    api.patch(f"/v1/datasets/{loyalty}", json={"field_labels": {"loyalty.points": ["C2"]}})
    answer = _evaluate(api, marketing_action="export_to_third_party", expression="loyalty.points > 1")
    assert _steps(answer["violations"][0]) == {("loyalty.points", "Loyalty", "C2", "field", None)}


def test_event_fields_map_to_the_event_datasets(api):
    web = _labelled(api, "event", "Web events", ["C6"])
    _labelled(api, "event", "Empty events", ["C12"])  # holds no events, labels no field: not in play
    mobile = _labelled(api, "event", "Mobile events", [], {"product.category": ["C7"]})
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {"id": "w-1", "type": "pageView",
                                                               "timestamp": "2026-11-27T18:04:00Z"}}])
    _policy(api, "ads", "onsite_advertising", "C6 OR C7 OR C12")
    answer = _evaluate(api, marketing_action="onsite_advertising",
                       expression='exists event where product.category = "mens"')
    [violation] = answer["violations"]
    assert violation["labels"] == ["C6", "C7"]
    assert _steps(violation) == {("product.category", "Web events", "C6", "dataset", None),
                                 ("product.category", "Mobile events", "C7", "field", None)}
    assert all(s["kind"] == "event" for s in violation["lineage"]) and mobile
    # an event term that names no field still reads the events; a window reads their time
    answer = _evaluate(api, marketing_action="onsite_advertising", expression="exists event within last 7 days")
    assert _steps(answer["violations"][0]) == {("timestamp", "Web events", "C6", "dataset", None)}
    answer = _evaluate(api, marketing_action="onsite_advertising", expression="count(event) > 2")
    assert _steps(answer["violations"][0]) == {("id", "Web events", "C6", "dataset", None)}


def test_a_label_reached_only_through_a_referenced_segment(api):
    crm = _labelled(api, "profile", "CRM", [], {"person.birth_date": ["S2"]})
    _ingest(api, crm, [{"identities": [SARAH_EMAIL], "attributes": {"person": {"birth_date": "1990-04-01"},
                                                                    "loyalty": {"tier": "gold"}}}])
    _policy(api, "no sensitive", "cross_site_targeting", "S2")
    _segment(api, "born-in-spring", "person.birth_date is not null")
    _segment(api, "spring-gold", 'in segment "born-in-spring" and loyalty.tier = "gold"')
    _segment(api, "top", 'in segment "spring-gold"')
    for body in ({"segment": "top"}, {"segment": "spring-gold"}, {"expression": 'in segment "top"'}):
        answer = _evaluate(api, marketing_action="cross_site_targeting", **body)
        [violation] = answer["violations"]
        assert _steps(violation) == {("person.birth_date", "CRM", "S2", "field", "born-in-spring")}, body
    answer = _evaluate(api, marketing_action="cross_site_targeting", segment="born-in-spring")
    assert _steps(answer["violations"][0]) == {("person.birth_date", "CRM", "S2", "field", None)}
    # read directly and through a segment: a step for each way
    answer = _evaluate(api, marketing_action="cross_site_targeting",
                       expression='person.birth_date is null or in segment "spring-gold"')
    assert [s.get("via_segment") for s in answer["violations"][0]["lineage"]] == [None, "born-in-spring"]
    assert _evaluate(api, marketing_action="cross_site_targeting", expression='loyalty.tier = "gold"')["allowed"]


def test_only_enabled_policies_count(api):
    crm = _labelled(api, "profile", "CRM", ["C2"])
    _ingest(api, crm, [{"identities": [SARAH_EMAIL], "attributes": {"email": "s@example.com"}}])
    draft = _policy(api, "draft", "export_to_third_party", "C2", status="draft")
    other_action = _policy(api, "other action", "analytics", "C2")
    body = {"marketing_action": "export_to_third_party", "attributes": ["email"]}
    assert _evaluate(api, **body) == {"allowed": True, "marketing_action": "export_to_third_party", "labels": ["C2"],
                                      "violations": []}
    assert api.patch(f"/v1/policies/{draft['id']}", json={"status": "enabled"}).json()["status"] == "enabled"
    assert [v["policy"]["id"] for v in _evaluate(api, **body)["violations"]] == [draft["id"]]
    assert api.post("/v1/policies", json={"name": "default", "marketing_action": "analytics",
                                          "deny": "C1"}).json()["status"] == "draft"
    assert other_action["status"] == "enabled"


# ---- labels, actions and policies as resources --------------------------------------------------------


def test_labels_standard_and_custom(api):
    page = api.get("/v1/labels", role="reader").json()
    names = [label["name"] for label in page["items"]]
    assert names[:16] == [f"C{n}" for n in range(1, 13)] + ["I1", "I2", "S1", "S2"] and page["total"] == 16
    c2 = page["items"][1]
    assert c2["family"] == "contract" and c2["standard"] and c2["title"] == "No export to a third party"
    created = api.post("/v1/labels", role="data_steward", json={"name": "PARTNER_ONLY", "description": "partner"})
    assert created.status_code == 201 and created.json()["family"] == "custom" and not created.json()["standard"]
    assert api.get("/v1/labels", params={"family": "custom"}).json()["items"][0]["name"] == "PARTNER_ONLY"
    assert api.get("/v1/labels/I1").json()["family"] == "identity"
    assert_error(api.post("/v1/labels", json={"name": "PARTNER_ONLY"}), 409, "label_exists")
    assert_error(api.post("/v1/labels", json={"name": "C2"}), 409, "label_exists")
    assert_error(api.post("/v1/labels", json={"name": "Or"}), 422, "invalid_label")
    assert_error(api.post("/v1/labels", json={"name": "1x"}), 422, "validation_error")
    assert_error(api.get("/v1/labels/NOPE"), 404, "not_found")
    changed = api.patch("/v1/labels/PARTNER_ONLY", role="data_steward", json={"description": "from partners"})
    assert changed.status_code == 200 and changed.json()["description"] == "from partners"
    assert_error(api.patch("/v1/labels/C2", json={"description": "mine"}), 409, "standard_label")
    assert_error(api.patch("/v1/labels/NOPE", json={}), 404, "not_found")
    assert_error(api.patch("/v1/labels/PARTNER_ONLY", role="marketer", json={}), 403, "forbidden")
    # a label no dataset carries can be used in a policy; while it is, it cannot be deleted
    policy = _policy(api, "partners", "export_to_third_party", "PARTNER_ONLY OR C2")
    error = assert_error(api.delete("/v1/labels/PARTNER_ONLY"), 409, "label_in_use")
    assert error["details"]["policies"] == ["partners"]
    assert_error(api.delete("/v1/labels/C2"), 409, "standard_label")
    assert api.delete(f"/v1/policies/{policy['id']}").status_code == 204
    assert api.delete("/v1/labels/PARTNER_ONLY").status_code == 204
    assert api.get("/v1/labels").json()["total"] == 16


def test_marketing_actions_core_and_custom(api):
    page = api.get("/v1/marketing-actions", role="reader").json()
    assert [a["key"] for a in page["items"]] == [
        "analytics", "combine_with_pii", "cross_site_targeting", "data_science", "email_targeting",
        "export_to_third_party", "onsite_advertising", "onsite_personalization", "segment_match",
        "single_identity_personalization"]
    assert all(a["core"] and a["name"] and a["description"] for a in page["items"])
    created = api.post("/v1/marketing-actions", role="data_steward",
                       json={"key": "sms_targeting", "name": "SMS targeting", "description": "texts"})
    assert created.status_code == 201 and created.json()["core"] is False
    assert api.get("/v1/marketing-actions/sms_targeting").json()["name"] == "SMS targeting"
    assert_error(api.post("/v1/marketing-actions", json={"key": "sms_targeting", "name": "x"}), 409,
                 "marketing_action_exists")
    assert_error(api.post("/v1/marketing-actions", json={"key": "analytics", "name": "x"}), 409,
                 "marketing_action_exists")
    assert_error(api.post("/v1/marketing-actions", json={"key": "SMS", "name": "x"}), 422, "validation_error")
    changed = api.patch("/v1/marketing-actions/sms_targeting", json={"name": "Text messages"}).json()
    assert changed["name"] == "Text messages" and changed["description"] == "texts"
    assert_error(api.patch("/v1/marketing-actions/sms_targeting", json={"name": None}), 422, "validation_error")
    assert_error(api.patch("/v1/marketing-actions/analytics", json={"name": "x"}), 409, "core_marketing_action")
    policy = _policy(api, "sms", "sms_targeting", "C4")
    assert_error(api.delete("/v1/marketing-actions/sms_targeting"), 409, "marketing_action_in_use")
    assert_error(api.delete("/v1/marketing-actions/analytics"), 409, "core_marketing_action")
    api.delete(f"/v1/policies/{policy['id']}")
    assert api.delete("/v1/marketing-actions/sms_targeting").status_code == 204
    assert_error(api.get("/v1/marketing-actions/sms_targeting"), 404, "not_found")


def test_policy_crud(api):
    created = _policy(api, "No ads", "onsite_advertising", "(C4)  or  C6", status="draft")
    assert created["deny"] == "C4 OR C6" and created["labels"] == ["C4", "C6"] and created["description"] is None
    path = f"/v1/policies/{created['id']}"
    assert api.get(path, role="reader").json() == created
    changed = api.patch(path, json={"deny": "C4 AND (C6 OR C7)", "name": "Ads", "description": "why"}).json()
    assert changed["deny"] == "C4 AND (C6 OR C7)" and changed["name"] == "Ads" and changed["description"] == "why"
    assert changed["deny_tree"] == {"and": [{"label": "C4"}, {"or": [{"label": "C6"}, {"label": "C7"}]}]}
    other = _policy(api, "Email", "email_targeting", "I1")
    assert [p["id"] for p in api.get("/v1/policies").json()["items"]] == [created["id"], other["id"]]
    assert api.get("/v1/policies", params={"marketing_action": "email_targeting"}).json()["total"] == 1
    assert api.get("/v1/policies", params={"status": "draft"}).json()["items"][0]["id"] == created["id"]
    assert api.get("/v1/policies", params={"label": "C7"}).json()["total"] == 1
    assert_error(api.post("/v1/policies", json={"name": "Email", "marketing_action": "analytics", "deny": "C1"}),
                 409, "policy_exists")
    assert_error(api.patch(path, json={"name": "Email"}), 409, "policy_exists")
    assert_error(api.patch(path, json={"deny": None}), 422, "validation_error")
    error = assert_error(api.post("/v1/policies", json={"name": "x", "marketing_action": "email_targetting",
                                                        "deny": "C1"}), 422, "unknown_marketing_action")
    assert error["details"]["suggestions"] == ["email_targeting"]
    assert_error(api.patch(path, json={"marketing_action": "nope"}), 422, "unknown_marketing_action")
    assert api.delete(path).status_code == 204
    assert_error(api.get(path), 404, "not_found")
    assert_error(api.delete(path), 404, "not_found")


def test_policy_text_errors_come_with_their_positions(api):
    def errors(deny: str) -> list[dict]:
        error = assert_error(api.post("/v1/policies", json={"name": "p", "marketing_action": "analytics",
                                                            "deny": deny}), 422, "invalid_policy")
        assert error["details"]["field"] == "deny"
        return error["details"]["errors"]

    [unknown] = errors("C4 OR (I1 AND S9)")
    assert unknown == {"code": "unknown_label", "message": "unknown label `S9`", "line": 1, "column": 15,
                       "end_line": 1, "end_column": 17, "hint": "did you mean `S1`, `S2`?",
                       "caret": "C4 OR (I1 AND S9)\n              ^^"}
    two = errors("c2 OR\n  PARTNER")
    assert [(e["code"], e["line"], e["column"], e["end_column"]) for e in two] == [
        ("unknown_label", 1, 1, 3), ("unknown_label", 2, 3, 10)]
    assert two[0]["hint"] == "did you mean `C2`?" and two[1]["caret"] == "  PARTNER\n  ^^^^^^^"
    [early] = errors("C4 OR (I1 AND S1")
    assert (early["code"], early["column"], early["hint"]) == ("syntax_error", 17, "close the parenthesis with `)`")
    [juxtaposed] = errors("C4 I1")
    assert (juxtaposed["column"], juxtaposed["end_column"]) == (4, 6) and "AND" in juxtaposed["hint"]
    [ampersand] = errors("C4 && I1")
    assert ampersand["message"] == "unexpected character `&`" and ampersand["hint"] == "write `AND`"
    [negation] = errors("NOT C4")
    assert "no NOT" in negation["hint"]
    [deep] = errors("(" * 40 + "C1" + ")" * 40)
    assert deep["code"] == "too_complex" and deep["column"] == 33
    assert_error(api.post("/v1/policies", json={"name": "p", "marketing_action": "analytics", "deny": ""}), 422,
                 "validation_error")
    created = _policy(api, "ok", "analytics", "C1")
    [error] = assert_error(api.patch(f"/v1/policies/{created['id']}", json={"deny": "C1 OR"}), 422,
                           "invalid_policy")["details"]["errors"]
    assert error["column"] == 6 and error["message"].startswith("the condition ends too early")


def test_evaluation_errors(api):
    _segment(api, "gold", 'loyalty.tier = "gold"')
    assert_error(api.post("/v1/policies/evaluate", json={"marketing_action": "emailing", "segment": "gold"}), 422,
                 "unknown_marketing_action")
    assert_error(api.post("/v1/policies/evaluate", json={"marketing_action": "analytics", "segment": "nope"}), 404,
                 "not_found")
    error = assert_error(api.post("/v1/policies/evaluate", json={"marketing_action": "analytics",
                                                                 "expression": "loyalty.tiers = 1"}),
                         422, "invalid_expression")
    assert error["details"]["errors"][0]["code"] == "unknown_field"
    assert_error(api.post("/v1/policies/evaluate", json={"marketing_action": "analytics",
                                                         "expression": 'in segment "nope"'}), 422, "unknown_segment")
    error = assert_error(api.post("/v1/policies/evaluate", json={"marketing_action": "analytics",
                                                                 "attributes": ["emial", "x.y"]}),
                         422, "invalid_attributes")
    assert "did you mean 'email'" in error["details"]["errors"][0] and len(error["details"]["errors"]) == 2
    assert_error(api.post("/v1/policies/evaluate", json={"marketing_action": "analytics"}), 422, "validation_error")
    assert_error(api.post("/v1/policies/evaluate", json={"marketing_action": "analytics", "segment": "gold",
                                                         "expression": "true"}), 422, "validation_error")
    # nothing labelled: allowed, with no labels
    assert _evaluate(api, marketing_action="analytics", segment="gold") == {
        "allowed": True, "marketing_action": "analytics", "labels": [], "violations": []}


def test_who_may_do_what(api):
    created = _policy(api, "p", "analytics", "C8", role="admin")
    for role in ("marketer", "reader"):
        assert_error(api.post("/v1/policies", role=role, json={"name": "x", "marketing_action": "analytics",
                                                               "deny": "C1"}), 403, "forbidden")
        assert_error(api.patch(f"/v1/policies/{created['id']}", role=role, json={"status": "draft"}), 403)
        assert_error(api.delete(f"/v1/policies/{created['id']}", role=role), 403)
        assert_error(api.post("/v1/labels", role=role, json={"name": "MINE"}), 403)
        assert_error(api.post("/v1/marketing-actions", role=role, json={"key": "mine", "name": "Mine"}), 403)
        assert api.get("/v1/policies", role=role).status_code == 200
        assert api.get(f"/v1/policies/{created['id']}", role=role).status_code == 200
        assert api.get("/v1/labels", role=role).status_code == 200
        assert api.get("/v1/marketing-actions", role=role).status_code == 200
    body = {"marketing_action": "analytics", "expression": "true"}
    assert api.post("/v1/policies/evaluate", role="marketer", json=body).status_code == 200
    assert_error(api.post("/v1/policies/evaluate", role="reader", json=body), 403, "forbidden")
    assert api.patch(f"/v1/policies/{created['id']}", role="data_steward", json={"status": "draft"}).status_code == 200


def test_openapi_documents_governance(api):
    document = api.get("/openapi.json", role=None).json()
    paths = document["paths"]
    assert paths["/v1/policies/evaluate"]["post"]["x-roles"] == ["admin", "data_steward", "marketer"]
    assert paths["/v1/policies"]["post"]["x-roles"] == ["admin", "data_steward"]
    assert paths["/v1/labels"]["get"]["x-roles"] == ["admin", "data_steward", "marketer", "reader"]
    schemas = document["components"]["schemas"]
    assert {"PolicyRead", "PolicyDecision", "Violation", "LineageStep", "LabelRead", "MarketingActionRead"} <= set(
        schemas)
    assert set(schemas["Violation"]["required"]) == {"policy", "marketing_action", "labels", "lineage"}
    assert paths["/v1/policies"]["post"]["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PolicyRead"}
