"""Which streaming segments a change re-evaluates (cdp/segments/streaming.py ``StreamingPlan``), and the
cheap no-change path.

The plan selects through indexes (event type → segments, an attribute's first name →
segments); the selection must be exactly the segments whose reads (taken from the checked tree,
through references) the change touches — no more (attribute-level and event-type-level), no
fewer. Checked against the definition, ``Reads.touched_by`` over every segment, for generated
changes over a mixed catalogue. And a re-evaluation that changes no membership and no instant
writes nothing: only reads reach the database."""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from hypothesis import given, settings, strategies as st

from cdp.schema import luma_schema
from cdp.segments.reads import Change
from cdp.segments.streaming import StreamingEvaluator
from cdp.segments.streaming_plan import StreamingPlan

Row = namedtuple("Row", "pk key expression status evaluation")
TYPES = ["purchase", "addToCart", "productView", "pageView", "login"]


def shapes(count: int) -> dict[str, str]:
    """Mixed shapes (as bench/bench_segments.py's): attributes, lists, event windows, counts,
    sums, last(), a sequence, and every 10th referencing three earlier ones."""
    made = {}
    for i in range(count):
        k, kind = divmod(i, 10)
        made[f"seg-{i:03d}"] = [
            f'loyalty.tier = "gold" and loyalty.points > {100 * k}',
            f'home_address.country = "US" and loyalty.points between {50 * k} and {50 * k + 2000}',
            f'exists event where type = "{TYPES[k % 5]}" within last {k + 1} days',
            f'count(event where type = "purchase" within last {30 + 30 * k} days) >= {1 + k % 3}',
            f'sum(event.order.total where type = "purchase" within last 365 days) > {100 * (k + 1)}',
            f'interests has any ["running", "yoga"] and email_opt_in and loyalty.points > {10 * k}',
            'exists event where type = "addToCart" within last 7 days then no event where type = "purchase" '
            'within 1 day',
            f'days_since(last(event.timestamp where type = "purchase")) > {30 * (k + 1)}',
            f'last(event.product.category where type = "purchase") != preferred_category or '
            f'month(person.birth_date) = {1 + k % 12}',
            f'(in segment "seg-{i - 9:03d}" or in segment "seg-{i - 7:03d}") and not in segment "seg-{i - 3:03d}"',
        ][kind]
    return made

SCHEMA = luma_schema()
CATALOGUE = {**shapes(60), "any-type": 'count(event within last 2 days) > 3',
             "cart-or-view": 'exists event where type in ["addToCart", "productView"] within last 1 day',
             "nested": 'loyalty.tier = "gold"', "whole-object": 'home_address.country = "US" or loyalty.points > 10'}
ROWS = [Row(pk, key, text, "active", "streaming") for pk, (key, text) in enumerate(CATALOGUE.items(), 1)]
PLAN = StreamingPlan(SCHEMA, ROWS, "prod")
PATHS = sorted({tuple(path.split(".")) for path in SCHEMA.profile} | {("loyalty",), ("home_address",), ("unknown",)})

changes = st.one_of(
    st.builds(lambda types: Change(event_types=frozenset(types)),
              st.sets(st.sampled_from([*SCHEMA.event_types, "custom"]), min_size=1, max_size=3)),
    st.builds(lambda paths: Change(attributes=frozenset(paths)),
              st.sets(st.sampled_from(PATHS), min_size=1, max_size=3)),
    st.just(Change(everything=True)))


@settings(max_examples=200, deadline=None)
@given(changes)
def test_the_selection_is_exactly_what_the_change_touches(change):
    expected = [i for i, row in enumerate(PLAN.order) if PLAN.reads[row.key].touched_by(change)]
    assert PLAN.chosen(change) == expected
    assert PLAN.chosen(change) == expected  # the second time from the plan's cache


def test_the_selection_is_tight():
    def keys(change: Change) -> set[str]:
        return {PLAN.order[i].key for i in PLAN.chosen(change)}

    assert set(PLAN.reads) == set(CATALOGUE)  # every definition checks: none left out
    purchase = keys(Change(event_types=frozenset({"purchase"})))
    assert "any-type" in purchase and "cart-or-view" not in purchase
    assert not {"nested", "whole-object", "seg-000", "seg-001", "seg-005"} & purchase  # attributes only
    assert "seg-009" in purchase  # references seg-006, which reads purchases
    assert keys(Change(event_types=frozenset({"productView"}))) >= {"any-type", "cart-or-view"}
    tier = keys(Change(attributes=frozenset({("loyalty", "tier")})))
    assert {"nested", "seg-000"} <= tier and not {"whole-object", "any-type", "cart-or-view"} & tier
    assert "whole-object" in keys(Change(attributes=frozenset({("loyalty",)})))  # the object replaced
    assert keys(Change(attributes=frozenset({("unknown",)}))) == set()


def test_a_re_evaluation_that_changes_nothing_writes_nothing(migrated_engine):
    """On the service's database: the second evaluation of an unchanged profile only reads."""
    from cdp.engine.sql.loading import load_documents
    from cdp.segments import service
    from cdp.segments.models import Evaluation, SegmentCreate, SegmentStatus
    from cdp.storage.database import write_transaction
    from cdp.storage.models import sandboxes

    engine = migrated_engine
    sandbox = f"selection-{engine.dialect.name}"
    now = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)
    with write_transaction(engine) as connection:
        connection.execute(sandboxes.insert().values(name=sandbox, created_at=now))
        load_documents(connection, [{"id": "p1", "attributes": {"loyalty": {"tier": "gold", "points": 500}},
                                     "events": [{"id": "e1", "type": "purchase",
                                                 "timestamp": (now - timedelta(hours=1)).isoformat(),
                                                 "order": {"id": "o1", "total": 20.0}}]}],
                       sandbox=sandbox, schema=SCHEMA)
        for key, text in {"gold": 'loyalty.tier = "gold"',
                          "recent": 'exists event where type = "purchase" within last 3 hours'}.items():
            service.create_segment(connection=connection, sandbox=sandbox, schema=SCHEMA, as_of=now, spec=SegmentCreate(
                key=key, name=key, expression=text, status=SegmentStatus.active, evaluation=Evaluation.streaming))
        profile_pk = connection.execute(sa.text("SELECT pk FROM profiles WHERE sandbox = :s"), {"s": sandbox}).scalar()
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.lstrip().split()[0].upper())

    for attempt in range(2):
        with write_transaction(engine) as connection:
            if attempt:
                sa.event.listen(connection, "before_cursor_execute", seen)
            changed = StreamingEvaluator(connection, sandbox=sandbox).profile_changed(
                profile_pk, Change(everything=True), now + timedelta(minutes=attempt))
            if attempt:
                sa.event.remove(connection, "before_cursor_execute", seen)
        assert changed == {}  # the save evaluated them already; the first one stores the instants
    assert statements and set(statements) <= {"SELECT", "WITH"}, statements


def test_the_plan_compiles_every_predicate_when_it_is_built():
    """No record pays a compilation: a plan holds every segment's compiled predicate once built
    (one that fails is kept as its error and raised when the segment is evaluated)."""
    rows = [*ROWS, Row(len(ROWS) + 1, "unknown-field", 'no_such_attribute = 1', "active", "streaming")]
    plan = StreamingPlan(SCHEMA, rows, "prod")
    assert plan.order and all(callable(predicate) for predicate in plan.predicates)
    compiled = plan.compiled._predicates
    assert all(row.key in compiled for row in plan.order)


def test_a_rebuilt_plan_reuses_the_predicates_whose_definitions_did_not_change():
    """A save rebuilds the plan: the predicates of segments whose definition and referenced
    definitions are unchanged are the previous plan's (not compiled again); the changed segment's,
    and those of segments referencing it, are compiled afresh and answer by the new definition."""
    from cdp.engine.profile import LoadedProfile

    changed = "seg-000"  # seg-009 references it (shapes: every 10th references three earlier ones)
    rows = [row._replace(expression='loyalty.tier = "silver"') if row.key == changed else row for row in ROWS]
    rebuilt = StreamingPlan(SCHEMA, rows, "prod", previous=PLAN)
    at = {key: i for i, key in enumerate(rebuilt.keys)}
    before = {key: PLAN.predicates[i] for i, key in enumerate(PLAN.keys)}
    fresh = {changed, "seg-009"}
    assert all(rebuilt.predicates[at[key]] is before[key] for key in rebuilt.keys if key not in fresh)
    assert all(rebuilt.predicates[at[key]] is not before[key] for key in fresh)
    silver = LoadedProfile("p", [], {"loyalty.tier": "silver"}, [])
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert rebuilt.predicates[at[changed]](silver, now, {}) and not PLAN.predicates[at[changed]](silver, now, {})
    other = StreamingPlan(luma_schema(), rows, "prod", previous=PLAN)  # the same schema again: reused alike
    assert other.predicates[other.keys.index("seg-001")] is before["seg-001"]
