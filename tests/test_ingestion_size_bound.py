"""The bound a mapped CSV row's record size is checked by (cdp/ingestion/mapping.py
``record_size_bound``) is never below the record's real size, whatever the cells hold: a record
it lets through unmeasured is within the limit, as measuring it would have found."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)

MAPPING = {
    "crm_id": "identity.crm_id",
    "email": {"to": "identity.email", "transforms": ["trim", "lower"]},
    "first_name": "person.first_name",
    "tier": {"to": "loyalty.tier", "transforms": ["trim", "lower"]},
    "points": "loyalty.points",
    "interests": {"to": "interests", "transforms": [{"split": ";"}]},
    "birthday": {"to": "person.birth_date", "transforms": [{"parse_date": "%d/%m/%Y"}]},
}

cells = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["1e308", "-0.1", "12", "01/02/1990", ";;a;"]),
                  st.text(alphabet=st.characters(max_codepoint=0x1f), max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({column: cells for column in MAPPING}))
def test_the_bound_is_never_below_the_size(values):
    from cdp.identity.namespaces import BUILTIN_NAMESPACES
    from cdp.ingestion.mapping import parse_mapping, record_size_bound, row_record
    from cdp.ingestion.validation import record_size
    from cdp.schema import luma_schema

    schema = luma_schema()
    rules = parse_mapping(MAPPING, "profile", schema, namespaces=tuple(BUILTIN_NAMESPACES))
    values = {k: v for k, v in values.items() if v is not None}
    record, problems = row_record(values, rules, "profile", dict(schema.profile))
    if record is None:
        return
    assert record_size_bound(values, rules) >= record_size(record)


def test_values_that_are_not_text_have_no_bound():
    from cdp.identity.namespaces import BUILTIN_NAMESPACES
    from cdp.ingestion.mapping import parse_mapping, record_size_bound
    from cdp.schema import luma_schema

    rules = parse_mapping({"a": "identity.crm_id", "b": "person.first_name"}, "profile", luma_schema(),
                          namespaces=tuple(BUILTIN_NAMESPACES))
    assert record_size_bound({"a": "x", "b": {"nested": ["x" * 100_000]}}, rules) is None
