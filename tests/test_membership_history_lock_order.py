"""PostgreSQL: a transaction writing SEVERAL profiles' membership changes (a request of several
records, a due wave) locks the hour's ``segment_history`` rows it shares with concurrent writers in
one order — (hour, segment) — whatever segments each profile changed: its profiles' history
deltas are summed and moved once, at the end (cdp/storage/memberships.py ``write_profile(moves=…)``
and ``move_history``; cdp/segments/streaming.py ``StreamingEvaluator.profiles_changed``).

Each profile's write locking its own segments' rows (main before this change) locked them in
statement order, not transaction order: writer A's first profile took segment 2's row, B's took
segment 1's, then each one's next profile needed the other's (``deadlock detected … while locking
tuple … in relation "segment_history"`` — 645 deadlocks in 1,200 transactions of 3 profiles, 4
writers, 8 segments; the ingestion retries the victim, at the cost of a rollback and a retry).

Also: the deferred moves give the history rows the per-profile writes give (sizes, entries,
exits; first changes of the hour counted), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from cdp.storage.memberships import move_history, write_profile
from cdp.storage.models import profiles, sandboxes, segment_history, segments

T0 = datetime(2026, 12, 7, 10, 5, tzinfo=timezone.utc)
SEGMENTS = 8


def _setup(connection, sandbox: str, people: int) -> tuple[list[int], list[int]]:
    connection.execute(sandboxes.insert().values(name=sandbox, created_at=T0))
    segment_pks = [connection.execute(segments.insert().values(
        sandbox=sandbox, key=f"s{i}", name=f"s{i}", expression="true", canonical="true", status="active",
        evaluation="streaming", created_at=T0, updated_at=T0).returning(segments.c.pk)).scalar_one()
        for i in range(SEGMENTS)]
    profile_pks = [connection.execute(profiles.insert().values(
        sandbox=sandbox, external_id=f"p{i}", attributes={}, created_at=T0, updated_at=T0)
        .returning(profiles.c.pk)).scalar_one() for i in range(people)]
    return segment_pks, profile_pks


def _write_several(connection, sandbox: str, writes, now: datetime) -> None:
    """Several profiles' changes in the caller's transaction, as StreamingEvaluator.profiles_changed
    writes them."""
    moves: dict = {}
    for profile_pk, changes in writes:
        write_profile(connection, sandbox=sandbox, profile_pk=profile_pk, profile_id=str(profile_pk), now=now,
                      source="streaming", changes=changes, moves=moves)
    move_history(connection, moves)


@pytest.fixture
def pg_engine(postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    yield engine
    engine.dispose()


def test_concurrent_writers_of_several_profiles_do_not_deadlock(pg_engine):
    writers, transactions, per_transaction = 4, 150, 3
    with pg_engine.begin() as c:
        segment_pks, profile_pks = _setup(c, "locks", writers * 10)
        # the hour's rows exist (the hot case: every write moves them)
        c.execute(segment_history.insert(), [{"segment_pk": pk, "at": T0.replace(minute=0), "size": 0, "entered": 0,
                                              "exited": 0} for pk in segment_pks])
    deadlocks: list[BaseException] = []
    other: list[BaseException] = []
    stop = threading.Event()

    def writer(number: int) -> None:
        rng = random.Random(number)
        mine = profile_pks[number * 10:(number + 1) * 10]
        members: dict[int, set[int]] = {pk: set() for pk in mine}
        for _ in range(transactions):
            if stop.is_set():
                return
            writes = [(pk, [(s, f"s{s}", s not in members[pk]) for s in rng.sample(segment_pks, rng.randint(1, 4))])
                      for pk in sorted(rng.sample(mine, per_transaction))]
            try:
                with pg_engine.begin() as c:
                    c.exec_driver_sql("SET LOCAL deadlock_timeout = '100ms'")  # a cycle found sooner
                    _write_several(c, "locks", writes, T0)
            except sa.exc.DBAPIError as error:
                (deadlocks if getattr(error.orig, "sqlstate", None) == "40P01" else other).append(error)
                stop.set()
                return
            for pk, changes in writes:
                for s, _, entered in changes:
                    (members[pk].add if entered else members[pk].discard)(s)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not other, other
    with pg_engine.connect() as c:
        # the server's count too (it may lag: a backend reports its statistics when idle)
        counted = c.exec_driver_sql("SELECT deadlocks FROM pg_stat_database "
                                    "WHERE datname = current_database()").scalar()
        history = {row.segment_pk: row for row in c.execute(sa.select(segment_history))}
        sizes = dict(c.exec_driver_sql("SELECT segment_pk, count(*) FROM memberships WHERE status IN "
                                       "('realized', 'existing') GROUP BY segment_pk").all())
        outbox = {row[0]: row[1:] for row in c.exec_driver_sql(
            "SELECT segment_pk, count(*) FILTER (WHERE status = 'entered'), count(*) FILTER (WHERE status = 'exited') "
            "FROM membership_changes GROUP BY segment_pk")}
    assert not deadlocks and not counted, f"{len(deadlocks)} deadlock(s) caught, {counted} counted: {deadlocks[:1]}"
    for pk in segment_pks:  # the hour's row: every entry and exit of the outbox, and the members
        assert (history[pk].entered, history[pk].exited) == outbox.get(pk, (0, 0))
        assert history[pk].size == sizes.get(pk, 0)


def test_deferred_moves_give_the_history_of_per_profile_writes(migrated_engine):
    """The same writes, per profile and deferred, in two sandboxes: the same history rows."""
    rng = random.Random(7)
    name = f"defer-{migrated_engine.dialect.name}"
    with migrated_engine.begin() as c:
        plain, plain_profiles = _setup(c, name + "-a", 6)
        deferred, deferred_profiles = _setup(c, name + "-b", 6)
    members: dict[int, set[int]] = {i: set() for i in range(6)}
    for step in range(12):
        now = T0 + timedelta(minutes=25 * step)  # several hours, first changes of an hour among them
        writes = []
        for i in sorted(rng.sample(range(6), 3)):
            chosen = rng.sample(range(SEGMENTS), rng.randint(1, 4))
            writes.append((i, [(s, s not in members[i]) for s in sorted(chosen)]))
            for s in chosen:
                (members[i].discard if s in members[i] else members[i].add)(s)
        with migrated_engine.begin() as c:
            for i, changes in writes:
                write_profile(c, sandbox=name + "-a", profile_pk=plain_profiles[i], profile_id=f"p{i}", now=now,
                              source="streaming", changes=[(plain[s], f"s{s}", e) for s, e in changes])
            _write_several(c, name + "-b", [(deferred_profiles[i], [(deferred[s], f"s{s}", e) for s, e in changes])
                                            for i, changes in writes], now)

    def rows(segment_pks: list[int]) -> list[tuple]:
        with migrated_engine.connect() as c:
            found = c.execute(sa.select(segment_history).where(segment_history.c.segment_pk.in_(segment_pks))).all()
        return sorted((segment_pks.index(r.segment_pk), r.at, r.size, r.entered, r.exited) for r in found)

    assert rows(plain) == rows(deferred)
    assert len(rows(plain)) > SEGMENTS  # several hours


def test_the_streaming_evaluator_moves_several_profiles_history_once(migrated_engine):
    """StreamingEvaluator.profiles_changed: each profile's memberships and outbox rows written, the
    hour's history row moved by one statement for all of them (counted), the answers those of
    profile_changed."""
    from cdp.engine.sql.loading import load_documents
    from cdp.schema import luma_schema
    from cdp.segments import service
    from cdp.segments.models import Evaluation, SegmentCreate, SegmentStatus
    from cdp.segments.reads import Change
    from cdp.segments.streaming import StreamingEvaluator
    from cdp.storage.database import write_transaction
    from cdp.storage.models import membership_changes

    engine, schema = migrated_engine, luma_schema()
    sandbox = f"several-{engine.dialect.name}"
    saved = datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)
    now = saved + timedelta(hours=1)
    with write_transaction(engine) as connection:
        connection.execute(sandboxes.insert().values(name=sandbox, created_at=saved))
        load_documents(connection, [{"id": f"p{i}", "attributes": {"loyalty": {"tier": "gold", "points": 5}},
                                     "events": []} for i in range(3)], sandbox=sandbox, schema=schema)
        service.create_segment(connection=connection, sandbox=sandbox, schema=schema, as_of=saved, spec=SegmentCreate(
            key="gold", name="gold", expression='loyalty.tier = "gold"', status=SegmentStatus.active,
            evaluation=Evaluation.streaming))
        pks = connection.execute(sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox)
                                 .order_by(profiles.c.pk)).scalars().all()
        connection.execute(profiles.update().where(profiles.c.pk.in_(pks[:2])).values(
            attributes={"loyalty": {"tier": "silver", "points": 5}}))
    history_statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if "UPDATE segment_history" in statement:
            history_statements.append(statement)

    with write_transaction(engine) as connection:
        sa.event.listen(connection, "before_cursor_execute", seen)
        changed = StreamingEvaluator(connection, sandbox=sandbox).profiles_changed(
            [(pk, Change(attributes=frozenset({("loyalty", "tier")}))) for pk in reversed(pks)], now)
        sa.event.remove(connection, "before_cursor_execute", seen)
    assert changed == {pks[0]: {"gold": "exited"}, pks[1]: {"gold": "exited"}, pks[2]: {}}
    assert len(history_statements) == 1, history_statements  # per profile: one for each that changed
    with engine.connect() as c:
        segment_pk = c.execute(sa.select(segments.c.pk).where(segments.c.sandbox == sandbox)).scalar_one()
        hour = c.execute(sa.select(segment_history).where(segment_history.c.segment_pk == segment_pk,
                                                          segment_history.c.at == now.replace(minute=0))).one()
        exits = c.execute(sa.select(sa.func.count()).select_from(membership_changes).where(
            membership_changes.c.segment_pk == segment_pk, membership_changes.c.status == "exited")).scalar_one()
    assert (hour.size, hour.entered, hour.exited, exits) == (1, 0, 2, 2)
