"""Streaming's per-record work, session 16 (issue 15), each the same answer for less:

- an event term shared through the evaluation's memo (cdp/engine/memory/codegen.py ``_shared``)
  is looked up with ``dict.get`` — a catalogue's terms are mostly computed once per profile, so
  most lookups miss, and a miss through ``memo[key]`` raised and caught a KeyError each time (the
  answers and the sharing as tests/test_streaming_sharing.py proves them);
- the next instants (cdp/segments/timing.py ``earliest_merged``) read a profile's instants where
  its schema puts them (``SchemaInstants``: the date and datetime attributes, each event's
  timestamp when no other event field is dated) instead of walking every value: the same instant
  as the walk for generated segments and profiles, and a schema with a dated event field walks.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

import cdp.dsl  # noqa: F401 - before cdp.schema
from cdp.dsl import check, render
from cdp.engine import compile_predicate, load_profile
from cdp.schema import Schema, luma_schema
from cdp.segments.reads import reads_of_tree
from cdp.segments.timing import SchemaInstants, earliest_merged, merge_timing, timing_parts
from tests.strategies import segments
from tests.test_differential import AS_OF as DIFFERENTIAL_AS_OF, CATALOGUE, attributes, event

AS_OF = datetime(2026, 12, 6, 9, 15, tzinfo=timezone.utc)


class _Watched(dict):
    """A memo that counts the misses ``memo[key]`` would raise a KeyError for."""

    misses = 0

    def __missing__(self, key):
        type(self).misses += 1
        raise KeyError(key)


def test_a_shared_terms_first_lookup_raises_nothing():
    texts = ['sum(event.order.total where type = "purchase" within last 365 days) > 100',
             'sum(event.order.total where type = "purchase" within last 365 days) > 900',
             'exists event where type = "addToCart" within last 7 days']
    predicates = [compile_predicate(text) for text in texts]
    profile = load_profile({"id": "p", "events": [
        {"id": "a", "type": "purchase", "timestamp": "2026-11-01T10:00:00Z", "order": {"total": 500}}]})
    memo = _Watched()
    assert [predicate(profile, AS_OF, memo) for predicate in predicates] == [True, False, False]
    assert _Watched.misses == 0
    assert sorted(key[1] for key in memo if isinstance(key, tuple)) == [
        'exists event where type = "addToCart" within last 7 days',
        'sum(event.order.total where type = "purchase" within last 365 days)']


# ---- the next instants from where the schema says a profile holds instants ------------------------

def _document(attrs, events) -> dict:
    return {"id": "p", "attributes": attrs, "events": [dict(e, id=f"e{j}") for j, e in enumerate(events)]}


def _with_dated_event_field() -> Schema:
    """The Luma schema with an event field typed datetime beside the timestamp (order.shipped_at)."""
    document = luma_schema().to_dict()
    document.setdefault("event", {})["order.shipped_at"] = "datetime"
    return Schema.from_dict(document)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(trees=st.lists(segments, min_size=1, max_size=8), attrs=attributes, events=st.lists(event, max_size=6),
       minutes=st.integers(-3 * 24 * 60, 3 * 24 * 60), ahead=st.booleans())
def test_the_next_instant_from_the_schemas_instants_is_the_walks(trees, attrs, events, minutes, ahead):
    profile = load_profile(_document(attrs, events), allowed_values=False)
    as_of = DIFFERENTIAL_AS_OF + timedelta(minutes=minutes)
    if ahead and profile.events:  # as_of on an event's instant
        as_of = profile.events[0]["timestamp"]
    reads = [reads_of_tree(check(render(tree), segments=CATALOGUE), CATALOGUE) for tree in trees]
    merged = merge_timing([timing_parts(r) for r in reads])
    walked = earliest_merged(merged, profile, as_of)
    instants = SchemaInstants(luma_schema())
    assert instants.events_by_timestamp
    assert earliest_merged(merged, profile, as_of, instants) == walked


def test_a_schema_with_dated_event_fields_walks_the_events():
    schema = _with_dated_event_field()
    instants = SchemaInstants(schema)
    assert not instants.events_by_timestamp
    assert instants.attribute_paths == ("created_at", "loyalty.joined", "person.birth_date")
    profile = load_profile({"id": "p", "events": [
        {"id": "a", "type": "purchase", "timestamp": "2026-11-01T10:00:00Z",
         "order": {"total": 5, "shipped_at": "2026-12-06T10:00:00Z"}}]}, schema)
    reads = reads_of_tree(check('exists event where type = "purchase" within last 1 days', schema), {})
    merged = merge_timing([timing_parts(reads)])
    as_of = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
    # the shipping instant is a candidate (the walk finds it; the purchase's are past): so must the
    # schema's instants be
    assert earliest_merged(merged, profile, as_of, instants) == earliest_merged(merged, profile, as_of) \
        == datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)


class _Unwalked(dict):
    """Attributes whose values may not be walked: only the schema's dated paths are read."""

    def values(self):
        raise AssertionError("every attribute walked")


def test_the_next_instant_reads_only_the_schemas_dated_attributes():
    profile = load_profile({"id": "p", "attributes": {"person": {"birth_date": "1990-12-08"}, "email": "a@b.c",
                                                      "loyalty": {"tier": "gold"}},
                            "events": [{"id": "a", "type": "purchase", "timestamp": "2026-12-06T08:00:00Z"}]})
    profile.attributes = _Unwalked(profile.attributes)
    reads = [reads_of_tree(check(text), {}) for text in (
        'exists event where type = "purchase" within last 3 hours', "days_until(person.birth_date) < 3")]
    merged = merge_timing([timing_parts(r) for r in reads])
    as_of = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
    assert earliest_merged(merged, profile, as_of, SchemaInstants(luma_schema())) == \
        datetime(2026, 12, 6, 11, 0, tzinfo=timezone.utc)
