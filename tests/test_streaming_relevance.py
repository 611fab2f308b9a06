"""Skipping a streaming segment by a new event's values (cdp/segments/relevance.py): whenever no
filter of a segment (nor of the segments it references) can admit the event, the in-memory answer
with the event equals the answer without it — at the instant of ingest and at every later one
(so the stored membership and next instant stay right). For generated expressions, profiles and
events, sampled densely from the ingest instant on; and examples of each shape, both ways."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache

import pytest
from hypothesis import HealthCheck, event as note, given, settings, strategies as st

from cdp.dsl import check, render, runtime
from cdp.engine import compile_predicate, load_profile
from cdp.schema import luma_schema
from cdp.segments.relevance import Relevance
from cdp.dsl import ast
from tests.strategies import event_terms, segments
from tests.test_differential import AS_OF, CATALOGUE, attributes, event

SCHEMA = luma_schema()
TICK = timedelta(microseconds=1)
SHIFTS = [timedelta(0), timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=31),
          timedelta(days=366)]


def _tree_of(root_text: str):
    def tree_of(key: str):
        if key == "":
            return check(root_text, SCHEMA, segments=CATALOGUE)
        return check(CATALOGUE[key], SCHEMA) if key in CATALOGUE else None
    return tree_of


def may_change(text: str, new_event: dict, now: datetime) -> bool:
    """The skip's answer for one event: can a filter of ``text`` admit it at ``now`` or later?"""
    relevance = Relevance(SCHEMA)
    guards = relevance.segment_guards("", _tree_of(text))
    if guards is None:
        return True
    loaded = load_profile({"id": "x", "events": [new_event]}, SCHEMA, allowed_values=False).events[0]
    return any(relevance.admits(guard, loaded, now) for guard in guards)


def _instants(document: dict, new_event: dict, now: datetime) -> list[datetime]:
    """From ``now`` on: a grid over two years, and around every event's instant and the new
    one's shifted by common window lengths (either way)."""
    points = {now, now + TICK}
    points.update(now + timedelta(hours=7) * i for i in range(0, 2600, 13))
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in [*document["events"], new_event]]
    for at in stamps:
        for shift in SHIFTS:
            for sign in (1, -1):
                for tick in (-TICK, timedelta(0), TICK):
                    try:
                        points.add(at + sign * shift + tick)
                    except OverflowError:
                        continue
    return sorted(p for p in points if p >= now)


# expressions holding event terms (most generated segments hold none: nothing to skip by)
with_events = st.one_of(segments, st.deferred(lambda: event_terms()), st.builds(
    lambda a, b, op: ast.BoolChain(op, (a, b)), st.deferred(lambda: event_terms()), segments, st.sampled_from(["and", "or"])))


EDGES = [timedelta(0), TICK, -TICK, timedelta(minutes=1), -timedelta(minutes=1), timedelta(hours=1),
         -timedelta(hours=1)]


def _near_the_tree(tree: ast.Node, now: datetime):
    """A new event whose values are the tree's own literals (so its filters sometimes hold) and
    whose instant is often at a window's edge at ``now`` (where a wrong bound would show)."""
    strings = sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.StringLiteral)}) or ["mens"]
    numbers = sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.NumberLiteral)}) or [1]
    edges = [now]
    for n in ast.walk(tree):
        if isinstance(n, ast.WithinLast):
            edges.append(runtime.window_start(now, n.amount, n.unit))
        elif isinstance(n, ast.WithinPeriod):
            edges.append(runtime.period_start(now, "day" if n.period == "today" else n.period))
    text_value = st.one_of(st.sampled_from(strings), st.sampled_from(["mens", "womens", "gear", "S", "web"]))
    number = st.one_of(st.sampled_from(numbers), st.sampled_from(numbers).map(lambda x: x + 1),
                       st.sampled_from(numbers).map(lambda x: x - 1), st.integers(-5, 500))

    def stamp(edge: datetime, shift: timedelta) -> str:
        try:
            return (edge + shift).isoformat()
        except OverflowError:
            return now.isoformat()

    return st.fixed_dictionaries({
        "type": st.one_of(st.sampled_from(["pageView", "productView", "addToCart", "purchase"]), text_value),
        "timestamp": st.one_of(*[st.builds(stamp, st.sampled_from(edges), st.sampled_from(EDGES))] * 3,
                               st.integers(-400 * 24 * 60, 2 * 24 * 60).map(lambda m: stamp(now, timedelta(minutes=m)))),
    }, optional={
        "channel": text_value,
        "product": st.fixed_dictionaries({}, optional={
            "category": text_value, "size": text_value, "sku": text_value,
            "price": number.map(float), "quantity": number.map(lambda x: max(-2**63, min(2**63 - 1, int(x)))),
        }),
        "order": st.fixed_dictionaries({}, optional={"total": number.map(float)}),
    })


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=with_events, attrs=attributes, events=st.lists(event, max_size=4), data=st.data(),
       minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60))
def test_a_skipped_event_changes_no_answer_from_now_on(tree, attrs, events, data, minutes):
    text = render(tree)
    now = AS_OF + timedelta(minutes=minutes)
    new = dict(data.draw(st.one_of(event, *[_near_the_tree(tree, now)] * 3), label="new event"), id="new")
    before = {"id": "p", "attributes": attrs, "events": [dict(e, id=f"e{j}") for j, e in enumerate(events)]}
    after = dict(before, events=[*before["events"], new])
    if may_change(text, new, now):
        note("evaluated")
        return
    note("skipped by a filter" if "event" in text else "skipped: no event term")
    predicate = compile_predicate(check(text, SCHEMA, segments=CATALOGUE), SCHEMA, segments=CATALOGUE)
    without = load_profile(before, SCHEMA, allowed_values=False)
    with_it = load_profile(after, SCHEMA, allowed_values=False)
    for at in _instants(before, new, now):
        assert predicate(without, at) == predicate(with_it, at), (
            f"{text}: skipped {new} at {now}, but the answer at {at} differs")


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def _event(kind: str, ago: timedelta = timedelta(hours=1), **fields) -> dict:
    return {"id": "n", "type": kind, "timestamp": (NOW - ago).isoformat(), **fields}


MENS = {"product": {"category": "mens", "sku": "A1", "price": 5.0}}
WOMENS = {"product": {"category": "womens", "sku": "B2", "price": 50.0}}


@pytest.mark.parametrize("text, new, skipped", [
    # a filter on the event's values: only a matching event counts
    ('exists event where type = "purchase" and product.category = "mens" within last 7 days',
     _event("purchase", **WOMENS), True),
    ('exists event where type = "purchase" and product.category = "mens" within last 7 days',
     _event("purchase", **MENS), False),
    # older than the window at ingest: never inside it later
    ('exists event where type = "purchase" and product.category = "mens" within last 7 days',
     _event("purchase", timedelta(days=8), **MENS), True),
    # at the window's edge: (now − 7 days, now] holds the event a microsecond after its bound, not at it
    ('exists event where type = "purchase" within last 7 days', _event("purchase", timedelta(days=7)), True),
    ('exists event where type = "purchase" within last 7 days', _event("purchase", timedelta(days=7) - TICK), False),
    ('exists event where type = "purchase" within last 1 month', _event("purchase", timedelta(days=30)), True),
    ('exists event where type = "purchase" within last 1 month', _event("purchase", timedelta(days=29)), False),
    ('count(event where type = "purchase" within today) >= 1', _event("purchase", timedelta(days=1)), True),
    ('count(event where type = "purchase" within today) >= 1', _event("purchase", timedelta(hours=12)), False),
    ('count(event where type = "purchase" within today) >= 1', _event("purchase", timedelta(hours=12) + TICK), True),
    # stored ahead of the clock: it enters the window later
    ('exists event where type = "purchase" within last 1 day', _event("purchase", -timedelta(days=3)), False),
    # UNKNOWN does not admit (a missing field)
    ('exists event where type = "purchase" and product.category != "mens"', _event("purchase"), True),
    ('exists event where type = "purchase" and product.category is null', _event("purchase", **MENS), True),
    ('exists event where type = "purchase" and product.category is null', _event("purchase"), False),
    # unfiltered reads admit every event
    ('count(event) > 2', _event("pageView", timedelta(days=900)), False),
    ('last(event.product.category) = "mens"', _event("pageView", **WOMENS), False),
    # a condition on the profile or an alias decides nothing; the rest of an `and` still does
    ('exists event where product.price > profile.lifetime_value', _event("pageView", **WOMENS), False),
    ('exists event where type = "addToCart" and product.category != profile.preferred_category',
     _event("purchase", **WOMENS), True),
    ('exists event as c where type = "addToCart" then no event where type = "purchase" and '
     'product.sku = c.product.sku within 1 day', _event("purchase", **WOMENS), False),
    ('exists event as c where type = "addToCart" then no event where type = "purchase" and '
     'product.sku = c.product.sku within 1 day', _event("pageView", **WOMENS), True),
    # `or`: skipped only when no branch can hold
    ('exists event where type = "purchase" or product.category = "mens"', _event("pageView", **WOMENS), True),
    ('exists event where type = "purchase" or product.price > profile.lifetime_value', _event("pageView"), False),
    # constant bounds decide; bounds from the clock or the profile do not
    ('exists event where type = "purchase" since date("2026-12-01")', _event("purchase", timedelta(days=30)), True),
    ('exists event where type = "purchase" before date("2026-12-01")', _event("purchase"), True),
    ('exists event where type = "purchase" from date("2026-01-01") to date("2026-02-01")', _event("purchase"), True),
    ('exists event where type = "purchase" since now() - 2 hours', _event("purchase", timedelta(days=30)), False),
    ('exists event where type = "purchase" since loyalty.joined', _event("purchase", timedelta(days=30)), False),
    # a referenced segment's filters count too
    ('in segment "mens-buyers" or loyalty.tier = "gold"', _event("purchase", **MENS), False),
    ('in segment "mens-buyers" or loyalty.tier = "gold"', _event("purchase", **WOMENS), True),
    # event-independent segments (not selected by an event's type in the first place) skip
    ('loyalty.tier = "gold"', _event("purchase", **MENS), True),
])
def test_examples(text, new, skipped):
    catalogue = {"mens-buyers": 'exists event where type = "purchase" and product.category = "mens"'}
    relevance = Relevance(SCHEMA)

    def tree_of(key: str):
        return check(text, SCHEMA, segments=catalogue) if key == "" else check(catalogue[key], SCHEMA)

    guards = relevance.segment_guards("", tree_of)
    loaded = load_profile({"id": "x", "events": [new]}, SCHEMA, allowed_values=False).events[0]
    assert (not any(relevance.admits(g, loaded, NOW) for g in guards)) == skipped, text


# ---- the per-selection Screen gives relevant()'s answer -------------------------------------------------

SCREENED = {
    **{f"w{k}": f'exists event where type = "purchase" and product.category = "{c}" within last {k} {u}'
       for k, (c, u) in enumerate([("mens", "days"), ("womens", "hours"), ("gear", "months"), ("mens", "years"),
                                   ("womens", "weeks"), ("mens", "minutes")])},
    **{f"p{k}": f'count(event where channel = "{c}" within {p}) >= 1'
       for k, (c, p) in enumerate([("web", "today"), ("mobile", "this week"), ("web", "this month"),
                                   ("mobile", "this year")])},
    "any": "count(event) > 1",
    "seq": 'exists event as c where type = "addToCart" within last 2 days then no event where type = "purchase" '
           'and product.sku = c.product.sku within 1 day',
    "never": 'exists event where type = "purchase" since null',
    "ref": 'in segment "w0" or in segment "p1"',
    "attr": 'loyalty.tier = "gold"',
    "fixed": 'exists event where product.price > 10 from date("2026-11-01") to date("2026-12-01")',
}


@cache
def _screened():
    relevance = Relevance(SCHEMA)
    trees = {key: check(text, SCHEMA, segments=SCREENED) for key, text in SCREENED.items()}
    keys = sorted(SCREENED)
    return relevance, keys, [relevance.segment_guards(key, trees.get) for key in keys]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(new=st.lists(event, min_size=1, max_size=3), minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60),
       chosen=st.sets(st.sampled_from(sorted(SCREENED)), min_size=1))
def test_the_screen_keeps_what_relevant_keeps(new, minutes, chosen):
    from cdp.segments.relevance import Screen, relevant

    now = AS_OF + timedelta(minutes=minutes)
    relevance, keys, guards = _screened()
    positions = [keys.index(key) for key in sorted(chosen)]
    loaded = load_profile({"id": "x", "events": [dict(e, id=f"n{j}") for j, e in enumerate(new)]}, SCHEMA,
                          allowed_values=False).events
    expected = relevant(positions, guards, relevance, loaded, now)
    assert Screen(relevance, positions, guards).keep(loaded, now) == expected


_SCREENS: dict = {}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(new=st.lists(event, min_size=1, max_size=3), minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60),
       chosen=st.sampled_from([tuple(sorted(SCREENED)), ("w0", "w1", "w5", "seq", "any"), ("p0", "w2", "w3")]))
def test_a_screen_asked_again_keeps_what_relevant_keeps(new, minutes, chosen):
    """A Screen serves every record of its selection (streaming keeps one per change): asked again
    with other events and instants, each answer is still relevant()'s."""
    from cdp.segments.relevance import Screen, relevant

    now = AS_OF + timedelta(minutes=minutes)
    relevance, keys, guards = _screened()
    positions = [keys.index(key) for key in chosen]
    screen = _SCREENS.get(chosen)
    if screen is None:
        screen = _SCREENS[chosen] = Screen(relevance, positions, guards)
    loaded = load_profile({"id": "x", "events": [dict(e, id=f"n{j}") for j, e in enumerate(new)]}, SCHEMA,
                          allowed_values=False).events
    assert screen.keep(loaded, now) == relevant(positions, guards, relevance, loaded, now)
