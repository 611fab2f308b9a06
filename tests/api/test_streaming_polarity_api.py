"""Skipping streaming segments by polarity (cdp/segments/polarity.py), end to end on SQLite and
PostgreSQL: a record that only adds events does not evaluate a segment the profile is a member of
when more events cannot make it leave (``exists``, ``count(…) >= n``), nor one it is not a member of
when more events cannot make it enter (``no event``) — counted by ``cdp_streaming_evaluations_total``
— while the memberships stay a batch run's; and once the profile's stored instant has passed
(the due job not run yet), the record evaluates them all, so a member whose window has passed
leaves at once."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from tests.api.conftest import Api, create_dataset, new_sandbox
from tests.api.test_streaming_agrees_with_batch import T0, Clock, _iso, _streaming, assert_streaming_equals_batch

SEGMENTS = {
    "buyers": 'exists event where type = "purchase"',  # monotone
    "two-buys": 'count(event where type = "purchase") >= 2',  # monotone
    "lapsed": 'no event where type = "purchase" within last 30 days',  # antitone
    "big-spend": 'sum(event.order.total where type = "purchase") > 15',  # unknown: evaluated every time
}


def _save(api: Api, segments: dict[str, str]) -> None:
    for key, expression in segments.items():
        response = api.post("/v1/segments", json={"key": key, "name": key, "expression": expression,
                                                  "evaluation": "streaming"})
        assert response.status_code == 201, response.text


def _counts(api: Api, sandbox: str, keys) -> dict[str, float]:
    return {key: api.app.state.metrics.segment_evaluations.count(sandbox, key) for key in keys}


def _purchase(api: Api, dataset: int, n: int, at) -> None:
    record = {"identities": [{"namespace": "email", "id": "m@example.com"}],
              "event": {"id": f"p{n}", "type": "purchase", "timestamp": _iso(at), "channel": "web",
                        "order": {"id": f"o{n}", "total": 10.0}}}
    response = api.post(f"/v1/datasets/{dataset}/records", json=record)
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text


@contextmanager
def _new_sandbox_at_t0(service):
    """(api, sandbox, clock): a new sandbox's client, with the service's clock set to T0 (given back after)."""
    client, keys = service
    sandbox = new_sandbox(Api(client, keys), "m")
    api = Api(client, keys, sandbox)
    before = api.app.state.clock
    api.app.state.clock = clock = Clock(T0)
    try:
        yield api, sandbox, clock
    finally:
        api.app.state.clock = before


def test_a_record_of_new_events_skips_the_segments_it_cannot_move(service):
    with _new_sandbox_at_t0(service) as (api, sandbox, clock):
        _save(api, SEGMENTS)
        web = create_dataset(api, "event", "Web")
        _purchase(api, web, 0, T0 - timedelta(hours=1))  # a new profile: every segment evaluated
        first = _counts(api, sandbox, SEGMENTS)
        assert all(first.values()), first
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"buyers"}
        _purchase(api, web, 1, T0 - timedelta(minutes=30))
        second = _counts(api, sandbox, SEGMENTS)
        assert second["buyers"] == first["buyers"]  # a member of a monotone segment
        assert second["lapsed"] == first["lapsed"]  # not a member of an antitone one
        assert second["two-buys"] == first["two-buys"] + 1  # not a member of a monotone one: it may enter
        assert second["big-spend"] == first["big-spend"] + 1  # a sum can fall: always evaluated
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"buyers", "two-buys", "big-spend"}
        _purchase(api, web, 2, T0 - timedelta(minutes=10))
        third = _counts(api, sandbox, SEGMENTS)
        assert third["two-buys"] == second["two-buys"]  # a member now
        assert third["big-spend"] == second["big-spend"] + 1
        assert_streaming_equals_batch(api.app.state.engine, sandbox, SEGMENTS, as_of=clock.at, context="m")


def test_once_the_stored_instant_has_passed_a_record_evaluates_them_all(service):
    recent = {"recent-pair": 'count(event where type = "purchase" within last 1 hour) >= 2'}
    with _new_sandbox_at_t0(service) as (api, sandbox, clock):
        _save(api, recent)
        web = create_dataset(api, "event", "Web")
        _purchase(api, web, 0, T0 - timedelta(minutes=20))
        _purchase(api, web, 1, T0 - timedelta(minutes=10))  # enters; due at T0 + 40 min
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"recent-pair"}
        counted = _counts(api, sandbox, recent)["recent-pair"]
        clock.at = T0 + timedelta(hours=2)  # the instant has passed; the due job has not run
        _purchase(api, web, 2, clock.at - timedelta(minutes=1))  # one purchase in the last hour: she leaves
        assert _counts(api, sandbox, recent)["recent-pair"] == counted + 1
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == set()
        assert_streaming_equals_batch(api.app.state.engine, sandbox, recent, as_of=clock.at, context="m")


CARTS = {
    # unknown for events of any type; monotone for a new cart, antitone for a new purchase
    "abandoners": 'exists event as c where type = "addToCart" then no event where type = "purchase" within 1 day',
    "recent-abandoners": 'exists event as c where type = "addToCart" within last 2 hours '
                         'then no event where type = "purchase" within 1 day',
}


def _event(api: Api, dataset: int, n: int, kind: str, at) -> None:
    record = {"identities": [{"namespace": "email", "id": "c@example.com"}],
              "event": {"id": f"c{n}", "type": kind, "timestamp": _iso(at), "channel": "web",
                        **({"order": {"id": f"o{n}", "total": 10.0}} if kind == "purchase" else {})}}
    response = api.post(f"/v1/datasets/{dataset}/records", json=record)
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text


def test_the_new_events_types_decide_what_a_record_cannot_move(service):
    """A cart-then-no-purchase segment is evaluated for every event of either type when any added
    event may move it either way; by the record's own types, a new cart cannot take a member out
    and a new purchase cannot bring a non-member in (cdp/segments/polarity.py, ``added``)."""
    with _new_sandbox_at_t0(service) as (api, sandbox, clock):
        _save(api, CARTS)
        web = create_dataset(api, "event", "Web")
        _event(api, web, 0, "addToCart", T0 - timedelta(hours=40))  # a new profile: both evaluated
        first = _counts(api, sandbox, CARTS)
        assert all(first.values()), first
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"abandoners"}
        _event(api, web, 1, "addToCart", T0 - timedelta(minutes=30))
        second = _counts(api, sandbox, CARTS)
        assert second["abandoners"] == first["abandoners"]  # a member, and a cart cannot take her out
        assert second["recent-abandoners"] == first["recent-abandoners"] + 1  # a cart may bring her in
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"abandoners", "recent-abandoners"}
        _event(api, web, 2, "purchase", T0 - timedelta(minutes=20))  # bought the recent cart
        third = _counts(api, sandbox, CARTS)
        assert third == {key: second[key] + 1 for key in CARTS}  # members: a purchase may take them out
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"abandoners"}
        _event(api, web, 3, "purchase", T0 - timedelta(minutes=10))
        fourth = _counts(api, sandbox, CARTS)
        assert fourth["abandoners"] == third["abandoners"] + 1
        assert fourth["recent-abandoners"] == third["recent-abandoners"]  # a purchase cannot bring her in
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"abandoners"}
        assert_streaming_equals_batch(api.app.state.engine, sandbox, CARTS, as_of=clock.at, context="c")
        clock.at = T0 + timedelta(days=2)  # no new data: the due job's answers are a batch run's too
        from cdp.segments.due import run_due
        from cdp.storage.database import write_transaction
        engine = api.app.state.engine
        while run_due(lambda: write_transaction(engine), now=clock.at):
            pass
        assert_streaming_equals_batch(engine, sandbox, CARTS, as_of=clock.at, context="c")
