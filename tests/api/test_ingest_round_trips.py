"""A single-record POST in few statements (issue 16: each is a round trip on PostgreSQL), and what
the statements cut must still do: the identities a record carries are marked seen (on PostgreSQL
that update rides on the event insert: cdp/identity/owners.py ``TOUCH_CTE``)."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from tests.api.conftest import create_dataset


def _last_seen(api) -> dict[tuple[str, str], object]:
    from cdp.storage.models import identities

    with api.app.state.engine.connect() as connection:
        rows = connection.execute(sa.select(identities.c.namespace, identities.c.value, identities.c.last_seen)
                                  .where(identities.c.sandbox == api.sandbox)).all()
    return {(row.namespace, row.value): row.last_seen for row in rows}


def _statements_of(api, send) -> list[str]:
    """The statements and transaction steps the engine sent for ``send()`` from request threads
    (the service's own loops run in threads named cdp-…)."""
    engine = api.app.state.engine
    seen: list[str] = []

    def mine() -> bool:
        return not threading.current_thread().name.startswith("cdp")

    def statement(_conn, _cursor, text, *_args) -> None:  # noqa: ANN001
        if mine():
            seen.append(" ".join(text.split())[:80])

    def step(name: str):
        def record(*_args) -> None:  # noqa: ANN002
            if mine():
                seen.append(name)
        return record

    # SQLite's BEGIN is a statement of its own (BEGIN IMMEDIATE); PostgreSQL's is the driver's
    steps = ["commit"] + (["begin"] if engine.dialect.name == "postgresql" else [])
    hooks = [("before_cursor_execute", statement)] + [(name, step(name.upper())) for name in steps]
    for name, hook in hooks:
        sa.event.listen(engine, name, hook)
    try:
        send()
    finally:
        for name, hook in hooks:
            sa.event.remove(engine, name, hook)
    return seen


def _post(api, dataset: int, record: dict) -> None:
    response = api.post(f"/v1/datasets/{dataset}/records", json=record)
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text


def _event(number: int, *identities: tuple[str, str]) -> dict:
    return {"identities": [{"namespace": ns, "id": value} for ns, value in identities],
            "event": {"id": f"e-{number}", "type": "pageView", "timestamp": "2026-12-01T10:00:00Z"}}


def test_a_returning_persons_event_takes_seven_statements_and_marks_its_identity_seen(api):
    dataset = create_dataset(api, "event")
    _post(api, dataset, _event(1, ("ecid", "rt-1")))  # the person; the key, sandbox and settings read
    before = _last_seen(api)[("ecid", "rt-1")]
    time.sleep(0.01)
    seen = _statements_of(api, lambda: _post(api, dataset, _event(2, ("ecid", "rt-1"))))
    # BEGIN, the versions, [PostgreSQL: the savepoint and its lock bound], the events seen, the
    # owners, [SQLite: the touch], the event (PostgreSQL: with the touch), COMMIT — 11 on PostgreSQL
    # and 8 on SQLite before the cut
    assert len(seen) <= 7, seen
    assert _last_seen(api)[("ecid", "rt-1")] > before


def test_an_event_of_two_known_identities_marks_both_seen(api):
    dataset = create_dataset(api, "event")
    _post(api, dataset, _event(1, ("ecid", "rt-2"), ("email", "rt2@example.com")))
    before = _last_seen(api)
    time.sleep(0.01)
    _post(api, dataset, _event(2, ("email", "rt2@example.com"), ("ecid", "rt-2")))
    after = _last_seen(api)
    assert after[("ecid", "rt-2")] > before[("ecid", "rt-2")]
    assert after[("email", "rt2@example.com")] > before[("email", "rt2@example.com")]


def test_a_duplicate_event_marks_nothing_seen(api):
    dataset = create_dataset(api, "event")
    _post(api, dataset, _event(1, ("ecid", "rt-3")))
    before = _last_seen(api)
    time.sleep(0.01)
    response = api.post(f"/v1/datasets/{dataset}/records", json=_event(1, ("ecid", "rt-3")))
    assert response.json()["duplicates"] == 1, response.text
    assert _last_seen(api) == before


def _streaming_segment(api, key: str, expression: str) -> None:
    response = api.post("/v1/segments", json={"key": key, "name": key, "expression": expression,
                                              "evaluation": "streaming"})
    assert response.status_code == 201, response.text


def test_an_ingest_request_wakes_the_delivery_loop_once_after_its_commit(api, monkeypatch):
    """The wake is what lets a membership change the record made go out at once (not at the loop's
    next poll); it is sent on the request's thread after the COMMIT, so the loop it wakes sees the
    record's changes (and its outbox row)."""
    from cdp.storage.models import events, membership_changes

    dataset = create_dataset(api, "event")
    _streaming_segment(api, "woken", "count(event) >= 1")  # the event's new person enters it
    delivery = api.app.state.delivery
    committed_at_wake: list[tuple[int, int]] = []

    def wake() -> None:  # the real wake, observed: what another connection sees of the request's writes
        with api.app.state.engine.connect() as connection:
            committed_at_wake.append((
                connection.execute(sa.select(sa.func.count()).select_from(events)
                                   .where(events.c.event_id == "e-wake")).scalar_one(),
                connection.execute(sa.select(sa.func.count()).select_from(membership_changes)
                                   .where(membership_changes.c.segment_key == "woken",
                                          membership_changes.c.sandbox == api.sandbox)).scalar_one()))
        real_wake()

    real_wake = delivery.wake
    monkeypatch.setattr(delivery, "wake", wake)
    _post(api, dataset, {**_event(0, ("ecid", "rt-wake")), "event": {**_event(0)["event"], "id": "e-wake"}})
    assert committed_at_wake == [(1, 1)]


def test_an_ingest_request_that_changes_no_membership_does_not_wake_the_delivery_loop(api, monkeypatch):
    """A request whose records change no membership wrote nothing for the loop to deliver: it does
    not wake it (each woken cycle is a pooled connection and a read; the loop's poll finds anything
    else) — with no streaming segment, and with one its records do not move. A later request that
    does change one still wakes it."""
    dataset = create_dataset(api, "event")
    delivery = api.app.state.delivery
    woken: list[int] = []
    monkeypatch.setattr(delivery, "wake", lambda: woken.append(1))
    _post(api, dataset, _event(10, ("ecid", "rt-quiet")))  # a new person; no streaming segment
    _post(api, dataset, _event(11, ("ecid", "rt-quiet")))  # a returning one
    _streaming_segment(api, "many", "count(event) > 5")
    _post(api, dataset, _event(12, ("ecid", "rt-quiet-2")))  # evaluated, not a member: no change
    _post(api, dataset, _event(13, ("ecid", "rt-quiet")))  # its third event: still not a member
    assert woken == []
    _streaming_segment(api, "any", "count(event) >= 1")
    _post(api, dataset, _event(14, ("ecid", "rt-loud")))  # a new person: enters "any"
    assert woken == [1]


def test_a_request_may_reuse_cached_plans_and_nothing_after_it_does(api):
    """PostgreSQL plans every statement afresh on every connection (force_custom_plan: a batch's
    transaction grows tables past any cached plan); an ingest request's transaction — at most 1,000
    records — lets its statements, the event counter's trigger statements among them, use cached
    plans (SET LOCAL: the connection's next transaction plans afresh again). SQLite has no plan cache
    setting, and nothing is sent there."""
    engine = api.app.state.engine
    dataset = create_dataset(api, "event")
    _post(api, dataset, _event(1, ("ecid", "pc-1")))
    in_force: list[str] = []

    def after(_conn, cursor, text, *_args) -> None:  # noqa: ANN001
        if engine.dialect.name == "postgresql" and text.lstrip().upper().startswith(("WITH TOUCHED",
                                                                                     "INSERT INTO EVENTS")):
            with cursor.connection.cursor() as own:  # the insert's cursor still holds its rows
                own.execute("SHOW plan_cache_mode")
                in_force.append(own.fetchone()[0])

    sent = _statements_of(api, lambda: (sa.event.listen(engine, "after_cursor_execute", after),
                                        _post(api, dataset, _event(2, ("ecid", "pc-1")))))
    sa.event.remove(engine, "after_cursor_execute", after)
    if engine.dialect.name == "sqlite":
        assert not any("plan_cache_mode" in statement for statement in sent), sent
        return
    assert in_force == ["auto"], (in_force, sent)
    with engine.connect() as connection:  # the pool's connections are back to planning afresh
        assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar_one() == "force_custom_plan"
