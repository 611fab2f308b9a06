"""Skipping a streaming segment by its polarity (cdp/segments/polarity.py): when the analysis says a
segment is monotone, adding events to a profile never turns a TRUE answer into a not-TRUE one; when
it says antitone, never a not-TRUE one into TRUE — at every sampled instant (before, at and after
the events, around each window's edge). For generated expressions (the differential tests'
generator, and one biased to the shapes the analysis decides: event terms, counts, min/max, the
timestamps of first/last, days_since, between, is null, references) over catalogues whose
referenced segments read events; plus hand-written signs, and profiles showing that the shapes
called unknown do move both ways."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, event as note, given, settings, strategies as st

from cdp.dsl import ast, check, render
from cdp.engine import compile_predicate, load_profile
from cdp.schema import luma_schema
from cdp.segments.polarity import ANTITONE, CONSTANT, MONOTONE, UNKNOWN, Polarity, grows, shrinks
from tests.test_differential import AS_OF, CATALOGUE, attributes, event
from tests.test_streaming_relevance import _near_the_tree, with_events

SCHEMA = luma_schema()
TICK = timedelta(microseconds=1)

# the generator references "vip" and "churn-risk": catalogues where they read events, both ways
CATALOGUES = [
    CATALOGUE,
    {"vip": 'count(event where type = "purchase" within last 30 days) >= 2 or loyalty.tier = "gold"',
     "churn-risk": 'no event where type = "purchase" within last 60 days'},
    {"vip": 'exists event as c where type = "addToCart" then event where type = "purchase" within 1 day',
     "churn-risk": 'not email_opt_in and max(event.product.quantity) < 2'},
    {"vip": 'sum(event.product.quantity where type = "purchase") > 2',
     "churn-risk": 'days_since(last(event.timestamp where type = "purchase")) < 10'},
]

ORDER = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
TYPES = ["purchase", "addToCart"]

# ---- a generator biased to the shapes the analysis decides, over small values and nearby times
# (so that adding an event often moves an answer): filters by type and by a window, a window bounded
# by another event term, a reference inside a `where`; counts, sums, min/max, first/last, the
# timestamps of first/last, days_since/days_until, compared with small constants, the clock, an
# attribute or another term; sequences ending in `then no` or not; references; an attribute.
_type_is = st.builds(lambda t: ast.Comparison(ast.Name(("type",)), "=", ast.StringLiteral(t)), st.sampled_from(TYPES))
_small = st.builds(ast.NumberLiteral, st.integers(-1, 4))
_conditions = st.one_of(
    st.none(), st.none(), _type_is, _type_is, _type_is,
    st.builds(lambda t: ast.BoolChain("and", (t, ast.SegmentRef("vip"))), _type_is),
)
_bounded_by_a_term = st.builds(lambda fn, t: ast.Since(ast.Aggregate(fn, ("timestamp",), ast.EventFilter(None, t, None))),
                               st.sampled_from(["max", "min"]), _type_is)
_windows = st.one_of(st.none(), st.none(), st.none(), st.builds(ast.WithinLast, st.integers(1, 2), st.just("day")),
                     _bounded_by_a_term)
_filters = st.builds(ast.EventFilter, st.none(), _conditions, _windows)
_stamps = st.builds(lambda fn, f: ast.Aggregate(fn, ("timestamp",), f), st.sampled_from(["min", "max", "first", "last"]),
                    _filters)
_ints = st.one_of(
    st.builds(lambda f: ast.Aggregate("count", None, f), _filters),
    st.builds(lambda f: ast.Aggregate("count_distinct", ("product", "sku"), f), _filters),
    *[st.builds(lambda f, fn=fn: ast.Aggregate(fn, ("product", "quantity"), f), _filters)
      for fn in ("min", "max", "sum", "first", "last")],
    st.builds(lambda fn, x: ast.Call(fn, (x,)), st.sampled_from(["days_since", "days_until"]), _stamps),
)
_clock = st.one_of(
    st.builds(lambda n: ast.Arithmetic((ast.Call("now", ()), ast.DurationLiteral(n, "hour")), ("-",)), st.integers(0, 30)),
    st.builds(lambda m: ast.Call("datetime", (ast.StringLiteral((AS_OF + timedelta(minutes=m)).isoformat()
                                                                .replace("+00:00", "Z")),)), st.integers(-3000, 600)))
_number_sides = st.one_of(_small, _small, _small, st.just(ast.Name(("loyalty", "points"))), _ints)


def _compare(a, op, b, flip):
    return ast.Comparison(b, op, a) if flip else ast.Comparison(a, op, b)


def _sequence(first, steps):
    return ast.Exists(first, tuple(ast.SequenceStep(negated and k == len(steps) - 1, ast.EventFilter(None, t, gap))
                                   for k, (negated, t, gap) in enumerate(steps)))


_focused_predicates = st.one_of(
    st.builds(ast.Exists, _filters), st.builds(ast.NoEvent, _filters),
    st.builds(_sequence, st.builds(ast.EventFilter, st.just("s0"), _conditions, st.none()), st.lists(st.tuples(
        st.booleans(), _type_is, st.one_of(st.none(), st.builds(ast.WithinGap, st.integers(1, 3), st.just("hour")))),
        min_size=1, max_size=2)),
    st.builds(_compare, _ints, ORDER, _number_sides, st.booleans()),
    st.builds(_compare, _ints, ORDER, _number_sides, st.booleans()),
    st.builds(_compare, _stamps, ORDER, st.one_of(_clock, _clock, _stamps), st.booleans()),
    st.builds(ast.Between, _ints, _number_sides, _number_sides, st.booleans()),
    st.builds(ast.IsNull, st.one_of(_ints, _stamps), st.booleans()),
    st.builds(ast.SegmentRef, st.sampled_from(["vip", "churn-risk"])),
    st.just(ast.Name(("email_opt_in",))),
)
focused = st.recursive(_focused_predicates, lambda inner: st.one_of(
    st.builds(lambda xs: ast.BoolChain("and", tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(lambda xs: ast.BoolChain("or", tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(ast.Not, inner)), max_leaves=3)

# events near AS_OF with small quantities (negative ones too), two SKUs
small_event = st.fixed_dictionaries({
    "type": st.sampled_from(TYPES),
    "timestamp": st.integers(-3 * 24 * 60, 12 * 60).map(lambda m: (AS_OF + timedelta(minutes=m)).isoformat()),
}, optional={"product": st.fixed_dictionaries({"quantity": st.integers(-3, 5)},
                                              optional={"sku": st.sampled_from(["A1", "B2"])})})


def sign_of(text: str, catalogue: dict[str, str], added: frozenset[str] | None = None) -> str:
    """``added``: the sign for events of those types only (None: of any type)."""
    def tree_of(key: str):
        if key == "":
            return check(text, SCHEMA, segments=catalogue)
        return check(catalogue[key], SCHEMA, segments=catalogue) if key in catalogue else None
    return Polarity(tree_of, added).segment("")


def _instants(tree: ast.Node, stamps: set[datetime], now: datetime) -> list[datetime]:
    """``now``, a coarse grid over two years, and every event's instant moved by each window length
    and gap of the tree (either way), a microsecond either side."""
    lengths = {timedelta(0), timedelta(days=1)}
    for n in ast.walk(tree):
        if isinstance(n, (ast.WithinLast, ast.WithinGap)):
            unit = {"month": "day", "year": "day"}.get(n.unit, n.unit)
            amount = n.amount * {"month": 30, "year": 365}.get(n.unit, 1)
            lengths.add(timedelta(**{f"{unit}s": amount}))
    points = {now, now + TICK}
    points.update(now + timedelta(days=60) * i for i in range(-6, 7))
    for at in stamps:
        for length in lengths:
            for sign in ((1, -1) if length else (1,)):
                for tick in (-TICK, timedelta(0), TICK):
                    try:
                        points.add(at + sign * length + tick)
                    except OverflowError:
                        continue
    return sorted(points)


def _additions(events: list[dict], drawn: list[dict]) -> list[list[dict]]:
    """Single events of each type and a few quantities, at fixed instants and at each existing
    event's (ties decide first/last), and the drawn ones together. Adding one event at a time from
    every profile covers adding several."""
    stamps = {(AS_OF + timedelta(hours=h)).isoformat() for h in (-30, -1, 2)}
    stamps.update(e["timestamp"] for e in events[:3])
    single = [[{"type": kind, "timestamp": at, "product": {"quantity": quantity, "sku": "B2"}}]
              for kind in TYPES for quantity in (-2, 3) for at in sorted(stamps)]
    return [*single, drawn]


def _check(tree: ast.Node, catalogue: dict[str, str], attrs: dict, events: list[dict], drawn: list[dict],
           now: datetime) -> None:
    text = render(tree)
    try:
        sign = sign_of(text, catalogue)
    except Exception as error:  # noqa: BLE001 - every generated tree must check
        raise AssertionError(f"{text!r} does not check: {error}") from None
    note(sign)
    # the sign for each addition's own types (at least as decided as the sign for any type)
    by_types = {frozenset(e["type"] for e in added): None for added in _additions([], drawn)}
    for types in by_types:
        by_types[types] = sign_of(text, catalogue, types)
        assert sign == UNKNOWN or by_types[types] in (sign, CONSTANT), (text, types, sign, by_types[types])
    if sign == UNKNOWN and all(found == UNKNOWN for found in by_types.values()):
        return
    before = {"id": "p", "attributes": attrs, "events": [dict(e, id=f"e{j}") for j, e in enumerate(events)]}
    additions = _additions(before["events"], drawn)
    predicate = compile_predicate(check(text, SCHEMA, segments=catalogue), SCHEMA, segments=catalogue)
    stamps = {datetime.fromisoformat(e["timestamp"]) for added in [before["events"], *additions] for e in added}
    instants = _instants(tree, stamps, now)
    without = load_profile(before, SCHEMA, allowed_values=False)
    answers = [bool(predicate(without, at)) for at in instants]
    moved = False
    for added in additions:
        after = dict(before, events=[*before["events"], *(dict(e, id=f"n{j}") for j, e in enumerate(added))])
        with_them = load_profile(after, SCHEMA, allowed_values=False)
        typed = by_types[frozenset(e["type"] for e in added)]
        for at, was in zip(instants, answers):
            now_is = bool(predicate(with_them, at))
            for found, which in ((sign, "any type"), (typed, "its types")):
                if grows(found):
                    assert not (was and not now_is), \
                        f"{text}: monotone ({which}), but TRUE → not TRUE at {at} adding {added}"
                if shrinks(found):
                    assert not (now_is and not was), \
                        f"{text}: antitone ({which}), but not TRUE → TRUE at {at} adding {added}"
            moved = moved or was != now_is
    if moved:
        note(f"{sign}: the answer moved (its way) at some instant")


small_attributes = st.fixed_dictionaries({}, optional={
    "loyalty": st.fixed_dictionaries({}, optional={"points": st.integers(-1, 4), "tier": st.just("gold")}),
    "email_opt_in": st.booleans(),
    "created_at": st.integers(-3 * 24 * 60, 600).map(lambda m: (AS_OF + timedelta(minutes=m)).isoformat())})


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=st.one_of(_focused_predicates, st.builds(ast.Not, _focused_predicates)),
       catalogue=st.sampled_from(CATALOGUES), attrs=small_attributes, events=st.lists(small_event, max_size=3),
       drawn=st.lists(small_event, min_size=1, max_size=2), minutes=st.integers(-2 * 24 * 60, 24 * 60))
def test_more_events_never_move_a_term_against_its_polarity(tree, catalogue, attrs, events, drawn, minutes):
    """One term (or its negation) of each shape the analysis decides, over small values."""
    _check(tree, catalogue, attrs, events, drawn, AS_OF + timedelta(minutes=minutes))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=st.one_of(focused, focused, with_events), catalogue=st.sampled_from(CATALOGUES),
       attrs=attributes, events=st.lists(st.one_of(small_event, small_event, event), max_size=3), data=st.data(),
       minutes=st.integers(-2 * 24 * 60, 24 * 60))
def test_more_events_never_move_an_answer_against_its_polarity(tree, catalogue, attrs, events, data, minutes):
    """and / or / not of such terms, and the differential tests' generated expressions."""
    now = AS_OF + timedelta(minutes=minutes)
    # and events whose values are often the tree's literals, at a window's edge
    drawn = data.draw(st.lists(st.one_of(small_event, event, _near_the_tree(tree, now)), min_size=1, max_size=2),
                      label="drawn")
    _check(tree, catalogue, attrs, events, drawn, now)


BUYERS = {"buyers": 'exists event where type = "purchase"', "lapsed": 'no event where type = "purchase"'}


@pytest.mark.parametrize("text, expected", [
    ('loyalty.tier = "gold"', CONSTANT),
    ('exists event where type = "purchase"', MONOTONE),
    ('exists event where type = "purchase" and product.price > profile.lifetime_value within last 7 days', MONOTONE),
    ('count(event where type = "purchase" within last 30 days) >= 2', MONOTONE),
    ('count(event where type = "purchase") > loyalty.points', MONOTONE),
    ('count(event where type = "purchase") < 3', ANTITONE),
    ('count(event where type = "purchase") between 1 and 3', UNKNOWN),
    ('count(event where type = "purchase") = 2', UNKNOWN),
    ('count_distinct(event.product.sku) >= 2', MONOTONE),
    ('no event where type = "purchase" within last 2 days', ANTITONE),
    ('not exists event where type = "purchase"', ANTITONE),
    ('not (count(event) > 2)', ANTITONE),
    ('loyalty.tier = "gold" and exists event where type = "purchase"', MONOTONE),
    ('loyalty.tier = "gold" or no event where type = "purchase"', ANTITONE),
    ('(exists event where type = "purchase") and no event where type = "addToCart"', UNKNOWN),
    ('exists event as c where type = "addToCart" then event where type = "purchase" within 1 hour', MONOTONE),
    ('exists event as c where type = "addToCart" then no event where type = "purchase" within 1 day', UNKNOWN),
    ('sum(event.order.total where type = "purchase") > 100', UNKNOWN),
    ('avg(event.order.total) > 100', UNKNOWN),
    ('last(event.product.category where type = "purchase") = "mens"', UNKNOWN),
    ('last(event.order.total) > 10', UNKNOWN),
    ('first(event.order.total) < 10', UNKNOWN),
    ('exists event where type = "purchase" since max(event.timestamp where type = "addToCart")', UNKNOWN),
    ('exists event where type = "purchase" and in segment "buyers"', UNKNOWN),
    ('max(event.order.total) > 50', MONOTONE),
    ('max(event.order.total) < 50', UNKNOWN),  # null (not TRUE) before the first order, then TRUE
    ('min(event.order.total) < 10', MONOTONE),
    ('last(event.timestamp where type = "purchase") > now() - 3 days', MONOTONE),
    ('first(event.timestamp) > date("2026-01-01")', UNKNOWN),  # null, then TRUE, then an older one
    ('first(event.timestamp) < date("2026-01-01")', MONOTONE),
    ('days_since(last(event.timestamp where type = "purchase")) < 30', MONOTONE),
    ('days_since(last(event.timestamp where type = "purchase")) > 30', UNKNOWN),
    ('last(event.timestamp where type = "purchase") is null', ANTITONE),
    ('last(event.timestamp where type = "purchase") is not null', MONOTONE),
    ('count(event) is null', CONSTANT),
    ('in segment "buyers"', MONOTONE),
    ('not in segment "buyers" and loyalty.points > 10', ANTITONE),
    ('in segment "buyers" or in segment "lapsed"', UNKNOWN),
    ('not in segment "lapsed"', MONOTONE),
])
def test_signs(text, expected):
    assert sign_of(text, BUYERS) == expected


CART_THEN_NO_PURCHASE = 'exists event as c where type = "addToCart" then no event where type = "purchase" within 1 day'


@pytest.mark.parametrize("text, added, expected", [
    # the bench's gift-giving cart abandoners: unknown for any event, decided by the new event's type
    (CART_THEN_NO_PURCHASE, {"addToCart"}, MONOTONE),
    (CART_THEN_NO_PURCHASE, {"purchase"}, ANTITONE),
    (CART_THEN_NO_PURCHASE, {"pageView"}, CONSTANT),
    (CART_THEN_NO_PURCHASE, {"addToCart", "purchase"}, UNKNOWN),
    ('exists event as c where type = "addToCart" then no event within 1 day', {"purchase"}, ANTITONE),
    ('exists event as c then no event where type = "purchase" within 1 day', {"purchase"}, UNKNOWN),
    ('sum(event.order.total where type = "purchase") > 100', {"addToCart"}, CONSTANT),
    ('sum(event.order.total where type = "purchase") > 100', {"purchase"}, UNKNOWN),
    ('sum(event.order.total) > 100', {"addToCart"}, UNKNOWN),
    ('last(event.product.category where type in ["purchase", "addToCart"]) = "mens"', {"pageView"}, CONSTANT),
    ('last(event.product.category where type in ["purchase", "addToCart"]) = "mens"', {"addToCart"}, UNKNOWN),
    ('count(event where type = "purchase") = 2 and exists event where type = "addToCart"', {"addToCart"}, MONOTONE),
    ('count(event where type = "purchase") = 2 and exists event where type = "addToCart"', {"purchase"}, UNKNOWN),
    ('exists event where type = "purchase" since max(event.timestamp where type = "addToCart")', {"pageView"}, UNKNOWN),
    ('exists event where type != "purchase"', {"purchase"}, MONOTONE),
    ('in segment "gift" and loyalty.points > 3', {"addToCart"}, MONOTONE),
    ('not in segment "gift"', {"purchase"}, MONOTONE),
    ('in segment "gift" or in segment "buyers"', {"purchase"}, UNKNOWN),
    ('in segment "gift" or in segment "buyers"', {"addToCart"}, MONOTONE),
])
def test_signs_for_the_added_types(text, added, expected):
    assert sign_of(text, {**BUYERS, "gift": CART_THEN_NO_PURCHASE}, frozenset(added)) == expected


def _answer(text: str, events: list[dict], at: datetime = AS_OF) -> bool:
    document = {"id": "p", "attributes": {"loyalty": {"points": 5}},
                "events": [dict(e, id=f"e{j}") for j, e in enumerate(events)]}
    return bool(compile_predicate(text, SCHEMA)(load_profile(document, SCHEMA, allowed_values=False), at))


def _purchase(hours_ago: float, total: float = 10.0, kind: str = "purchase") -> dict:
    return {"type": kind, "timestamp": (AS_OF - timedelta(hours=hours_ago)).isoformat(), "order": {"total": total}}


@pytest.mark.parametrize("text, first, second", [
    # a sum falls with a negative value, and rises: neither way
    ('sum(event.order.total where type = "purchase") > 100', [_purchase(5, 150)], [_purchase(5, 150), _purchase(4, -100)]),
    ('sum(event.order.total where type = "purchase") > 100', [_purchase(5, 50)], [_purchase(5, 50), _purchase(4, 60)]),
    # max < 50: null, not TRUE, before the first order; then TRUE; then not again
    ('max(event.order.total) < 50', [], [_purchase(5, 10)]),
    ('max(event.order.total) < 50', [_purchase(5, 10)], [_purchase(5, 10), _purchase(4, 60)]),
    # a cart abandoned, then bought; a cart abandoned
    ('exists event as c where type = "addToCart" then no event where type = "purchase" within 1 day',
     [_purchase(5, kind="addToCart")], [_purchase(5, kind="addToCart"), _purchase(4)]),
    ('exists event as c where type = "addToCart" then no event where type = "purchase" within 1 day',
     [], [_purchase(5, kind="addToCart")]),
    # a first purchase after a date, then an older one
    ('first(event.timestamp) > date("2026-01-01")', [], [_purchase(5)]),
    ('first(event.timestamp) > date("2026-01-01")', [_purchase(5)], [_purchase(5), _purchase(24 * 400)]),
    # a window bounded by another event term: a later cart moves the bound past the purchase
    ('exists event where type = "purchase" since max(event.timestamp where type = "addToCart")',
     [_purchase(6, kind="addToCart"), _purchase(5)], [_purchase(6, kind="addToCart"), _purchase(5), _purchase(4, kind="addToCart")]),
])
def test_unknown_shapes_do_move_both_ways(text, first, second):
    assert sign_of(text, {}) == UNKNOWN
    assert _answer(text, first) != _answer(text, second)


@pytest.mark.parametrize("first, second", [
    # a cart abandoned, then bought: a new purchase takes a member out (never a non-member in)
    ([_purchase(40, kind="addToCart")], [_purchase(40, kind="addToCart"), _purchase(30)]),
    # an older cart abandoned: a new cart brings a non-member in (never a member out)
    ([], [_purchase(40, kind="addToCart")]),
])
def test_the_added_types_decide_the_way_the_answer_moves(first, second):
    """The typed signs on answers that do move: each moves the way its type's sign says."""
    was, now_is = _answer(CART_THEN_NO_PURCHASE, first), _answer(CART_THEN_NO_PURCHASE, second)
    assert was != now_is
    added = frozenset(e["type"] for e in second[len(first):])
    sign = sign_of(CART_THEN_NO_PURCHASE, {}, added)
    assert sign == (MONOTONE if now_is else ANTITONE)
