"""Streaming's per-record work without exceptions as control flow (issue 15, session 16): an event
term shared through the evaluation's memo (cdp/engine/memory/codegen.py ``_shared``) is looked up
with ``dict.get`` — a catalogue's terms are mostly computed once per profile, so most lookups miss,
and a miss through ``memo[key]`` raised and caught a KeyError each time. The answers and the
sharing stay as tests/test_streaming_sharing.py proves them."""

from __future__ import annotations

from datetime import datetime, timezone

import cdp.dsl  # noqa: F401 - before cdp.schema
from cdp.engine import compile_predicate, load_profile

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
