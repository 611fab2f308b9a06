"""The delivery loop's wakes: every ingest request wakes it, and a stream of requests must not
cost one cycle (~1 ms of CPU, three reads) per request — wakes close together share a cycle —
while a lone wake is still served at once."""

from __future__ import annotations

import time

import pytest

from cdp.activation.settings import ActivationSettings
from cdp.activation.worker import DeliveryWorker
from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'cdp.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _cycles_for_a_stream_of_wakes(engine, coalesce: float, seconds: float = 0.6) -> int:
    # polling far apart: every cycle counted here was started by a wake
    worker = DeliveryWorker(engine, settings=ActivationSettings(poll_seconds=30, wake_coalesce_seconds=coalesce))
    worker.start()
    try:
        time.sleep(0.2)  # the first cycle, at start
        before = worker.cycles
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            worker.wake()
            time.sleep(0.002)
        time.sleep(coalesce + 0.2)  # the last wake's cycle
        return worker.cycles - before
    finally:
        worker.stop()


def test_wakes_close_together_share_a_cycle(engine):
    coalesced = _cycles_for_a_stream_of_wakes(engine, coalesce=0.1)
    assert 1 <= coalesced <= 0.6 / 0.1 + 2
    # without coalescing the same stream runs a cycle per wake or so: what the setting saves
    assert _cycles_for_a_stream_of_wakes(engine, coalesce=0) > 3 * coalesced


def test_a_lone_wake_is_served_at_once(engine):
    worker = DeliveryWorker(engine, settings=ActivationSettings(poll_seconds=30, wake_coalesce_seconds=0.5))
    worker.start()
    try:
        time.sleep(0.7)  # idle for longer than the coalescing interval
        before = worker.cycles
        worker.wake()
        deadline = time.monotonic() + 0.3  # well under the 0.5 s interval and the 30 s poll
        while worker.cycles == before and time.monotonic() < deadline:
            time.sleep(0.005)
        assert worker.cycles == before + 1
    finally:
        worker.stop()


def test_a_cycle_with_nothing_subscribed_is_one_read(engine):
    """No active activation and no open delivery (a service ingesting with nothing subscribed):
    a cycle is one read, not the outbox horizon, the activations and the open destinations (the
    cycles with activations: tests/api/test_activation*.py through the service's loop)."""
    from sqlalchemy import event

    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    worker = DeliveryWorker(engine)
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert worker._cycle() == []
        assert worker._cycle() == []
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 2
