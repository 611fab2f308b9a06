"""The next instant at which a profile's answer can change with time alone
(cdp/segments/streaming.py :func:`next_change`): for generated expressions and profiles, the
in-memory answer is constant on [as_of, next_change), sampled densely (around every instant of
the profile shifted by the expression's window lengths, just before the computed instant, and on a
grid); "never" means constant over the next two years. And a time-stepped scenario per window
form."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import check, render
from cdp.engine import compile_predicate, load_profile
from cdp.segments.reads import Change, reads_of_tree
from cdp.segments.timing import next_change
from cdp.segments.timing import _add_months, _instant, _instants_of
from tests.strategies import segments
from tests.test_differential import AS_OF, CATALOGUE, attributes, event

TICK = timedelta(microseconds=1)
HORIZON = timedelta(days=800)


def _samples(reads, profile, start: datetime, end: datetime) -> list[datetime]:
    points = {start, end - TICK}
    span = end - start
    points.update(start + (span / 400) * i for i in range(400))
    instants = [e["timestamp"] for e in profile.events]
    shifts = [timedelta(0), *reads.durations, *(-d for d in reads.durations), timedelta(days=1)]
    for at in instants:
        for shift in shifts:
            for tick in (-TICK, timedelta(0), TICK):
                try:
                    points.add(at + shift + tick)
                except OverflowError:  # a window longer than the calendar: no edge to sample
                    continue
    return sorted(p for p in points if start <= p < end)


def listed_next_change(reads, profile, as_of):
    """next_change written the straightforward way: every candidate listed, the earliest after
    as_of kept (the binary search of next_change must give the same instant)."""
    if not reads.timed:
        return None
    points = set(reads.literal_instants)
    _instants_of(profile.attributes, points)
    for e in profile.events:
        if reads.any_event or e.get("type") in reads.event_types:
            _instants_of(e, points)
    candidates = set()
    for point in points:
        for shift in {timedelta(0)} | set(reads.durations) | {-d for d in reads.durations}:
            try:
                candidates.add(point + shift)
            except OverflowError:
                pass
        for months in reads.months:
            for sign in (1, -1):
                try:
                    candidates.add(_add_months(point, sign * months))
                except (ValueError, OverflowError):
                    pass
        if (reads.clock or reads.periods) and point <= as_of:
            try:
                candidates.add(point + ((as_of - point) // timedelta(days=1) + 1) * timedelta(days=1))
            except OverflowError:
                pass
    if reads.clock or reads.periods:
        candidates.add(datetime.combine(as_of.date() + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc))
    future = {c for c in candidates if c > as_of} | {c + TICK for c in candidates if c + TICK > as_of}
    return min(future) if future else None


def assert_constant_until_next_change(tree, document, as_of):
    text = render(tree)
    typed = check(text, segments=CATALOGUE)
    predicate = compile_predicate(typed, segments=CATALOGUE)
    profile = load_profile(document, allowed_values=False)
    reads = reads_of_tree(typed, CATALOGUE)
    due = next_change(reads, profile, as_of)
    assert due is None or due > as_of
    assert due == listed_next_change(reads, profile, _instant(as_of)), text
    answer = predicate(profile, as_of)
    end = due if due is not None else as_of + HORIZON
    for at in _samples(reads, profile, as_of, end):
        assert predicate(profile, at) == answer, (
            f"{text}: {answer} at {as_of}, {not answer} at {at}, before the computed next change {due}")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=segments, attrs=attributes, events=st.lists(event, max_size=4),
       minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60))
def test_answer_constant_until_next_change(tree, attrs, events, minutes):
    document = {"id": "p", "attributes": attrs, "events": [dict(e, id=f"e{j}") for j, e in enumerate(events)]}
    assert_constant_until_next_change(tree, document, AS_OF + timedelta(minutes=minutes))


T0 = datetime(2026, 12, 31, 22, 0, tzinfo=timezone.utc)  # near a month's and a year's end


def _profile(*events):
    return load_profile({"id": "p", "attributes": {"loyalty": {"tier": "gold"}}, "events": [
        {"id": f"e{i}", "type": t, "timestamp": at.isoformat()} for i, (t, at) in enumerate(events)]})


def _first_change(text: str, profile, start: datetime, step: timedelta, until: timedelta) -> datetime | None:
    predicate = compile_predicate(text)
    answer, at = predicate(profile, start), start
    while at < start + until:
        at += step
        if predicate(profile, at) != answer:
            return at
    return None


def _scenario(text: str, profile, start: datetime, step: timedelta, until: timedelta) -> tuple:
    reads = reads_of_tree(check(text), {})
    return next_change(reads, profile, start), _first_change(text, profile, start, step, until)


def test_scenarios_every_window_form():
    """Events at T0; the computed instant against the first change found by stepping the clock."""
    bought = _profile(("purchase", T0))
    cases = [
        ('exists event where type = "purchase" within last 3 hours', bought, T0 + timedelta(hours=1)),
        ('exists event where type = "purchase" within last 7 days', bought, T0 + timedelta(days=6)),
        ('exists event where type = "purchase" within today', bought, T0 + timedelta(minutes=30)),
        ('exists event where type = "purchase" within this week', bought, T0 + timedelta(hours=1)),
        ('exists event where type = "purchase" within this month', bought, T0 + timedelta(hours=1)),
        ('exists event where type = "purchase" within this year', bought, T0 + timedelta(hours=1)),
        ('exists event where type = "purchase" since now() - 2 hours', bought, T0 + timedelta(minutes=5)),
        ('exists event where type = "addToCart" within last 7 days then no event where type = "purchase" '
         'within 1 day', _profile(("addToCart", T0)), T0 + timedelta(hours=2)),
        ('count(event where type = "purchase" within last 1 day) >= 1', bought, T0 + timedelta(hours=20)),
    ]
    step = timedelta(minutes=1)
    for text, profile, start in cases:
        due, first = _scenario(text, profile, start, step, timedelta(days=400))
        assert first is not None, text
        assert due is not None and start < due <= first, (text, due, first)
        # the scheduler's chain (re-evaluate at the instant, schedule the next) reaches the change
        # in a few waves, within the clock step of where stepping found it
        reads, predicate = reads_of_tree(check(text), {}), compile_predicate(text)
        answer, at, waves = predicate(profile, start), due, 1
        while predicate(profile, at) == answer:
            at, waves = next_change(reads, profile, at), waves + 1
            assert at is not None and waves <= 8, (text, at, waves)
        assert first - step < at <= first, (text, at, first)
    # nothing in the expression depends on time: never
    later = T0 + timedelta(hours=1)
    assert next_change(reads_of_tree(check('loyalty.tier = "gold"'), {}), bought, later) is None
    assert next_change(reads_of_tree(check('exists event where type = "purchase"'), {}), bought, later) is None
    # an event stored ahead of the clock counts from its timestamp on
    assert next_change(reads_of_tree(check('exists event where type = "purchase"'), {}), bought,
                       T0 - timedelta(hours=1)) == T0


def test_changes_are_matched_against_what_the_tree_reads():
    reads = reads_of_tree(check('loyalty.tier = "gold" and exists event where type = "purchase"'), {})
    assert reads.touched_by(Change(event_types=frozenset({"purchase"})))
    assert not reads.touched_by(Change(event_types=frozenset({"pageView"})))
    assert reads.touched_by(Change(attributes=frozenset({("loyalty",)})))
    assert reads.touched_by(Change(attributes=frozenset({("loyalty", "tier")})))
    assert not reads.touched_by(Change(attributes=frozenset({("loyalty", "points")})))
    assert not reads.touched_by(Change(attributes=frozenset({("email",)})))
    assert reads.touched_by(Change(everything=True))
    through = reads_of_tree(check('in segment "vip"', segments=CATALOGUE), CATALOGUE)
    assert through.touched_by(Change(attributes=frozenset({("loyalty", "tier")})))
    any_type = reads_of_tree(check('count(event) > 2'), {})
    assert any_type.touched_by(Change(event_types=frozenset({"login"})))
