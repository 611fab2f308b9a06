"""The server is killed (SIGKILL) while a wave of scheduled re-evaluations is being applied, on
SQLite and on PostgreSQL: memberships that change with time alone (a purchase leaving a 3-hour
window, a cart dated ahead entering one) come due for many profiles at one instant ``T``, the
due job (cdp/segments/due.py ``run_due``, here every second: CDP_SEGMENT_DUE_EVERY_SECONDS) re-evaluates them in short
transactions of a few profiles each (each profile's work whole within one), and the kill lands once
part of the wave has committed and part has not.

On the database as the kill left it, every profile is either wholly done (its memberships are a
batch evaluation's after ``T``, its due rows up to ``T`` consumed, each change in the outbox once)
or wholly pending (its memberships a batch evaluation's before ``T``, its due rows still there, no
outbox row of the wave) — both kinds present, so the kill did land mid-wave. After a restart the
pending ones are resumed: no due row up to ``T`` is left, every membership equals a batch
evaluation, and each (segment, profile) has exactly the outbox rows of its changes.

What it would catch: due rows consumed apart from the memberships they lead to (a wave that
takes its rows first and evaluates after: done-but-unchanged profiles, never resumed); outbox rows
written outside the membership's transaction (missing or doubled changes); a resumed wave that
re-emits what was already applied (a doubled entry or exit); a profile's due rows split between
waves (the wave reads at most 1,000 rows) and only some of their segments evaluated — this test
found that one (see also the last test below, which splits a profile's rows deterministically).
Checked by breaking it on purpose: with the wave's rows deleted in a transaction of their own
before the profiles are evaluated, the test fails at the kill ("done" profiles with their old
memberships).

The real clock moves time (``cdp serve`` takes no injected one): the events, uploaded as a batch
file while the streaming segments exist, are dated so that the instant ``T`` comes after they are
all applied.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tests.api.test_batch_crash import _until
from tests.api.test_segments_streaming import clock  # noqa: F401 - the service's clock, injected
from tests.api.test_server import KEY, Server, _environment

SEGMENTS = {
    "recent-buyers": 'exists event where type = "purchase" within last 3 hours',
    "new-carts": 'exists event where type = "addToCart" within last 3 hours',
    "buyers-not-carting": 'in segment "recent-buyers" and not in segment "new-carts"',
}
# Profiles per backend: enough that a wave takes seconds on the loaded 2-core machine (several
# milliseconds a profile), few enough that the batch file is applied well before T.
PROFILES = {"sqlite": 1500, "postgresql": 1000}
INGEST_BUDGETS = (12, 50)  # seconds from the upload to T, tried in turn; past the last, the test fails saying so
DUE_EVERY_SECOND = {"CDP_SEGMENT_DUE_EVERY_SECONDS": "1"}  # the due job's interval (default 30 s)


MAPPING = {"cookie": "identity.ecid", "event_id": "id", "kind": "type", "at": "timestamp"}


def _csv(count: int, at: datetime) -> bytes:
    """Three kinds of people: a purchase 3 h before T (exits at T), a cart dated T (enters at T:
    an event counts from its timestamp on), both (exits one, enters the other, and leaves
    buyers-not-carting)."""
    lines = ["cookie,event_id,kind,at"]
    for n in range(count):
        if n % 3 in (0, 2):
            lines.append(f"p-{n:05d},buy-{n},purchase,{(at - timedelta(hours=3)).isoformat()}")
        if n % 3 in (1, 2):
            lines.append(f"p-{n:05d},cart-{n},addToCart,{at.isoformat()}")
    return ("\n".join(lines) + "\n").encode()


def _pending(connection: sa.Connection, at: datetime) -> set[int]:
    """Profiles with a re-evaluation due by ``at`` still to do."""
    from cdp.storage.models import segment_due

    return set(connection.execute(sa.select(segment_due.c.profile_pk).where(segment_due.c.due_at <= at)
                                  .distinct()).scalars())


def _state(engine: sa.Engine, before: datetime, after: datetime, at: datetime) -> dict:
    """What the database holds: per profile its members, its outbox history, its pending due
    rows; and the batch evaluations before and after ``at``."""
    from cdp.dsl import check
    from cdp.engine import sql
    from cdp.storage.models import membership_changes, memberships, profiles, segments

    with engine.connect() as connection:
        pks = dict(connection.execute(sa.select(profiles.c.external_id, profiles.c.pk)).all())
        members: dict[str, set[str]] = {key: set() for key in SEGMENTS}
        for key, external_id in connection.execute(
                sa.select(segments.c.key, profiles.c.external_id)
                .join(memberships, memberships.c.segment_pk == segments.c.pk)
                .join(profiles, profiles.c.pk == memberships.c.profile_pk)
                .where(memberships.c.status.in_(["realized", "existing"]))):
            members[key].add(external_id)
        batch = {when: {key: set(sql.evaluate(connection, check(text, segments=SEGMENTS), as_of=as_of,
                                              segments=SEGMENTS)) for key, text in SEGMENTS.items()}
                 for when, as_of in (("before", before), ("after", after))}
        history: dict[tuple[str, str], list[str]] = {}
        for row in connection.execute(sa.select(membership_changes.c.segment_key, membership_changes.c.profile_id,
                                                membership_changes.c.status).order_by(membership_changes.c.pk)):
            history.setdefault((row.segment_key, row.profile_id), []).append(row.status)
        pending = _pending(connection, at)
    return {"pks": pks, "members": members, "batch": batch, "history": history, "pending": pending}


def _expected_history(state: dict, profile_id: str, key: str, done: bool) -> list[str]:
    """Entered at ingestion when a member before T; then, once its re-evaluation is done, the
    one change T made (if any)."""
    was = profile_id in state["batch"]["before"][key]
    now = profile_id in state["batch"]["after"][key]
    changes = ["entered"] if was else []
    if done and was != now:
        changes.append("entered" if now else "exited")
    return changes


def _check(state: dict) -> tuple[int, int]:
    """Every profile wholly done or wholly pending (see the module doc); returns (done, pending)."""
    done_count = pending_count = 0
    for profile_id, pk in state["pks"].items():
        done = pk not in state["pending"]
        done_count += done
        pending_count += not done
        reference = state["batch"]["after" if done else "before"]
        for key in SEGMENTS:
            is_member = profile_id in state["members"][key]
            assert is_member == (profile_id in reference[key]), (
                f"profile {profile_id} ({'done' if done else 'pending'}): {key} membership {is_member}, a batch "
                f"evaluation {'after' if done else 'before'} T says {not is_member}")
            assert state["history"].get((key, profile_id), []) == _expected_history(state, profile_id, key, done), (
                profile_id, key, done, state["history"].get((key, profile_id)))
    return done_count, pending_count


class _TooSlow(Exception):
    """The batch file was applied too close to T for this budget (a loaded machine)."""


def _ingest_a_wave(server: Server, backend: str, budget: float) -> tuple[datetime, int]:
    """Save the segments, upload the events with T ``budget`` seconds ahead and wait until they are
    applied; returns (T, the profiles due at T)."""
    [key] = KEY.findall(server.stderr)
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        dataset = client.post("/v1/datasets", json={"name": "Web events", "kind": "event"}).json()["id"]
        for segment_key, text in SEGMENTS.items():
            saved = client.post("/v1/segments", json={"key": segment_key, "name": segment_key,
                                                      "expression": text, "evaluation": "streaming"})
            assert saved.status_code == 201, saved.text
        # a batch file: the streaming segments are evaluated for each profile it changes,
        # and far faster than records over HTTP one request at a time
        started = datetime.now(timezone.utc)
        at = (started + timedelta(seconds=budget)).replace(microsecond=0)
        uploaded = client.post(f"/v1/datasets/{dataset}/batches", files={
            "file": ("events.csv", _csv(PROFILES[backend], at))}, data={"mapping": json.dumps(MAPPING)})
        assert uploaded.status_code == 202, uploaded.text[:500]
        try:
            batch = _until("the batch file applied", lambda: (lambda job: job if job["status"] in (
                "succeeded", "failed") else None)(client.get(f"/v1/batches/{uploaded.json()['id']}").json()),
                timeout=budget, every=0.2)
        except AssertionError as error:
            raise _TooSlow(str(error)) from error
        assert batch["status"] == "succeeded" and not batch.get("errors"), str(batch)[:1000]
    if datetime.now(timezone.utc) >= at - timedelta(seconds=2):
        raise _TooSlow(f"applied {(datetime.now(timezone.utc) - started).total_seconds():.0f} s after the upload")
    return at, PROFILES[backend]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_during_a_wave_of_due_reevaluations(backend, request, sqlite_url_factory, tmp_path):
    from cdp.storage.database import create_engine

    def new_url() -> str:
        return sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()

    # T comes INGEST_BUDGETS[i] seconds after the upload: the short budget first (a quiet machine
    # applies the file in a few seconds), on a fresh database with the longer one if the file was
    # not applied in time; the due job looks every second, so the wave starts right after T.
    for attempt, budget in enumerate(INGEST_BUDGETS):
        url = new_url()
        first = Server(url, tmp_path / f"first-{attempt}.log", env=_environment(url, **DUE_EVERY_SECOND))
        try:
            at, wave = _ingest_a_wave(first, backend, budget)
            break
        except _TooSlow as slow:
            first.stop()
            if attempt == len(INGEST_BUDGETS) - 1:
                pytest.fail(f"the batch file was not applied within {budget} s of its upload ({slow}): the "
                            "machine is too loaded for this test's timing")
        except BaseException:
            first.stop()
            raise
    engine = create_engine(url)
    try:
        try:
            before, after = at - timedelta(seconds=1), at + timedelta(seconds=1)
            with engine.connect() as connection:
                assert len(_pending(connection, after)) == wave, f"not {wave} profiles due at T"

            def mid_wave() -> bool:  # a quarter of the wave committed, some of it not yet
                with engine.connect() as connection:
                    left = len(_pending(connection, after))
                return 0 < left <= wave * 3 // 4

            _until("a wave of due re-evaluations a quarter done", mid_wave, timeout=INGEST_BUDGETS[-1] + 90,
                   every=0.005)
        except BaseException:
            first.stop()
            raise
        first.kill()

        # as the kill left it: every profile wholly done or wholly pending, and both kinds there
        killed = _state(engine, before, datetime.now(timezone.utc), after)
        done, pending = _check(killed)
        assert done >= wave // 4 and pending >= 1, (done, pending)

        second = Server(url, tmp_path / "second.log", env=_environment(url, **DUE_EVERY_SECOND))
        try:
            def resumed() -> bool:
                with engine.connect() as connection:
                    return not _pending(connection, after)

            _until("the pending re-evaluations resumed after the restart", resumed, timeout=120, every=0.2)
        finally:
            second.stop()
        final = _state(engine, before, datetime.now(timezone.utc), after)
        done, pending = _check(final)
        assert (done, pending) == (wave, 0)
        # every kind of change happened: exits, entries, and a referencing segment's exit
        assert final["members"]["new-carts"] and not final["members"]["recent-buyers"] - final["batch"]["after"][
            "recent-buyers"]
        assert sum(h[-1:] == ["exited"] for h in final["history"].values()) >= wave // 3
        assert sum(h[-1:] == ["entered"] and len(h) == 1 for (k, _), h in final["history"].items()
                   if k == "new-carts") == len(final["batch"]["after"]["new-carts"])
        assert "Traceback" not in second.stderr, second.stderr[-3000:]
    finally:
        engine.dispose()


def test_one_instant_per_profile_and_its_wave_evaluates_all_its_timed_segments(api, engine, sandbox, clock):
    """One due row per profile (migration 0018), at the earliest of its timed segments' instants;
    a wave of one row (``limit=1``) re-evaluates all of them (before one row per segment, and a
    profile's rows could straddle two waves)."""
    from cdp.segments.due import run_due
    from cdp.storage.database import write_transaction
    from cdp.storage.models import segment_due
    from tests.api.conftest import create_dataset
    from tests.api.test_segments_streaming import T0, _iso, _members

    events = create_dataset(api, "event", "Web events")
    for key, text in SEGMENTS.items():
        assert api.post("/v1/segments", json={"key": key, "name": key, "expression": text,
                                              "evaluation": "streaming"}).status_code == 201
    answer = api.post(f"/v1/datasets/{events}/records", json={"records": [{
        "identities": [{"namespace": "ecid", "id": "straddler"}],
        "event": {"id": "buy-1", "type": "purchase", "timestamp": _iso(T0 - timedelta(hours=2))}}]})
    assert answer.json()["accepted"] == 1, answer.text
    assert len(_members(api, "buyers-not-carting")) == 1
    with engine.connect() as connection:
        rows = connection.execute(sa.select(segment_due.c.due_at).where(segment_due.c.sandbox == sandbox)).all()
    assert len(rows) == 1  # recent-buyers and buyers-not-carting, both at T0 + 1 h: one row for the profile
    later = T0 + timedelta(hours=1, seconds=1)
    waves = 0
    while run_due(lambda: write_transaction(engine), now=later, limit=1):
        waves += 1
    assert waves == 1  # the one row: both segments evaluated
    for key in ("recent-buyers", "buyers-not-carting"):
        assert [status for _, status in _members(api, key) if status != "exited"] == [], key
