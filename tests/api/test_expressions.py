"""POST /v1/expressions/check, GET /v1/expressions/functions and POST /v1/profiles/evaluate, with good and bad input."""

from __future__ import annotations

from pathlib import Path

from cdp.dsl import check, render, to_json
from tests.api.conftest import SARAH, assert_error

GIFT = (Path(__file__).resolve().parents[2] / "examples" / "gift_giving_cart_abandoners.pql").read_text()


def test_check_returns_canonical_text_and_json_form(api):
    expression = 'loyalty.tier IN ["silver", "gold"]   AND loyalty.points > 500'
    response = api.post("/v1/expressions/check", role="reader", json={"expression": expression})
    assert response.status_code == 200, response.text
    typed = check(expression)
    assert response.json() == {"ok": True, "canonical": render(typed), "json": to_json(typed),
                               "warnings": []}


def test_check_the_gift_giving_segment(api):
    assert api.post("/v1/expressions/check", role="marketer", json={"expression": GIFT}).json()["ok"] is True


def test_check_reports_every_error_with_positions(api):
    error = assert_error(api.post("/v1/expressions/check", json={"expression": 'loyality.tier = "gold" and lowr(email) = "x"'}),
                         422, "invalid_expression")
    errors = error["details"]["errors"]
    assert [e["code"] for e in errors] == ["unknown_field", "unknown_function"]
    assert set(errors[0]) == {"code", "message", "line", "column", "end_line", "end_column", "hint"}
    assert (errors[0]["line"], errors[0]["column"], errors[0]["end_column"]) == (1, 1, 14)
    assert "loyalty.tier" in errors[0]["hint"]
    assert "and 1 more" in error["message"]
    syntax = assert_error(api.post("/v1/expressions/check", json={"expression": "loyalty.points >"}), 422,
                          "invalid_expression")
    assert syntax["details"]["errors"][0]["code"] == "syntax_error"


def test_the_functions_for_completion_are_the_registry(api):
    from cdp.functions.registry import all_functions

    response = api.get("/v1/expressions/functions", role="reader")
    assert response.status_code == 200, response.text
    listed = response.json()
    assert [f["name"] for f in listed] == [f.name for f in all_functions()]
    upper = next(f for f in listed if f["name"] == "upper")
    assert upper["signature"].startswith("upper(") and upper["doc"] and "upper(" in upper["example"]
    for function in listed:  # every example is an expression the service accepts
        checked = api.post("/v1/expressions/check", json={"expression": function["example"]})
        assert checked.status_code == 200, (function, checked.text)
    assert_error(api.get("/v1/expressions/functions", headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key")


def test_check_with_a_segment_catalogue(api):
    segments = {"gold": 'loyalty.tier = "gold"', "a": 'in segment "b"', "b": 'in segment "a"'}
    ok = api.post("/v1/expressions/check", json={"expression": 'in segment "gold"', "segments": {"gold": segments["gold"]}})
    assert ok.status_code == 200
    error = assert_error(api.post("/v1/expressions/check", json={"expression": 'in segment "gold" or in segment "nope"',
                                                                  "segments": segments}), 422, "invalid_expression")
    codes = {e["code"] for e in error["details"]["errors"]}
    assert codes == {"unknown_segment", "segment_cycle"}


def test_check_input_validation(api):
    assert_error(api.post("/v1/expressions/check", json={}), 422, "validation_error")
    assert_error(api.post("/v1/expressions/check", json={"expression": ""}), 422, "validation_error")
    assert_error(api.post("/v1/expressions/check", json={"expression": 42}), 422, "validation_error")
    assert_error(api.post("/v1/expressions/check", json={"expression": "x", "segments": ["a"]}), 422, "validation_error")
    assert_error(api.post("/v1/expressions/check", json={"expression": "x", "segment": {}}), 422, "validation_error")


def test_evaluate_qualifies_with_explanation(api):
    body = {"expression": 'loyalty.tier = "bronze" and exists event where type = "addToCart" within last 7 days',
            "profile": SARAH, "as_of": "2026-11-28T12:00:00Z"}
    response = api.post("/v1/profiles/evaluate", role="reader", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["qualifies"] is True and result["as_of"] == "2026-11-28T12:00:00Z"
    assert result["explain"][0] == {"depth": 0, "expression": result["explain"][0]["expression"], "value": "TRUE"}
    assert all(set(row) == {"depth", "expression", "value"} for row in result["explain"])
    # a week later the cart is too old; a naive as_of is UTC, an offset is normalised
    later = api.post("/v1/profiles/evaluate", json={**body, "as_of": "2026-12-10T12:00:00"}).json()
    assert later["qualifies"] is False and later["as_of"] == "2026-12-10T12:00:00Z"
    offset = api.post("/v1/profiles/evaluate", json={**body, "as_of": "2026-11-28T13:00:00+01:00"}).json()
    assert offset["as_of"] == "2026-11-28T12:00:00Z" and offset["qualifies"] is True


def test_evaluate_the_gift_giving_segment_on_sarah(api):
    import json

    profiles = Path(__file__).resolve().parents[2] / "examples" / "luma_profiles.jsonl"
    documents = [json.loads(line) for line in profiles.read_text().splitlines() if line.strip()]
    from cdp.engine import compile_predicate, load_profile
    from tests.conftest import AS_OF

    predicate = compile_predicate(GIFT)
    for document in documents[:5]:
        result = api.post("/v1/profiles/evaluate", json={"expression": GIFT, "profile": document,
                                                         "as_of": AS_OF.isoformat()}).json()
        assert result["qualifies"] == predicate(load_profile(document), AS_OF), document["id"]


def test_evaluate_with_segments_and_default_as_of(api):
    body = {"expression": 'in segment "bronze"', "profile": SARAH, "segments": {"bronze": 'loyalty.tier = "bronze"'}}
    result = api.post("/v1/profiles/evaluate", json=body).json()
    assert result["qualifies"] is True and result["as_of"]


def test_evaluate_bad_input(api):
    expression = "loyalty.points > 100"
    error = assert_error(api.post("/v1/profiles/evaluate", json={"expression": expression, "profile": {"attributes": {}}}),
                         422, "invalid_profile")
    assert "id" in error["message"]
    bad_points = {"id": "p", "attributes": {"loyalty": {"points": "many"}}}
    error = assert_error(api.post("/v1/profiles/evaluate", json={"expression": expression, "profile": bad_points}),
                         422, "invalid_profile")
    assert "loyalty.points" in error["message"]
    no_type = {"id": "p", "events": [{"id": "e", "timestamp": "2026-11-27T18:04:00Z"}]}
    assert_error(api.post("/v1/profiles/evaluate", json={"expression": expression, "profile": no_type}), 422,
                 "invalid_profile")
    bad_ts = {"id": "p", "events": [{"id": "e", "type": "login", "timestamp": "yesterday"}]}
    assert_error(api.post("/v1/profiles/evaluate", json={"expression": expression, "profile": bad_ts}), 422,
                 "invalid_profile")
    error = assert_error(api.post("/v1/profiles/evaluate", json={"expression": "loyalty.pts > 1", "profile": SARAH}),
                         422, "invalid_expression")
    assert error["details"]["errors"][0]["code"] == "unknown_field"
    assert_error(api.post("/v1/profiles/evaluate", json={"expression": expression, "profile": [SARAH]}), 422,
                 "validation_error")
    assert_error(api.post("/v1/profiles/evaluate", json={"expression": expression, "profile": SARAH,
                                                         "as_of": "tomorrow"}), 422, "validation_error")
    assert_error(api.post("/v1/profiles/evaluate", json={"expression": expression}), 422, "validation_error")
