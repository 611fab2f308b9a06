"""Streaming and batch agree (issue 15), on SQLite and PostgreSQL, with the service's clock
injected: after any sequence of ingests (events, attributes, records that merge profiles) and
clock advances (each followed by the due job's re-evaluations), the streaming memberships equal
the members a batch evaluation computes in SQL on the same data at the same instant."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from cdp.dsl import render
from cdp.schema_registry.service import get_schema
from cdp.segments.batch import members_select
from cdp.segments.due import run_due
from cdp.storage.database import write_transaction
from cdp.storage.models import memberships, segments
from tests.api.conftest import Api, create_dataset, new_sandbox
from tests.api.test_segments_streaming import GIFT_GIVERS
from tests.strategies import segments as generated_segments
from tests.test_differential import CATALOGUE

T0 = datetime(2026, 12, 30, 20, 0, tzinfo=timezone.utc)
SEGMENTS = {
    **CATALOGUE,  # what generated expressions may reference
    "recent-buyers": 'exists event where type = "purchase" within last 3 hours',
    "gift-givers": GIFT_GIVERS,
    "gold": 'loyalty.tier = "gold"',
    "viewers": 'count(event where type = "productView" within last 1 day) >= 2',
    "gold-viewers": 'in segment "gold" and not in segment "recent-buyers" or in segment "viewers"',
    "carts-today": 'exists event where type = "addToCart" within today',
    "lapsed": 'no event where type = "purchase" within last 2 days',
    "cart-then-buy": 'exists event as c where type = "addToCart" then event where type = "purchase" within 1 hour',
}
EMAILS = [f"p{i}@example.com" for i in range(3)]

identity = st.sampled_from(EMAILS).map(lambda e: {"namespace": "email", "id": e})
event_action = st.tuples(st.just("event"), st.lists(identity, min_size=1, max_size=2, unique_by=lambda i: i["id"]),
                         st.sampled_from(["purchase", "addToCart", "productView", "login"]),
                         st.integers(-3 * 24 * 60, 60))
attribute_action = st.tuples(st.just("profile"), st.lists(identity, min_size=1, max_size=2,
                                                          unique_by=lambda i: i["id"]),
                             st.sampled_from(["gold", "silver", None]), st.just(0))
advance = st.tuples(st.just("advance"), st.just([]), st.just(""), st.integers(1, 3 * 24 * 60))
actions = st.lists(st.one_of(event_action, attribute_action, advance), min_size=1, max_size=10)


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _streaming(connection, sandbox: str) -> dict[str, set[int]]:
    rows = connection.execute(sa.select(segments.c.key, memberships.c.profile_pk)
                              .join(segments, segments.c.pk == memberships.c.segment_pk)
                              .where(segments.c.sandbox == sandbox, memberships.c.status.in_(["realized", "existing"])))
    found: dict[str, set[int]] = {}
    for row in rows:
        found.setdefault(row.key, set()).add(row.profile_pk)
    return found


def assert_streaming_equals_batch(engine, sandbox: str, chosen: dict[str, str], *, as_of: datetime,
                                  context: object) -> None:
    """Every segment's streaming members are the members a batch SQL run finds at ``as_of``."""
    with engine.connect() as connection:
        schema = get_schema(connection=connection, sandbox=sandbox)
        streaming = _streaming(connection, sandbox)
        for key, expression in chosen.items():
            query = members_select(dialect=engine.dialect.name, sandbox=sandbox, expression=expression,
                                   schema=schema, catalogue=chosen, as_of=as_of)
            expected = set(connection.execute(query).scalars())
            assert streaming.get(key, set()) == expected, (key, expression, context)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=actions, extra=generated_segments)
def test_streaming_memberships_equal_a_batch_run(service, steps, extra):
    client, keys = service
    sandbox = new_sandbox(Api(client, keys), "s")
    api = Api(client, keys, sandbox)
    engine = api.app.state.engine
    before = api.app.state.clock
    api.app.state.clock = clock = Clock(T0)
    try:
        chosen = {**SEGMENTS, "generated": render(extra)}
        for key, expression in chosen.items():
            response = api.post("/v1/segments", json={"key": key, "name": key, "expression": expression,
                                                      "evaluation": "streaming"})
            assert response.status_code == 201, response.text
        web, crm = create_dataset(api, "event", "Web"), create_dataset(api, "profile", "CRM")
        for n, (kind, ids, what, minutes) in enumerate(steps):
            if kind == "advance":
                clock.at += timedelta(minutes=minutes)
                while run_due(lambda: write_transaction(engine), now=clock.at):
                    pass
                continue
            if kind == "event":
                record = {"identities": ids, "event": {"id": f"e{n}", "type": what, "timestamp": _iso(
                    clock.at + timedelta(minutes=minutes)), "channel": "web"}}
                if what in ("addToCart", "productView"):
                    record["event"]["product"] = {"sku": "A1", "category": "mens", "size": "L", "price": 5.0}
                dataset = web
            else:
                record = {"identities": ids, "attributes": {"loyalty": {"tier": what}, "preferred_category": "womens",
                                                            "preferred_size": "S"}}
                dataset = crm
            response = api.post(f"/v1/datasets/{dataset}/records", json=record)
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["status"] == "accepted", response.text
        assert_streaming_equals_batch(engine, sandbox, chosen, as_of=clock.at, context=steps)
    finally:
        api.app.state.clock = before
