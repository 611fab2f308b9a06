"""Properties: renderer and parser agree, JSON and text agree, arbitrary text fails cleanly."""

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import PqlError, check, from_json, parse, render, to_json
from tests.strategies import segments

CATALOGUE = {"vip": "loyalty.tier = \"gold\"", "churn-risk": "not email_opt_in"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments)
def test_render_then_parse_gives_the_same_tree(tree):
    text = render(tree)
    assert parse(text) == tree, text
    check(text, segments=CATALOGUE)  # the generator makes well-typed trees


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments)
def test_json_form_round_trips(tree):
    data = json.loads(json.dumps(to_json(tree)))
    assert from_json(data) == tree
    assert render(from_json(data)) == render(tree)


TOKENS = st.sampled_from([
    "a", "loyalty.points", "email", "(", ")", "[", "]", ",", "=", "==", "!=", "<", ">=", "+", "-", "*", "/",
    "%", "and", "or", "not", "in", "between", "is", "null", "true", "exists", "event", "where", "within",
    "last", "7", "days", "then", "no", "as", "count", "sum", "event.order.total", '"x"', "'y'", "`q`",
    "since", "now()", "#", "\n", "segment", "has", "any", "like", "matches", "\\", '"\\q"', "1.5",
])


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(TOKENS, max_size=25).map(" ".join)))
def test_arbitrary_text_raises_only_the_language_error(text):
    try:
        tree = check(text)
    except PqlError as error:
        for diagnostic in error.errors:
            assert diagnostic.code and diagnostic.span.line >= 1
            diagnostic.snippet()
    else:
        assert parse(render(tree)) == tree


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.sampled_from(["kind", "value", "operands", "op", "left", "right", "path"]), inner, max_size=4)),
                    max_leaves=12))
def test_arbitrary_json_raises_only_the_language_error(data):
    try:
        from_json(data)
    except PqlError:
        pass


def test_json_form_obeys_the_rules_of_the_text_form():
    nested = {"kind": "exists", "steps": [], "filter": {"kind": "filter", "alias": None, "window": None,
              "condition": {"kind": "no_event", "filter": {"kind": "filter", "alias": None, "condition": None,
                                                           "window": None}}}}
    deep = {"kind": "boolean", "value": True}
    for _ in range(70):
        deep = {"kind": "not", "operand": deep}
    for data in (nested, deep, {"kind": "name", "path": ["a`b"]}, {"kind": "number", "value": 2**70}):
        try:
            from_json(data)
        except PqlError as error:
            assert error.errors[0].code in ("syntax_error", "too_complex", "invalid_literal")
        else:
            raise AssertionError(f"accepted {data}")
