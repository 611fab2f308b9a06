"""Property: the function compiled for a CSV header and a mapping (cdp.ingestion.compiled_rows)
answers, for any row it answers, exactly the spooled row of the general way — the row's values by
header (``dict(zip(header, cells))``), the mapping (compile_rows), the compiled validator — and for a
row the general way rejects it answers nothing (the general way then words the errors). Generated
mappings over the Luma schema's typed targets (text, text with allowed values, integer, number,
boolean, list, date, datetime) with every transform, headers with missing and repeated columns,
and rows of text cells: spaces, capitals, NUL, empty cells, numbers, placeholders, bad emails."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.identity.namespaces import BUILTIN_NAMESPACES
from cdp.ingestion.compiled_rows import compile_csv_rows
from cdp.ingestion.compiled_validation import compiled_validator
from cdp.ingestion.mapping import compile_rows, parse_mapping
from cdp.ingestion.staging import Spool
from cdp.schema import luma_schema

SCHEMA = luma_schema()
NAMESPACES = tuple(BUILTIN_NAMESPACES)
FIELDS = dict(SCHEMA.profile)
TARGETS = ["identity.crm_id", "identity.email", "identity.phone", "person.first_name", "person.last_name",
           "loyalty.points", "loyalty.tier", "home_address.city", "lifetime_value", "email_opt_in", "interests",
           "person.birth_date", "created_at", "preferred_size"]
TRANSFORMS = st.lists(st.sampled_from(["trim", "lower", "trim", "lower", "trim", "split", {"split": ";"},
                                      {"parse_date": "%Y-%m-%d"}]), max_size=2)
COLUMNS = ["a", "b", "c", "d.e", "f", "g"]
CELLS = st.one_of(st.sampled_from(["", " ", "x", " Ab ", "12", " 7 ", "-3", "99999999999999999999", "1.5", "1e3",
                                   "yes", "N", "2026-01-02", "2026-01-02T03:04:05Z", "a;b, c", "x\x00y", "Gold",
                                   " silver ", "M", "ann@example.com", " Ann@Example.COM ", "not-an-email",
                                   "n/a", "+44 20 7946 0958"]),
                  st.text(max_size=6))


def general(header: list[str], cells: list[str], rules, number: int):
    """The spooled row of the general way, or None (the row is rejected)."""
    if len(cells) != len(header):
        return None
    record, problems, bound = compile_rows(rules, "profile", FIELDS)(dict(zip(header, cells)))
    if problems:
        return None
    valid, errors = compiled_validator(SCHEMA, "profile", NAMESPACES)(record, bound)
    if valid is None:
        return None
    spool = Spool()
    try:
        spool.add(number, valid)
        return spool.pending[0]
    finally:
        spool.close()


@settings(max_examples=500, deadline=None)
@given(mapping=st.dictionaries(st.sampled_from(COLUMNS), st.tuples(st.sampled_from(TARGETS), TRANSFORMS), min_size=1,
                               max_size=6),
       header=st.lists(st.sampled_from(COLUMNS + ["z"]), min_size=1, max_size=8), data=st.data())
def test_compiled_rows_equal_the_general_way(mapping, header, data):
    spec = {column: {"to": target, "transforms": transforms} for column, (target, transforms) in mapping.items()}
    if not any(target.startswith("identity.") for target, _ in mapping.values()):
        spec["id"] = "identity.crm_id"  # most rows then have an identity
        header = [*header, "id"] if data.draw(st.booleans()) else ["id", *header]
    try:
        rules = parse_mapping(spec, "profile", SCHEMA, namespaces=NAMESPACES)
    except Exception:  # an invalid mapping (refused at upload) has no rows to map
        return
    staged = compile_csv_rows(header, rules, "profile", SCHEMA, NAMESPACES)
    if staged is None:
        return
    for number in range(2, 6):
        width = len(header) + data.draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
        cells = data.draw(st.lists(st.one_of(CELLS, CELLS, st.sampled_from(["", "", "Ann", "CRM-7"])),
                                   min_size=width, max_size=width))
        if "id" in header and len(cells) == len(header) and data.draw(st.booleans()):
            cells[len(header) - 1 - header[::-1].index("id")] = f"CRM-{number}"
        try:
            answer = staged(number, cells)
        except Exception:  # noqa: BLE001 - the batch job sends such a row the general way
            answer = None
        expected = general(header, cells, rules, number)
        if answer is not None:
            assert answer == expected
            # the same types (True is not 1) and the attributes in the same order
            assert [type(v) for v in answer[2].values()] == [type(v) for v in expected[2].values()]
            assert list(answer[2]) == list(expected[2])


def test_the_crm_mapping_is_compiled_and_answers_clean_rows():
    """The bench's CRM mapping compiles; a clean row is answered as the general way spools it, a row
    with a bad cell is not answered (the general way words its error)."""
    spec = {"crm_id": "identity.crm_id", "email": {"to": "identity.email", "transforms": ["trim", "lower"]},
            "first_name": "person.first_name", "last_name": "person.last_name",
            "loyalty_tier": {"to": "loyalty.tier", "transforms": ["trim", "lower"]},
            "loyalty_points": "loyalty.points", "city": "home_address.city"}
    header = list(spec)
    rules = parse_mapping(spec, "profile", SCHEMA, namespaces=NAMESPACES)
    staged = compile_csv_rows(header, rules, "profile", SCHEMA, NAMESPACES)
    assert staged is not None
    row = ["CRM-1", " Ann@Example.COM ", "Ann", "Berg", " Gold", " 12 ", "Paris"]
    assert staged(2, row) == general(header, row, rules, 2) == (
        2, [("crm_id", "CRM-1"), ("email", "ann@example.com")],
        {"person.first_name": "Ann", "person.last_name": "Berg", "loyalty.tier": "gold", "loyalty.points": 12,
         "home_address.city": "Paris"}, [], None, None, None, {}, None, True)
    for bad in (["CRM-2", "ann", "Ann", "", "", "", ""], ["CRM-3", "", "Ann", "", "wood", "", ""],
                ["CRM-4", "", "A\x00", "", "", "", ""], ["", "", "Ann", "", "", "", ""]):
        try:
            answer = staged(3, bad)
        except Exception:  # noqa: BLE001
            answer = None
        assert answer is None and general(header, bad, rules, 3) is None


def test_not_compiled_where_the_order_of_the_attributes_would_differ():
    """person.first_name, loyalty.points, person.last_name: the nested record's walk gives the person's
    fields together — a row with a first name would not list its attributes in the rules' order."""
    spec = {"id": "identity.crm_id", "f": "person.first_name", "p": "loyalty.points", "l": "person.last_name"}
    rules = parse_mapping(spec, "profile", SCHEMA, namespaces=NAMESPACES)
    assert compile_csv_rows(list(spec), rules, "profile", SCHEMA, NAMESPACES) is None
    assert compile_csv_rows(list(spec), rules, "event", SCHEMA, NAMESPACES) is None
