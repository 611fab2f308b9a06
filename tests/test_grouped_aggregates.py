"""An event aggregate compared to a constant, grouped per profile on DuckDB and Spark
(cdp.engine.sql.grouped): which form each position gets, and, as a property, that DuckDB's
answers equal memory's wherever the comparison sits (deciding positions, under `not`, in `or`),
over generated profiles with empty, null-only and overflowing aggregates. The conformance suite
(tests/conformance, the `agg_grouped_*` cases) runs the corners on every backend, Spark included."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import ast, check, render
from cdp.engine import compile_predicate, load_profile
from cdp.engine.sql.analytic import DuckDBDialect, DuckDBSession, document_tables, members_query, rendered
from cdp.engine.sql.grouped import grouped_shape
from tests.strategies import value_filters
from tests.test_differential import profiles

AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
_DAY_BEFORE = "2026-11-27T12:00:00+00:00"
# the corners every example meets: no events at all, matching events whose values are all
# null (sum 0, avg/min/max null), and an integer sum outside 64 bits (null, DSL.md §9)
CORNERS = [
    {"id": "p90", "attributes": {}, "events": []},
    {"id": "p91", "attributes": {}, "events": [
        {"id": f"n{t}", "type": t, "timestamp": _DAY_BEFORE, "product": {"quantity": None, "price": None, "sku": None},
         "order": {"total": None}} for t in ("pageView", "productView", "addToCart", "purchase")]},
    {"id": "p92", "attributes": {}, "events": [
        {"id": f"o{t}{k}", "type": t, "timestamp": _DAY_BEFORE, "product": {"quantity": 2**63 - 1}}
        for t in ("pageView", "productView", "addToCart", "purchase") for k in range(2)]},
]
SANDBOXES = (f"g{i}" for i in itertools.count())


def sql_of(text: str, engine: str = "duckdb") -> str:
    query = members_query(text, engine=engine, as_of=AS_OF, sandbox="s")
    if engine == "duckdb":
        return rendered(query, DuckDBDialect())[0]
    from cdp.engine.sql.spark import SparkDialect

    return str(query.compile(dialect=SparkDialect()))


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
@pytest.mark.parametrize(("text", "form"), [
    ('sum(event.order.total where type = "purchase" within this year) > 1000', "in"),
    ('count(event where type = "purchase") < 3', "not exists"),  # TRUE over no events: 0 < 3
    ('avg(event.order.total) <= 5 or min(event.product.sku) = "A"', "in"),
    ('loyalty.tier = "gold" and max(event.timestamp) < now() - 2 days', "in"),
    ('not (sum(event.order.total) > 10)', "scalar"),  # UNKNOWN must stay UNKNOWN under not
    ('sum(event.order.total) + 1 > 10', "scalar"),
    ('sum(event.order.total where order.total > profile.lifetime_value) > 10', "scalar"),  # reads the profile
    ('sum(event.order.total since profile.loyalty.joined) > 10', "scalar"),  # its window too
    ('sum(event.order.total) > lifetime_value', "scalar"),
    ('sum(event.order.total) > count(event)', "scalar"),
    ('first(event.order.total) > 10', "scalar"),
])
def test_the_form_each_position_gets(engine, text, form):
    sql = sql_of(text, engine).upper()
    grouped = "GROUP BY" in sql
    assert grouped == (form != "scalar"), sql
    if form == "in":
        assert "P.PK IN (SELECT" in sql and "NOT (EXISTS" not in sql, sql
    if form == "not exists":
        assert "NOT (EXISTS (SELECT 1" in sql and "COALESCE(" in sql, sql


def test_the_empty_aggregate_decides_the_form():
    def shape(text):
        found = grouped_shape(check(text))
        return None if found is None else found[1]
    assert shape("count(event) > 0") is False
    assert shape("count(event) >= 0") is True
    assert shape("0 >= count(event)") is True  # flipped: count <= 0
    assert shape("sum(event.order.total) != 1") is True
    assert shape("sum(event.order.total) > -0.5") is True
    assert shape("avg(event.order.total) < 5") is False  # null over no events: UNKNOWN
    assert shape("min(event.order.total) is null") is None


_FUNCTIONS = [("count", None), ("count_distinct", ("product", "sku")), ("sum", ("product", "quantity")),
              ("sum", ("order", "total")), ("avg", ("product", "price")), ("min", ("product", "quantity")),
              ("max", ("order", "total"))]


@st.composite
def aggregate_comparisons(draw):
    function, path = draw(st.sampled_from(_FUNCTIONS))
    aggregate = ast.Aggregate(function, path, draw(value_filters()))
    literal = ast.NumberLiteral(draw(st.one_of(st.integers(-2, 3), st.sampled_from([0.5, -0.25, 100.75]))))
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
    comparison = ast.Comparison(*((aggregate, op, literal) if draw(st.booleans()) else (literal, op, aggregate)))
    other = draw(st.sampled_from([ast.Name(("loyalty", "tier")), ast.IsNull(ast.Name(("email",)), negated=False)]))
    if isinstance(other, ast.Name):
        other = ast.Comparison(other, "=", ast.StringLiteral("gold"))
    shape = draw(st.sampled_from(["alone", "not", "and", "or", "not or"]))
    if shape == "alone":
        return comparison
    if shape == "not":
        return ast.Not(comparison)
    chain = ast.BoolChain("and" if shape == "and" else "or", (comparison, other))
    return ast.Not(chain) if shape == "not or" else chain


@pytest.fixture(scope="module")
def duckdb_session():
    session = DuckDBSession()
    yield session
    session.close()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=aggregate_comparisons(), documents=profiles)
def test_duckdb_agrees_with_memory(duckdb_session, tree, documents):
    text = render(tree)
    typed = check(text)
    loaded = [load_profile(d, allowed_values=False) for d in documents + CORNERS]
    predicate = compile_predicate(typed)
    expected = [p.id for p in loaded if predicate(p, AS_OF)]
    sandbox = next(SANDBOXES)
    duckdb_session.from_tables(*document_tables(loaded, sandbox=sandbox))
    got = [i for _pk, i in duckdb_session.members(typed, as_of=AS_OF, sandbox=sandbox)]
    assert got == expected, f"duckdb disagrees with memory on: {text}"
