"""Skipping streaming segments by a record's values (cdp/segments/relevance.py), end to end on
SQLite and PostgreSQL: the segment whose filters cannot admit an ingested event is not evaluated
(counted by ``cdp_streaming_evaluations_total``), the one whose filter can is; and after any
sequence of ingests of events with varied values (categories, channels, prices, old and future
timestamps) and clock advances, the streaming memberships equal a batch run's on the same data —
segments filtering on those values, sequences reading an alias, a reference, a constant window
and a generated expression among them."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import render
from cdp.segments.due import run_due
from cdp.storage.database import write_transaction
from tests.api.conftest import Api, create_dataset, new_sandbox
from tests.api.test_streaming_agrees_with_batch import (EMAILS, T0, Clock, _iso, _streaming,
                                                        assert_streaming_equals_batch)
from tests.test_differential import CATALOGUE
from tests.test_streaming_relevance import with_events

SEGMENTS = {
    **CATALOGUE,  # what generated expressions may reference
    "mens-buyers": 'exists event where type = "purchase" and product.category = "mens" within last 2 days',
    "web-spend": 'sum(event.order.total where type = "purchase" and channel = "web" within last 3 days) > 50',
    "mobile-carts": 'count(event where type = "addToCart" and channel = "mobile" within today) >= 1',
    "gear-then-buy": 'exists event as c where type = "addToCart" and product.category = "gear" '
                     'then event where type = "purchase" and product.sku = c.product.sku within 1 day',
    "no-womens-views": 'no event where type = "productView" and product.category = "womens" within last 1 day',
    "pricey-views": 'last(event.product.price where type = "productView" and product.price > 20) > 40',
    "bought-since": 'exists event where type = "purchase" since date("2026-12-30")',
    "mens-not-mobile": 'in segment "mens-buyers" and not in segment "mobile-carts"',
}

identity = st.sampled_from(EMAILS).map(lambda e: {"namespace": "email", "id": e})
event_action = st.tuples(
    st.just("event"), st.lists(identity, min_size=1, max_size=2, unique_by=lambda i: i["id"]),
    st.sampled_from(["purchase", "addToCart", "productView", "login"]),
    st.integers(-4 * 24 * 60, 60),
    st.fixed_dictionaries({"category": st.sampled_from(["mens", "womens", "gear"]), "sku": st.sampled_from(["A1", "B2"]),
                           "price": st.sampled_from([5.0, 30.0, 45.0])}),
    st.sampled_from(["web", "mobile"]), st.sampled_from([10.0, 40.0, 60.0]))
advance = st.tuples(st.just("advance"), st.just([]), st.just(""), st.integers(1, 3 * 24 * 60), st.just({}),
                    st.just(""), st.just(0.0))
actions = st.lists(st.one_of(event_action, event_action, advance), min_size=1, max_size=10)


def _record(n: int, ids, kind: str, at, product: dict, channel: str, total: float) -> dict:
    event = {"id": f"e{n}", "type": kind, "timestamp": _iso(at), "channel": channel}
    if kind != "login":
        event["product"] = dict(product)
    if kind == "purchase":
        event["order"] = {"total": total}
    return {"identities": ids, "event": event}


def _save(api: Api, segments: dict[str, str]) -> None:
    for key, expression in segments.items():
        response = api.post("/v1/segments", json={"key": key, "name": key, "expression": expression,
                                                  "evaluation": "streaming"})
        assert response.status_code == 201, response.text


def _evaluations(api: Api, sandbox: str, key: str) -> float:
    return api.app.state.metrics.segment_evaluations.count(sandbox, key)


def test_a_segment_whose_filters_admit_no_new_event_is_not_evaluated(service):
    client, keys = service
    sandbox = new_sandbox(Api(client, keys), "r")
    api = Api(client, keys, sandbox)
    before = api.app.state.clock
    api.app.state.clock = Clock(T0)
    try:
        _save(api, {key: SEGMENTS[key] for key in ("mens-buyers", "web-spend", "mobile-carts")})
        web = create_dataset(api, "event", "Web")
        ids = [{"namespace": "email", "id": "r@example.com"}]
        product = {"category": "womens", "sku": "A1", "price": 5.0}

        def ingest(n: int, **changes) -> None:
            fields = {"kind": "purchase", "at": T0 - timedelta(hours=1), "product": product, "channel": "mobile",
                      "total": 10.0, **changes}
            response = api.post(f"/v1/datasets/{web}/records", json=_record(n, ids, **fields))
            assert response.status_code == 200 and response.json()["accepted"] == 1, response.text

        ingest(0)  # a new profile: every segment is evaluated
        counts = {key: _evaluations(api, sandbox, key) for key in ("mens-buyers", "web-spend", "mobile-carts")}
        assert all(counts.values()), counts
        ingest(1)  # a womens purchase on mobile: neither purchase segment's filter admits it
        assert _evaluations(api, sandbox, "mens-buyers") == counts["mens-buyers"]
        assert _evaluations(api, sandbox, "web-spend") == counts["web-spend"]
        ingest(2, product={"category": "mens", "sku": "A1", "price": 5.0}, at=T0 - timedelta(days=3))  # too old
        assert _evaluations(api, sandbox, "mens-buyers") == counts["mens-buyers"]
        ingest(3, product={"category": "mens", "sku": "A1", "price": 5.0})
        assert _evaluations(api, sandbox, "mens-buyers") == counts["mens-buyers"] + 1
        assert _evaluations(api, sandbox, "web-spend") == counts["web-spend"]
        assert _evaluations(api, sandbox, "mobile-carts") == counts["mobile-carts"]  # another type
        with api.app.state.engine.connect() as connection:
            assert set(_streaming(connection, sandbox)) == {"mens-buyers"}
    finally:
        api.app.state.clock = before


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=actions, extra=with_events)
def test_streaming_memberships_equal_a_batch_run_with_skips(service, steps, extra):
    client, keys = service
    sandbox = new_sandbox(Api(client, keys), "r")
    api = Api(client, keys, sandbox)
    engine = api.app.state.engine
    before = api.app.state.clock
    api.app.state.clock = clock = Clock(T0)
    try:
        chosen = {**SEGMENTS, "generated": render(extra)}
        _save(api, chosen)
        web = create_dataset(api, "event", "Web")
        for n, (kind, ids, what, minutes, product, channel, total) in enumerate(steps):
            if kind == "advance":
                clock.at += timedelta(minutes=minutes)
                while run_due(lambda: write_transaction(engine), now=clock.at):
                    pass
                continue
            record = _record(n, ids, what, clock.at + timedelta(minutes=minutes), product, channel, total)
            response = api.post(f"/v1/datasets/{web}/records", json=record)
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["status"] == "accepted", response.text
        assert_streaming_equals_batch(engine, sandbox, chosen, as_of=clock.at, context=steps)
    finally:
        api.app.state.clock = before
