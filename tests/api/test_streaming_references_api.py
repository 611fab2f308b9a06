"""A streaming segment whose own expression reads no event and that references others
(``in segment "a" and loyalty.tier is null``) is not evaluated, for a record that only adds events,
when none of the segments it references moved (cdp/segments/streaming.py
``StreamingEvaluator._unmoved``), end to end on SQLite and PostgreSQL — counted by
``cdp_streaming_evaluations_total`` — while the memberships stay a batch run's; it is evaluated
when one of them moved, and once the profile's stored instant has passed (the due job not run
yet) a record evaluates it, so a member whose referenced window has passed leaves at once."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import create_dataset
from tests.api.test_streaming_agrees_with_batch import get_schema, members_select
from tests.api.test_streaming_agrees_with_batch import T0, _iso, _streaming, assert_streaming_equals_batch
from tests.api.test_streaming_polarity_api import _counts, _new_sandbox_at_t0, _purchase, _save

SEGMENTS = {
    "big-spend": 'sum(event.order.total where type = "purchase") > 15',  # evaluated on every purchase
    "big-no-tier": 'in segment "big-spend" and loyalty.tier is null',  # reads no event itself
    "big-buyer": 'in segment "big-spend" and exists event where type = "purchase"',  # reads events itself
}


def _page_view(api, dataset: int, n: int, at) -> None:
    record = {"identities": [{"namespace": "email", "id": "m@example.com"}],
              "event": {"id": f"v{n}", "type": "pageView", "timestamp": _iso(at), "channel": "web"}}
    response = api.post(f"/v1/datasets/{dataset}/records", json=record)
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text


def test_a_segment_of_references_is_skipped_while_none_of_them_moves(service):
    with _new_sandbox_at_t0(service) as (api, sandbox, clock):
        _save(api, SEGMENTS)
        web = create_dataset(api, "event", "Web")
        _purchase(api, web, 0, T0 - timedelta(hours=1))  # a new profile: every segment evaluated (10: none)
        first = _counts(api, sandbox, SEGMENTS)
        assert all(first.values()), first
        _purchase(api, web, 1, T0 - timedelta(minutes=30))  # 20 > 15: big-spend enters, so do the others
        second = _counts(api, sandbox, SEGMENTS)
        assert second == {key: n + 1 for key, n in first.items()}, (first, second)
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == set(SEGMENTS)
        _purchase(api, web, 2, T0 - timedelta(minutes=10))  # 30: big-spend evaluated, does not move
        third = _counts(api, sandbox, SEGMENTS)
        assert third["big-spend"] == second["big-spend"] + 1
        assert third["big-no-tier"] == second["big-no-tier"]  # none of its references moved
        assert third["big-buyer"] == second["big-buyer"] + 1  # its own `exists` reads the record's event
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == set(SEGMENTS)
        assert_streaming_equals_batch(api.app.state.engine, sandbox, SEGMENTS, as_of=clock.at, context="r")


def test_once_the_stored_instant_has_passed_a_segment_of_references_is_evaluated(service):
    chosen = {"recent-pair": 'count(event where type = "purchase" within last 1 hour) >= 2',
              "viewer": 'exists event where type = "pageView"',
              "pair-viewer": 'in segment "recent-pair" and in segment "viewer"'}
    with _new_sandbox_at_t0(service) as (api, sandbox, clock):
        _save(api, chosen)
        web = create_dataset(api, "event", "Web")
        _page_view(api, web, 0, T0 - timedelta(minutes=50))
        _purchase(api, web, 0, T0 - timedelta(minutes=20))
        _purchase(api, web, 1, T0 - timedelta(minutes=10))  # enters; due at T0 + 40 min
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == set(chosen)
        counted = _counts(api, sandbox, chosen)["pair-viewer"]
        clock.at = T0 + timedelta(hours=2)  # the instant has passed; the due job has not run
        # a page view: `viewer` stays (as stored), `recent-pair` is not selected; `pair-viewer`,
        # evaluated, reads recent-pair's answer now (FALSE) and leaves at once
        _page_view(api, web, 1, clock.at - timedelta(minutes=1))
        assert _counts(api, sandbox, chosen)["pair-viewer"] == counted + 1
        with api.app.state.engine.connect() as connection:
            assert "pair-viewer" not in _streaming(connection, sandbox)
        engine = api.app.state.engine
        with engine.connect() as connection:  # recent-pair itself waits for the due job; the others are right now
            schema = get_schema(connection=connection, sandbox=sandbox)
            for key in ("pair-viewer", "viewer"):
                query = members_select(dialect=engine.dialect.name, sandbox=sandbox, expression=chosen[key],
                                       schema=schema, catalogue=chosen, as_of=clock.at)
                assert _streaming(connection, sandbox).get(key, set()) == set(connection.execute(query).scalars())


def test_a_referenced_segment_the_record_does_not_evaluate_is_read_from_its_membership(service):
    """A record that only adds events, the profile's stored instant not passed: a segment it
    evaluates reads a referenced streaming segment that it does not evaluate (here: not selected,
    it reads attributes only) from the stored membership — that segment's expression is not
    evaluated again — and the memberships stay a batch run's."""
    from cdp.segments import streaming_plan

    chosen = {"no-tier": "loyalty.tier is null",
              "no-tier-buyer": 'in segment "no-tier" and exists event where type = "purchase"'}
    with _new_sandbox_at_t0(service) as (api, sandbox, clock):
        _save(api, chosen)
        web = create_dataset(api, "event", "Web")
        _page_view(api, web, 0, T0 - timedelta(minutes=50))  # a new profile: both evaluated; no-tier enters
        engine = api.app.state.engine
        with engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"no-tier"}
            plan = streaming_plan.streaming_plan(connection, sandbox)
        calls = []
        # what no-tier-buyer's reference evaluates when it evaluates no-tier: its catalogue's predicate
        compiled = plan.compiled._predicates
        inner = plan.predicates[plan.keys.index("no-tier")]
        compiled["no-tier"] = lambda *args: calls.append(args) or inner(*args)
        try:
            before = _counts(api, sandbox, chosen)
            _purchase(api, web, 0, T0 - timedelta(minutes=10))  # no-tier-buyer evaluated, enters
            assert _counts(api, sandbox, chosen) == {"no-tier": before["no-tier"],
                                                      "no-tier-buyer": before["no-tier-buyer"] + 1}
            assert calls == []  # no-tier's answer came from its membership
        finally:
            compiled.pop("no-tier")
        with engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == set(chosen)
        assert_streaming_equals_batch(engine, sandbox, chosen, as_of=clock.at, context="seeded")
