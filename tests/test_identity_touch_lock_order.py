"""PostgreSQL: marking identities seen (cdp/identity/owners.py ``mark_seen``) locks them in key
order, whatever order the plan meets them in — so two writers touching the same identities never
deadlock (8 clients of single records did, every few thousand requests, each deadlock costing
``deadlock_timeout`` = 1 s to the request it stalled).

The case made here: identity ``a`` (the lower key) lies after ``b`` in the heap (an update moved
it), the plan is a heap scan (what a small table gets), and another writer holds ``a`` and will
next update ``b`` — as a writer that locks in key order does. A touch that locks in heap order
would hold ``b`` and wait for ``a``: a cycle PostgreSQL breaks only after deadlock_timeout."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from cdp.identity.owners import mark_seen
from cdp.storage.models import identities, profiles, sandboxes



@pytest.fixture
def engine(postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    yield engine
    engine.dispose()


def _two_identities_in_reverse_heap_order(engine: sa.Engine, then: datetime) -> tuple[int, int]:
    with engine.begin() as c:
        c.execute(sandboxes.insert().values(name="touch", created_at=then))
        profile = c.execute(profiles.insert().values(sandbox="touch", external_id="p-touch", attributes={},
                                                     created_at=then, updated_at=then)
                            .returning(profiles.c.pk)).scalar_one()
        a, b = (c.execute(identities.insert().values(sandbox="touch", profile_pk=profile, namespace="ecid",
                                                     value=value, first_seen=then, last_seen=then)
                          .returning(identities.c.pk)).scalar_one() for value in ("a", "b"))
    with engine.begin() as c:  # a's newest version now lies after b's in the page
        c.execute(identities.update().where(identities.c.pk == a).values(last_seen=then))
    with engine.connect() as c:
        order = c.exec_driver_sql("SELECT pk FROM identities ORDER BY ctid").scalars().all()
    assert a < b and order == [b, a], order
    return a, b


def _waiting_for_a_lock(engine: sa.Engine, pid: int) -> bool:
    with engine.connect() as c:
        return c.exec_driver_sql("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                                 (pid,)).scalar() is True


def test_two_writers_touching_the_same_identities_do_not_deadlock(engine):
    then = datetime(2026, 12, 1, tzinfo=timezone.utc)
    now = then + timedelta(days=1)
    a, b = _two_identities_in_reverse_heap_order(engine, then)
    toucher_pid: list[int] = []
    toucher_error: list[BaseException] = []

    def toucher() -> None:
        try:
            with engine.begin() as c:
                toucher_pid.append(c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
                # the plan a small table gets: the rows met in heap order (b, then a)
                c.exec_driver_sql("SET LOCAL enable_indexscan = off")
                c.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
                c.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
                mark_seen(c, [a, b], now)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            toucher_error.append(exc)

    with engine.connect() as holder:
        holding = holder.begin()
        holder.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
        holder.exec_driver_sql("SELECT pk FROM identities WHERE pk = %s FOR NO KEY UPDATE", (a,)).all()
        thread = threading.Thread(target=toucher)
        thread.start()
        deadline = time.monotonic() + 20
        while not (toucher_pid and _waiting_for_a_lock(engine, toucher_pid[0])):
            assert thread.is_alive() and time.monotonic() < deadline, toucher_error or "the toucher never waited"
            time.sleep(0.02)
        started = time.monotonic()
        # the holder's next row, in key order: b — free, unless the toucher took it out of order
        holder.execute(identities.update().where(identities.c.pk == b).values(last_seen=now))
        waited = time.monotonic() - started
        holding.commit()
    thread.join(30)
    assert not toucher_error, toucher_error  # a deadlock: 40P01 in one of the two
    assert waited < 0.5, f"the holder waited {waited:.2f} s for b: the toucher locked it before a"
    with engine.connect() as c:
        seen = dict(c.execute(sa.select(identities.c.pk, identities.c.last_seen)).all())
    assert seen == {a: now, b: now}
