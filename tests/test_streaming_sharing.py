"""What streaming evaluation shares between the segments of one profile's evaluation gives exactly
what each segment computed alone gives:

- event terms (``exists``, ``no event``, aggregates, sequences) shared through the evaluation's
  memo by every predicate of a catalogue (cdp/engine/memory/events.py ``_event_function``): for
  generated expressions evaluated one after the other on one profile and instant with ONE memo,
  every answer equals the expression's answer with a memo of its own;
- next-change candidates shared per (instants, shift / months / daily) through next_change's
  cache (cdp/segments/timing.py): for generated expressions, the instant computed with one cache
  shared by all of them equals the one computed alone (and the straightforward listing);
- the earliest next instant of several segments computed at once (``earliest_change``, the
  segments reading the same instants merged, the shifts searched from the instants' side), as
  streaming stores it: for generated expressions, it equals the least of their next_change;
- stored documents memoised by their text (cdp/profiles/documents.py ``_converted``): a hit is
  the conversion, and a caller's changes to what it got do not reach the memo.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import check, render
from cdp.engine import compile_predicate, load_profile
from cdp.schema import luma_schema
from cdp.segments.reads import reads_of_tree
from cdp.segments.timing import _instant, earliest_change, next_change, timing_parts
from tests.strategies import segments
from tests.test_differential import AS_OF, CATALOGUE, attributes, event
from tests.test_streaming_next_change import listed_next_change

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def _document(attrs, events) -> dict:
    return {"id": "p", "attributes": attrs, "events": [dict(e, id=f"e{j}") for j, e in enumerate(events)]}


@SETTINGS
@given(trees=st.lists(segments, min_size=2, max_size=6), attrs=attributes, events=st.lists(event, max_size=5),
       minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60), repeat=st.booleans())
def test_event_terms_shared_through_one_memo_give_each_answer(trees, attrs, events, minutes, repeat):
    texts = [render(tree) for tree in trees]
    if repeat:  # the same terms again, in other expressions: what a catalogue's segments do
        texts += [f"not ({texts[0]})", f"({texts[-1]}) or ({texts[0]})"]
    profile = load_profile(_document(attrs, events), allowed_values=False)
    as_of = AS_OF + timedelta(minutes=minutes)
    predicates = [compile_predicate(check(text, segments=CATALOGUE), segments=CATALOGUE) for text in texts]
    alone = [bool(predicate(profile, as_of, {})) for predicate in predicates]
    without_memo = [bool(predicate(profile, as_of)) for predicate in predicates]
    shared: dict = {}
    together = [bool(predicate(profile, as_of, shared)) for predicate in predicates]
    assert together == alone == without_memo, texts


def test_a_shared_term_is_computed_once_per_memo():
    texts = ['sum(event.order.total where type = "purchase" within last 365 days) > 100',
             'sum(event.order.total where type = "purchase" within last 365 days) > 900']
    predicates = [compile_predicate(text) for text in texts]
    profile = load_profile({"id": "p", "events": [
        {"id": "a", "type": "purchase", "timestamp": "2026-11-01T10:00:00Z", "order": {"total": 500}}]})
    memo: dict = {}
    assert [predicate(profile, AS_OF, memo) for predicate in predicates] == [True, False]
    assert [key for key in memo if isinstance(key, tuple)] == [
        ("event term", 'sum(event.order.total where type = "purchase" within last 365 days)')]
    memo[next(iter(memo))] = 1000  # what the memo holds is what the second predicate reads
    assert predicates[1](profile, AS_OF, memo) is True


@SETTINGS
@given(trees=st.lists(segments, min_size=2, max_size=6), attrs=attributes, events=st.lists(event, max_size=5),
       minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60))
def test_next_change_with_a_shared_cache_is_each_ones(trees, attrs, events, minutes):
    profile = load_profile(_document(attrs, events), allowed_values=False)
    as_of = AS_OF + timedelta(minutes=minutes)
    reads = [reads_of_tree(check(render(tree), segments=CATALOGUE), CATALOGUE) for tree in trees]
    cache: dict = {}
    shared = [next_change(r, profile, as_of, cache) for r in reads]
    assert shared == [next_change(r, profile, as_of) for r in reads]
    assert shared == [listed_next_change(r, profile, _instant(as_of)) for r in reads]


@SETTINGS
@given(trees=st.lists(segments, min_size=1, max_size=8), attrs=attributes, events=st.lists(event, max_size=6),
       minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60), ahead=st.booleans())
def test_the_earliest_of_several_computed_at_once_is_the_least_of_each_ones(trees, attrs, events, minutes, ahead):
    profile = load_profile(_document(attrs, events), allowed_values=False)
    as_of = AS_OF + timedelta(minutes=minutes)
    if ahead:  # as_of on an event's instant: a candidate equal to it counts as one tick later
        as_of = profile.events[0]["timestamp"] if profile.events else as_of
    reads = [reads_of_tree(check(render(tree), segments=CATALOGUE), CATALOGUE) for tree in trees]
    alone = [at for at in (next_change(r, profile, as_of) for r in reads) if at is not None]
    assert earliest_change([timing_parts(r) for r in reads], profile, as_of) == (min(alone) if alone else None)


def test_the_earliest_of_several_merges_segments_reading_the_same_events():
    from cdp.segments.reads import reads_of

    catalogue = {"a": 'exists event where type = "purchase" within last 3 hours',
                 "b": 'count(event where type = "purchase" within last 2 days) >= 2',
                 "c": 'exists event where type = "pageView" within last 1 hours',
                 "d": "days_since(person.birth_date) > 10000"}
    schema = luma_schema()
    profile = load_profile({"id": "p", "events": [
        {"id": "x", "type": "purchase", "timestamp": "2026-11-01T10:00:00Z"},
        {"id": "y", "type": "pageView", "timestamp": "2026-10-01T10:00:00Z"}]})
    as_of = _instant(AS_OF.replace(year=2026, month=11, day=1, hour=11))
    reads = [reads_of(key, catalogue, schema) for key in catalogue]
    assert timing_parts(reads[3]) is not None  # a clock function: daily candidates
    # the purchase + 3 h, not the pageView's (+ 1 h: before as_of) nor the purchase + 2 days
    assert earliest_change([timing_parts(r) for r in reads[:3]], profile, as_of) == _instant(
        AS_OF.replace(year=2026, month=11, day=1, hour=13))
    assert earliest_change([None, None], profile, as_of) is None


def test_converted_documents_are_memoised_by_text_and_copied_for_the_caller():
    import cdp.profiles.documents as documents

    schema = luma_schema()
    text = '{"order.total": 12.5, "product.category": "mens"}'
    first = documents._converted(text, schema.fingerprint, schema.event_type, "p")
    assert first == {"order.total": 12.5, "product.category": "mens"}
    event = {"id": "e", **documents._converted(text, schema.fingerprint, schema.event_type, "p")}
    event["order.total"] = 0  # a caller's dict is its own
    assert documents._converted(text, schema.fingerprint, schema.event_type, "p")["order.total"] == 12.5
