"""A timed streaming segment saved while a due wave's transaction is open (issue 15).

Saving makes every profile due for the new segment (``segment_due_saved``, migration 0023); a
wave consumes such a row and evaluates the segments saved since. On PostgreSQL a wave's
transaction reads its plan once, and a save can commit after that read but before the wave
consumes a profile's row (each statement sees what is committed when it starts): the wave must
then evaluate the new segment with a plan that holds it, or the profile is left without the
segment's first instant (a member that should leave when the window passes would stay). On
SQLite the save waits for the wave's write lock; the same test checks that the end state is the
same there.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa

from cdp.segments.due import run_due
from cdp.segments.streaming import StreamingEvaluator
from cdp.storage.database import write_transaction
from cdp.storage.models import profiles, segment_due_saved
from tests.api.conftest import create_dataset
from tests.api.test_segments_streaming import (SARAH_EMAIL, T0, _due, _ingest, _iso, _members, _outbox,
                                               _segment, clock)  # noqa: F401 - clock is a fixture

OTHER = {"namespace": "email", "id": "other@example.com"}


def _pk(api, engine, identity: dict) -> int:
    external = api.get("/v1/profiles/lookup", params=identity).json()["id"]
    with engine.connect() as connection:
        return connection.execute(sa.select(profiles.c.pk).where(profiles.c.external_id == external)).scalar_one()


def test_a_segment_saved_during_a_wave_gets_its_first_instant(api, engine, sandbox, clock):
    web = create_dataset(api, "event", "Web")
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(T0 - timedelta(hours=1)), "channel": "web",
        "order": {"id": "o-1", "total": 52.0}}}])
    _ingest(api, web, [{"identities": [OTHER], "event": {
        "id": "w-1", "type": "login", "timestamp": _iso(T0 - timedelta(hours=1)), "channel": "web"}}])
    _segment(api, "gold", 'loyalty.tier = "gold"')  # the sandbox has a plan, with no timed segment
    sarah, other = _pk(api, engine, SARAH_EMAIL), _pk(api, engine, OTHER)
    saved: list = []

    def save() -> None:
        saved.append(_segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours'))

    saver = threading.Thread(target=save)
    with write_transaction(engine) as connection:
        evaluator = StreamingEvaluator(connection, sandbox=sandbox)
        evaluator.due(other, T0)  # the wave's transaction has read the sandbox's plan (no recent-buyers)
        saver.start()
        # PostgreSQL: the save commits now, its rows due at T0; SQLite: it waits for this transaction
        saver.join(timeout=60 if engine.dialect.name == "postgresql" else 1)
        evaluator.due(sarah, T0)
    saver.join(timeout=60)
    assert not saver.is_alive() and saved[0]["size"] == 1
    while run_due(lambda: write_transaction(engine), now=T0):
        pass
    # Sarah's purchase leaves the 3-hour window at T0 + 2 h: that instant is stored for her, and
    # no saved row is left behind
    assert _due(engine, sandbox) == [T0 + timedelta(hours=2)]
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(segment_due_saved)
                                  .where(segment_due_saved.c.sandbox == sandbox)).scalar_one() == 0
    while run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=2, seconds=1)):
        pass
    assert _members(api, "recent-buyers") == []
    sarah_id = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["id"]
    assert [(k, s) for k, p, s, *_ in _outbox(engine, sandbox) if p == sarah_id] == [
        ("recent-buyers", "entered"), ("recent-buyers", "exited")]
