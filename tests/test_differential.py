"""Differential property test: generated well-typed expressions over generated profiles give
the same ids in memory, on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import check, render
from cdp.engine import compile_predicate, load_profile, sql
from cdp.storage.database import create_engine
from cdp.storage.loader import load_documents
from cdp.storage.migrate import upgrade
from tests.strategies import segments

AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
CATALOGUE = {"vip": 'loyalty.tier = "gold"', "churn-risk": "not email_opt_in"}
# PostgreSQL text cannot hold NUL; everything else is fair game.
TEXT = st.text(alphabet=st.sampled_from(list("aAbB zZ_%.-@éÉßİıΣσς😀\n\\\"'1")), max_size=6)
NUMBERS = st.one_of(st.integers(-1000, 1000), st.sampled_from([0.0, 0.5, -2.25, 1.125, 100.75, 3.3, 1e-3]))
SANDBOXES = (f"h{i}" for i in itertools.count())


def optional(strategy):
    return st.one_of(st.none(), strategy)


attributes = st.fixed_dictionaries({}, optional={
    "loyalty": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "tier": optional(st.sampled_from(["bronze", "silver", "gold", "Gold", ""])),
        "points": optional(st.integers(-10, 2000)),
        "joined": optional(st.dates(date(2020, 1, 1), date(2027, 1, 1)).map(date.isoformat)),
    })),
    "lifetime_value": optional(NUMBERS),
    "email": optional(TEXT),
    "home_address": st.fixed_dictionaries({}, optional={"country": optional(st.sampled_from(["US", "us", "DE", ""]))}),
    "preferred_category": optional(st.sampled_from(["mens", "womens", "gear"])),
    "interests": optional(st.lists(optional(st.sampled_from(["running", "yoga", "a", "é"])), max_size=3)),
    "email_opt_in": optional(st.booleans()),
    "person": st.fixed_dictionaries({}, optional={"birth_date": optional(st.dates(date(1950, 1, 1), date(2026, 12, 31)).map(date.isoformat))}),
})

event = st.fixed_dictionaries({
    "type": st.sampled_from(["pageView", "productView", "addToCart", "purchase"]),
    "timestamp": st.integers(-400 * 24 * 60, 2 * 24 * 60).map(lambda m: (AS_OF + timedelta(minutes=m)).isoformat()),
}, optional={
    "channel": optional(st.sampled_from(["web", "mobile"])),
    "product": st.fixed_dictionaries({}, optional={
        "category": optional(st.sampled_from(["mens", "womens", "gear"])),
        "size": optional(st.sampled_from(["S", "M", "L"])),
        "sku": optional(TEXT),
        "price": optional(NUMBERS),
        "quantity": optional(st.integers(0, 5)),
    }),
    "order": st.fixed_dictionaries({}, optional={"total": optional(NUMBERS)}),
})

profiles = st.lists(st.tuples(attributes, st.lists(event, max_size=5)), max_size=6).map(
    lambda items: [{"id": f"p{i}", "attributes": a, "events": [dict(e, id=f"e{i}-{j}") for j, e in enumerate(evs)]}
                   for i, (a, evs) in enumerate(items)])


@pytest.fixture(scope="module")
def engines(sqlite_url_factory, postgres_url_factory):
    made = [create_engine(sqlite_url_factory()), create_engine(postgres_url_factory())]
    for engine in made:
        upgrade(engine)
    yield made
    for engine in made:
        engine.dispose()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tree=segments, documents=profiles)
def test_all_backends_agree(engines, tree, documents):
    text = render(tree)
    typed = check(text, segments=CATALOGUE)
    predicate = compile_predicate(typed, segments=CATALOGUE)
    # values outside the allowed ones ("Gold", "us", ""): stored data may predate the schema's lists
    loaded = [load_profile(d, allowed_values=False) for d in documents]
    expected = [p.id for p in loaded if predicate(p, AS_OF)]
    sandbox = next(SANDBOXES)
    for engine in engines:
        with engine.begin() as connection:
            load_documents(connection, [load_profile(d, allowed_values=False) for d in documents], sandbox=sandbox)
        with engine.connect() as connection:
            got = sql.evaluate(connection, typed, as_of=AS_OF, sandbox=sandbox, segments=CATALOGUE)
        assert got == expected, f"{engine.dialect.name} disagrees with memory on: {text}"
