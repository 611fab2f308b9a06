"""The policy language (cdp/governance/policy_language.py): parsing into a tree with spans,
errors with positions, canonical text and JSON form as round trips (Hypothesis), evaluation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.governance.labels import STANDARD_LABELS
from cdp.governance.policy_language import (AllOf, AnyOf, Label, PolicyError, because, from_json, holds, labels_of,
                                            parse, render, to_json, walk)

NAMES = [*STANDARD_LABELS, "PARTNER_ONLY", "x-1", "Andrew", "ORDERS", "a"]


def trees(max_leaves: int = 12):
    labels = st.sampled_from(NAMES).map(Label)

    def extend(children):
        operands = st.lists(children, min_size=2, max_size=4).map(tuple)
        return st.one_of(operands.map(AllOf), operands.map(AnyOf))

    return st.recursive(labels, extend, max_leaves=max_leaves)


def brute_force(data: dict, present: set[str]) -> bool:
    """An evaluator of the JSON form written apart from the library's."""
    (kind, inner), = data.items()
    if kind == "label":
        return inner in present
    results = [brute_force(item, present) for item in inner]
    return all(results) if kind == "and" else any(results)


@settings(max_examples=300, deadline=None)
@given(trees())
def test_parse_of_render_is_the_tree(tree):
    text = render(tree)
    assert parse(text) == tree
    assert render(parse(text)) == text


@settings(max_examples=300, deadline=None)
@given(trees())
def test_json_round_trip(tree):
    assert from_json(to_json(tree)) == tree


@settings(max_examples=300, deadline=None)
@given(trees(), st.sets(st.sampled_from(NAMES)))
def test_evaluation_and_its_explanation(tree, present):
    assert holds(tree, present) == brute_force(to_json(tree), present)
    why = because(tree, present)
    assert why <= present & labels_of(tree)
    if holds(tree, present):
        assert why and holds(tree, why)  # the labels given as the reason suffice on their own
    else:
        assert not why


@settings(max_examples=100, deadline=None)
@given(trees())
def test_spans_point_at_the_labels_in_the_text(tree):
    text = render(tree).replace(" AND ", "  and\n ").replace("(", "( ")
    parsed = parse(text)
    assert parsed == tree
    for node in walk(parsed):
        if isinstance(node, Label):
            assert text[node.span.start:node.span.end] == node.name
    assert text[parsed.span.start:parsed.span.end].strip(" ()") == text.strip(" ()")


def test_examples():
    tree = parse("C4 OR (I1 AND S1)")
    assert tree == AnyOf((Label("C4"), AllOf((Label("I1"), Label("S1")))))
    assert to_json(tree) == {"or": [{"label": "C4"}, {"and": [{"label": "I1"}, {"label": "S1"}]}]}
    assert render(parse("c4 or i1 and s1")) == "c4 OR (i1 AND s1)"  # keywords any case; labels as written
    assert render(parse("((C1))")) == "C1"
    assert render(parse("(C1 AND C2) AND C3")) == "(C1 AND C2) AND C3"  # written nested, kept nested
    assert render(parse("C1 AND C2 AND C3")) == "C1 AND C2 AND C3"
    assert render(parse("ANDROID or ORCA")) == "ANDROID OR ORCA"  # keywords only as whole words
    assert because(tree, {"C4", "I1", "S1", "C2"}) == {"C4", "I1", "S1"}
    assert because(tree, {"I1", "C2"}) == frozenset()


@pytest.mark.parametrize("text, code, column, end_column, message", [
    ("C4 OR", "syntax_error", 6, 6, "the condition ends too early; expected `(`, a label"),
    ("C4 OR (I1 AND S1", "syntax_error", 17, 17, "the condition ends too early; expected `)`"),
    ("C4 I1", "syntax_error", 4, 6, "unexpected `I1`; expected `)`, `AND`, `OR`, the end of the condition"),
    ("OR C4", "syntax_error", 1, 3, "unexpected `OR`; expected `(`, a label"),
    ("C4 | C5", "syntax_error", 4, 5, "unexpected character `|`"),
    ("'C4'", "syntax_error", 1, 2, "unexpected character `'`"),
    ("C4 AND ()", "syntax_error", 9, 10, "unexpected `)`; expected `(`, a label"),
    ("   ", "syntax_error", 1, 4, "the condition is empty"),
    ("C4 OR C99", "unknown_label", 7, 10, "unknown label `C99`"),
])
def test_errors_at_their_position(text, code, column, end_column, message):
    with pytest.raises(PolicyError) as caught:
        parse(text, known=STANDARD_LABELS)
    [error] = caught.value.errors
    assert (error.code, error.span.line, error.span.column, error.span.end_column, error.message) == (
        code, 1, column, end_column, message)


def test_every_unknown_label_is_reported_with_suggestions():
    with pytest.raises(PolicyError) as caught:
        parse("s1 OR (PARTNER AND C13)", known=[*STANDARD_LABELS, "PARTNER_ONLY"])
    first, second, third = caught.value.errors
    assert (first.span.column, first.hint) == (1, "did you mean `S1`?")
    assert (second.span.column, second.hint) == (8, "did you mean `PARTNER_ONLY`?")
    assert (third.span.column, third.hint) == (20, "did you mean `C1`, `C3`, `C12`?")
    assert str(third).endswith("s1 OR (PARTNER AND C13)\n                   ^^^\nhint: did you mean `C1`, `C3`, `C12`?")


def test_limits_are_errors():
    with pytest.raises(PolicyError) as caught:
        parse("(" * 33 + "C1" + ")" * 33)
    assert caught.value.errors[0].code == "too_complex" and caught.value.errors[0].span.column == 33
    assert parse("(" * 32 + "C1" + ")" * 32) == Label("C1")
    with pytest.raises(PolicyError) as caught:
        parse(" OR ".join(["C1"] * 3000))
    assert caught.value.errors[0].code == "too_complex"
    long_chain = parse(" OR ".join(["C1"] * 1000))  # a long chain is one node, not a deep tree
    assert isinstance(long_chain, AnyOf) and len(long_chain.operands) == 1000


@pytest.mark.parametrize("data", [
    {"label": ""}, {"label": "OR"}, {"label": "1x"}, {"and": [{"label": "C1"}]}, {"xor": []}, [], "C1",
    {"label": "C1", "and": []}, {"or": [{"label": "C1"}, "C2"]},
])
def test_malformed_json_is_refused(data):
    with pytest.raises(PolicyError) as caught:
        from_json(data)
    assert caught.value.errors[0].code == "syntax_error"


def test_json_with_unknown_labels_is_refused():
    with pytest.raises(PolicyError) as caught:
        from_json({"or": [{"label": "C1"}, {"label": "NOPE"}]}, known=STANDARD_LABELS)
    assert [e.code for e in caught.value.errors] == ["unknown_label"]
