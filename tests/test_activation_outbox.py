"""The outbox horizon on a real PostgreSQL: it never passes a number a running transaction may
still commit, and every gap seen at once settles together (not one settle period per gap)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.activation.outbox import Horizon
from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade
from cdp.storage.models import membership_changes


@pytest.fixture(scope="module")
def engine(postgres_url_factory):
    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    yield engine
    engine.dispose()


def _change(connection: sa.Connection) -> int:
    return connection.execute(membership_changes.insert().values(
        sandbox="prod", segment_pk=1, segment_key="s", profile_pk=1, profile_id="p", status="entered",
        at=datetime(2026, 12, 6, tzinfo=timezone.utc), source="streaming").returning(membership_changes.c.pk)
    ).scalar_one()


def _advance_until_it_moves(horizon: Horizon, engine: sa.Engine, stuck_at: int, within: float = 20.0) -> int:
    """The horizon advanced until it passes ``stuck_at`` (or ``within`` seconds go by): a gap's mark
    settles when the cluster's oldest running transaction is younger than it, and the test cluster
    is shared with the other pytest worker, whose transactions may hold it back a while — a
    conservative wait, which is the horizon's job. Returns where it stopped."""
    deadline = time.monotonic() + within
    while True:
        with engine.connect() as reader:
            at = horizon.advance(reader)
        if at != stuck_at or time.monotonic() > deadline:
            return at
        time.sleep(0.02)


def _top(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.coalesce(sa.func.max(membership_changes.c.pk), 0))).scalar_one()


def test_a_number_taken_by_a_running_transaction_holds_the_horizon_until_it_commits(engine):
    horizon = Horizon(settle_seconds=0.0)
    horizon.start(_top(engine))
    start = horizon.safe
    with engine.connect() as slow:
        slow_tx = slow.begin()
        first = _change(slow)  # takes the lower number, commits last
        with engine.begin() as fast:
            second = _change(fast)
        assert second > first
        for _ in range(3):
            with engine.connect() as reader:
                assert horizon.advance(reader) == start  # pk `first` may still appear
            time.sleep(0.05)
        slow_tx.commit()
    with engine.connect() as reader:
        horizon.advance(reader)  # notes the gap's mark anew if needed
    assert _advance_until_it_moves(horizon, engine, start) == second


def test_every_gap_seen_at_once_settles_within_one_settle_period(engine):
    horizon = Horizon(settle_seconds=0.3)
    horizon.start(_top(engine))
    committed = []
    for _ in range(6):  # numbers: committed, rolled back, committed, rolled back, …
        with engine.begin() as connection:
            committed.append(_change(connection))
        with engine.connect() as connection:
            connection.begin()
            _change(connection)
            connection.rollback()
    with engine.connect() as reader:
        assert horizon.advance(reader) == committed[0]  # the first gap: a mark is noted, not settled yet
    time.sleep(0.35)
    # One settle period passes every gap the mark covers: the horizon's first move goes all the way
    # (settling them one at a time would stop at committed[1] and take six periods in all)
    assert _advance_until_it_moves(horizon, engine, committed[0]) == committed[-1]


def test_a_running_transaction_above_the_snapshots_xmax_still_holds_the_horizon(engine):
    """A snapshot's xmax is one past the highest *completed* id: a transaction that took its id
    last and is still running sits at or above it. The horizon must not take xmax as "every
    transaction with an id is below it", or it passes that transaction's number and the row is
    never delivered."""
    horizon = Horizon(settle_seconds=0.0)
    horizon.start(_top(engine))
    start = horizon.safe
    with engine.connect() as early, engine.connect() as late:
        early_tx = early.begin()
        early.execute(sa.text("SELECT pg_current_xact_id()"))  # the lower id
        late_tx = late.begin()
        missing = _change(late)  # the lower number, under the higher id: still running
        seen = _change(early)
        early_tx.commit()  # the highest completed id is now below the running one
        for _ in range(3):
            with engine.connect() as reader:
                assert horizon.advance(reader) == start  # `missing` may still commit
        late_tx.commit()
    with engine.connect() as reader:
        horizon.advance(reader)
    assert _advance_until_it_moves(horizon, engine, start) == max(missing, seen)


def test_concurrent_writers_lose_no_row_to_the_horizon(engine):
    """Six writers hold numbers for random times, some roll back; a reader that reads only up to
    the horizon sees every committed row (a stress run; the snapshot-xmax bound skipped ~1 row in
    60 here)."""
    import random
    import threading

    horizon = Horizon(settle_seconds=0.05)
    horizon.start(_top(engine))
    first = horizon.safe
    stop = time.monotonic() + 6.0

    def write(seed: int) -> None:
        rnd = random.Random(seed)
        while time.monotonic() < stop:
            with engine.connect() as connection:
                transaction = connection.begin()
                if rnd.random() < 0.5:
                    connection.execute(sa.text("SELECT pg_current_xact_id()"))  # an id before the number
                for _ in range(rnd.randint(1, 3)):
                    _change(connection)
                    time.sleep(rnd.random() * 0.01)
                time.sleep(rnd.random() ** 4)
                transaction.rollback() if rnd.random() < 0.1 else transaction.commit()

    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(6)]
    for writer in writers:
        writer.start()
    read: set[int] = set()
    cursor = first
    while any(writer.is_alive() for writer in writers):
        with engine.connect() as connection:
            safe = horizon.advance(connection)
            read.update(connection.execute(sa.select(membership_changes.c.pk).where(
                membership_changes.c.pk > cursor, membership_changes.c.pk <= safe)).scalars())
        cursor = safe
        time.sleep(0.005)
    with engine.connect() as connection:
        committed = set(connection.execute(sa.select(membership_changes.c.pk).where(
            membership_changes.c.pk > first, membership_changes.c.pk <= cursor)).scalars())
    assert len(committed) > 50
    assert committed - read == set()
