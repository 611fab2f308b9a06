"""Property: a mapping compiled once for a batch (cdp.ingestion.mapping.compile_rows) gives, for
any row, what the interpreted row_record and record_size_bound give — the record, the problems
(column and reason, in order) and the size bound — for generated mappings over the Luma schema's
typed targets (text, integer, number, boolean, list, date) with every transform, and generated
rows: text with spaces, capitals, NUL and empty cells, numbers, nested JSON Lines values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.identity.namespaces import BUILTIN_NAMESPACES
from cdp.ingestion.mapping import compile_rows, parse_mapping, record_size_bound, row_record
from cdp.schema import luma_schema

SCHEMA = luma_schema()
TARGETS = ["identity.crm_id", "identity.email", "person.first_name", "person.last_name", "loyalty.points",
           "lifetime_value", "email_opt_in", "interests", "person.birth_date", "created_at"]
TRANSFORMS = st.lists(st.sampled_from(["trim", "lower", "trim", "lower", "split", {"split": ";"},
                                      {"parse_date": "%Y-%m-%d"}]), max_size=2)
COLUMNS = ["a", "b", "c", "d.e", "f"]
cells = st.one_of(st.none(), st.sampled_from(["", " ", "x", " Ab ", "12", " 7 ", "1.5", "1e3", "yes", "N", "2026-01-02",
                                              "a;b, c", "x\x00y"]),
                  st.text(max_size=6), st.integers(-5, 5), st.floats(allow_nan=False), st.booleans(),
                  st.lists(st.sampled_from(["a", "b"]), max_size=2))
mappings = st.dictionaries(st.sampled_from(COLUMNS), st.tuples(st.sampled_from(TARGETS), TRANSFORMS), min_size=1,
                           max_size=5)


@settings(max_examples=400, deadline=None)
@given(mapping=mappings, data=st.data())
def test_compiled_mapping_equals_the_interpreted_one(mapping, data):
    spec = {column: {"to": target, "transforms": transforms} for column, (target, transforms) in mapping.items()}
    try:
        rules = parse_mapping(spec, "profile", SCHEMA, namespaces=tuple(BUILTIN_NAMESPACES))
    except Exception:  # an invalid mapping (refused at upload) has no rows to map
        return
    # a cell for most mapped columns (JSON Lines: "d.e" is a path into a nested object)
    values = data.draw(st.dictionaries(st.sampled_from(COLUMNS), cells))
    values.update(data.draw(st.fixed_dictionaries({}, optional={c: cells for c in mapping if c != "d.e"})))
    if "d.e" in mapping and data.draw(st.booleans()):
        values["d"] = {"e": data.draw(cells)}
    fields = dict(SCHEMA.profile)
    record, problems = row_record(values, rules, "profile", fields)
    assert compile_rows(rules, "profile", fields)(values) == (record, problems, record_size_bound(values, rules))


def test_compiled_mapping_of_crm_contacts():
    """The bench's CRM mapping (trim and lower, an integer), a row with every kind of cell."""
    spec = {"crm_id": "identity.crm_id", "email": {"to": "identity.email", "transforms": ["trim", "lower"]},
            "first_name": "person.first_name", "tier": {"to": "loyalty.tier", "transforms": ["trim", "lower"]},
            "points": "loyalty.points"}
    rules = parse_mapping(spec, "profile", SCHEMA, namespaces=tuple(BUILTIN_NAMESPACES))
    compiled = compile_rows(rules, "profile", dict(SCHEMA.profile))
    row = {"crm_id": "CRM-1", "email": " Ann@Example.COM ", "first_name": "Ann", "tier": " Gold", "points": " 12 "}
    record = {"identities": [{"namespace": "crm_id", "id": "CRM-1"}, {"namespace": "email", "id": "ann@example.com"}],
              "attributes": {"person": {"first_name": "Ann"}, "loyalty": {"tier": "gold", "points": 12}}}
    assert compiled(row) == (record, [], record_size_bound(row, rules))
    row = {"crm_id": "CRM-2", "email": "", "first_name": "x\x00", "tier": "", "points": "many"}
    assert compiled(row) == (
        None, [("first_name", "the value contains a NUL character (U+0000), which cannot be stored"),
               ("points", "expected an integer, got 'many'")], record_size_bound(row, rules))
