"""The schema in force: read, replace, and refused incompatible changes."""

from __future__ import annotations

from cdp.schema.luma import LUMA_SCHEMA
from tests.api.conftest import SARAH, assert_error, store_profiles

KEYS = ("profile", "event", "event_types", "enums")


def _body(schema: dict) -> dict:
    return {k: schema[k] for k in KEYS}


def test_default_is_the_luma_schema(api):
    schema = api.get("/v1/schema", role="reader").json()
    assert schema["is_default"] is True and schema["version"] == 0 and schema["updated_at"] is None
    assert schema["profile"] == LUMA_SCHEMA["profile"] and schema["event"] == LUMA_SCHEMA["event"]
    assert schema["event_types"] == LUMA_SCHEMA["event_types"] and schema["enums"] == LUMA_SCHEMA["enums"]
    assert list(schema["profile"]) == sorted(schema["profile"])


def test_replace_round_trip(api):
    body = _body(api.get("/v1/schema").json())
    body["profile"]["shoe_size"] = "number"
    body["profile"]["favourite_colours"] = "list<string>"
    body["event"]["store.id"] = "string"
    body["event_types"].append("storeVisit")
    body["enums"]["loyalty.tier"] = ["bronze", "silver", "gold", "platinum", "diamond"]
    replaced = api.put("/v1/schema", role="data_steward", json=body)
    assert replaced.status_code == 200, replaced.text
    read = api.get("/v1/schema").json()
    assert read == replaced.json()
    assert read["version"] == 1 and read["is_default"] is False and read["updated_at"]
    assert _body(read) == {**body, "profile": dict(sorted(body["profile"].items())),
                           "event": dict(sorted(body["event"].items())), "enums": dict(sorted(body["enums"].items()))}
    assert api.put("/v1/schema", json=body).json()["version"] == 2


def test_any_change_is_allowed_while_the_sandbox_is_empty(api):
    body = {"profile": {"email": "string", "points": "integer"}, "event": {}, "event_types": ["purchase"], "enums": {}}
    assert api.put("/v1/schema", json=body).status_code == 200
    body["profile"]["points"] = "number"
    del body["profile"]["email"]
    assert api.put("/v1/schema", json=body).status_code == 200
    assert api.get("/v1/schema").json()["profile"] == {"points": "number"}


def test_incompatible_change_with_stored_data_is_refused_with_each_field(api, engine):
    store_profiles(engine, api.sandbox, [SARAH])
    body = _body(api.get("/v1/schema").json())
    del body["profile"]["crm_id"]
    body["profile"]["loyalty.points"] = "string"
    del body["event"]["campaign.name"]
    body["event_types"].remove("callCenter")
    body["profile"]["shoe_size"] = "number"  # an addition alongside does not help
    error = assert_error(api.put("/v1/schema", json=body), 409, "schema_incompatible")
    details = error["details"]
    assert details["stored"] == {"profiles": 1, "events": 1}
    changes = {(f["kind"], f["field"]): f for f in details["fields"]}
    assert set(changes) == {("profile", "crm_id"), ("profile", "loyalty.points"), ("event", "campaign.name"),
                            ("event_type", "callCenter")}
    assert changes[("profile", "crm_id")]["change"] == "removed"
    assert changes[("profile", "loyalty.points")] | {} == {
        "kind": "profile", "field": "loyalty.points", "change": "retyped", "from": "integer", "to": "string",
        "reasons": changes[("profile", "loyalty.points")]["reasons"]}
    assert all("1 profiles and 1 events" in f["reasons"][0] for f in details["fields"])
    assert "loyalty.points" in error["message"]
    # nothing changed
    assert api.get("/v1/schema").json()["is_default"] is True


def test_adding_fields_is_allowed_with_stored_data(api, engine):
    store_profiles(engine, api.sandbox, [SARAH])
    body = _body(api.get("/v1/schema").json())
    body["profile"]["shoe_size"] = "number"
    body["event"]["store.id"] = "string"
    body["event_types"].append("storeVisit")
    body["enums"] = {}  # enums document values; changing them is always compatible
    response = api.put("/v1/schema", json=body)
    assert response.status_code == 200, response.text
    assert api.post("/v1/expressions/check", json={"expression": "shoe_size > 40"}).status_code == 200


def test_removing_a_labelled_field_is_refused(api):
    api.post("/v1/datasets", json={"name": "CRM", "kind": "profile", "field_labels": {"email": ["I1"]}})
    body = _body(api.get("/v1/schema").json())
    del body["profile"]["email"]
    error = assert_error(api.put("/v1/schema", json=body), 409, "schema_incompatible")
    [field] = error["details"]["fields"]
    assert field["field"] == "email" and field["reasons"] == ["dataset 'CRM' labels this field"]


def test_a_change_that_breaks_a_stored_segment_is_refused(api, engine):
    from tests.api.test_sandboxes import _insert_segment

    _insert_segment(engine, api.sandbox, "rich", "lifetime_value > 1000")
    body = _body(api.get("/v1/schema").json())
    del body["profile"]["lifetime_value"]
    error = assert_error(api.put("/v1/schema", json=body), 409, "schema_incompatible")
    [segment] = error["details"]["segments"]
    assert segment["key"] == "rich" and segment["errors"][0]["code"] == "unknown_field"


def test_invalid_schemas_are_422_with_every_problem(api):
    body = {"profile": {"a": "text", "b..c": "string", "1x": "string", "d": "list<integer>"},
            "event": {"timestamp": "string"}, "event_types": ["x", "x"], "enums": {"nope": ["a"]}}
    error = assert_error(api.put("/v1/schema", json=body), 422, "invalid_schema")
    problems = " | ".join(error["details"]["errors"])
    for fragment in ("'b..c'", "'1x'", "listed twice", "'nope'"):
        assert fragment in problems, problems
    body = {"profile": {"a": "text"}}
    assert "unknown type 'text'" in assert_error(api.put("/v1/schema", json=body), 422, "invalid_schema")["message"]
    body = {"profile": {"a": "string", "a.b": "string"}}
    assert_error(api.put("/v1/schema", json=body), 422, "invalid_schema")
    body = {"profile": {}, "event": {"timestamp": "string"}}
    assert "built in" in assert_error(api.put("/v1/schema", json=body), 422, "invalid_schema")["message"]
    assert_error(api.put("/v1/schema", json={"profile": {"a": 1}}), 422, "validation_error")
    assert_error(api.put("/v1/schema", json={"profile": {}, "extra": 1}), 422, "validation_error")
    assert api.get("/v1/schema").json()["is_default"] is True
