"""The keys of ``events`` (migration 0019): ``profile_pk`` and ``dataset_pk`` are checked, and
their deletes cascaded, by triggers instead of foreign keys — what the constraints did, on SQLite
and PostgreSQL — and on PostgreSQL once per statement: a 500-event insert probes the profiles'
key index a few times, not once a row (a foreign key's check is one query per row and key)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.storage.bulk import insert_events
from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, events, profiles
from tests.key_checks import (  # noqa: F401 - postgresql: a fixture
    a_write_racing_a_profile_delete, postgresql, key_refused, table_scans,
    new_dataset, new_profiles,
)

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)


def _profiles_and_dataset(engine, count: int) -> tuple[list[int], int]:
    sandbox = f"ek-{uuid.uuid4().hex[:12]}"
    with write_transaction(engine) as connection:
        return new_profiles(connection, sandbox, count), new_dataset(connection, sandbox, "Web", "event")

def _event(profile_pk: int, dataset_pk: int | None, n: int) -> dict:
    return {"profile_pk": profile_pk, "event_id": f"e{n}", "type": "pageView", "ts": NOW, "fields": {},
            "dataset_pk": dataset_pk, "identities": None}


def test_keys_are_checked_and_deletes_cascade(migrated_engine):
    (a, b), dataset = _profiles_and_dataset(migrated_engine, 2)
    missing = 10**12
    key_refused(migrated_engine, lambda c: c.execute(events.insert(), [_event(a, dataset, 1),
                                                                      _event(missing, dataset, 2)]))
    key_refused(migrated_engine, lambda c: c.execute(events.insert(), [_event(a, dataset, 1), _event(b, missing, 2)]))
    with write_transaction(migrated_engine) as connection:
        connection.execute(events.insert(), [_event(a, dataset, 1), _event(b, dataset, 2), _event(b, None, 3)])
    key_refused(migrated_engine, lambda c: c.execute(events.update().where(events.c.profile_pk == a)
                                                  .values(profile_pk=missing)))
    key_refused(migrated_engine, lambda c: c.execute(events.update().where(events.c.profile_pk == a)
                                                  .values(dataset_pk=missing)))
    with write_transaction(migrated_engine) as connection:  # a move between profiles that exist
        connection.execute(events.update().where(events.c.profile_pk == a).values(profile_pk=b))
        connection.execute(events.update().where(events.c.event_id == "e2").values(profile_pk=a))

    def stored():
        with migrated_engine.connect() as connection:
            return sorted(connection.execute(sa.select(events.c.event_id, events.c.profile_pk, events.c.dataset_pk)
                                             .where(events.c.profile_pk.in_([a, b]))).all())
    assert stored() == [("e1", b, dataset), ("e2", a, dataset), ("e3", b, None)]
    with write_transaction(migrated_engine) as connection:
        connection.execute(datasets.delete().where(datasets.c.pk == dataset))
    assert stored() == [("e1", b, None), ("e2", a, None), ("e3", b, None)]  # ON DELETE SET NULL
    with write_transaction(migrated_engine) as connection:
        connection.execute(profiles.delete().where(profiles.c.pk == b))
    assert stored() == [("e2", a, None)]  # ON DELETE CASCADE
    with migrated_engine.connect() as connection:
        assert connection.execute(sa.select(profiles.c.event_count).where(profiles.c.pk == a)).scalar_one() == 1


def test_no_foreign_key_is_left_on_events(migrated_engine):
    assert sa.inspect(migrated_engine).get_foreign_keys("events") == []


def test_postgresql_checks_an_insert_s_profiles_once_per_statement(postgresql):
    migrated_engine = postgresql
    keys, dataset = _profiles_and_dataset(migrated_engine, 50)

    with migrated_engine.connect() as reader:
        before = table_scans(reader, "profiles")
        with write_transaction(migrated_engine) as connection:
            # one statement, as ingestion writes them (cdp/storage/bulk.py)
            insert_events(connection, [_event(keys[n % 50], dataset, n) for n in range(500)])
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        after = table_scans(reader, "profiles")
    assert after - before <= 10, after - before  # a foreign key: 500 probes, one a row


def test_postgresql_an_insert_into_a_profile_deleted_meanwhile_is_a_key_violation(postgresql):
    """What ingestion's retry relies on (a lost race: 23503): the insert waits for the deleting
    transaction's lock and then finds the profile gone."""
    migrated_engine = postgresql
    (a,), dataset = _profiles_and_dataset(migrated_engine, 1)
    a_write_racing_a_profile_delete(migrated_engine, a, lambda connection: connection.execute(
        events.insert(), [_event(a, dataset, 1)]))
    with migrated_engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(events)
                                  .where(events.c.profile_pk == a)).scalar_one() == 0


def _own_scans(connection: sa.Connection, table: str) -> int:
    """Index and sequential scans of ``table`` by the connection's transaction so far."""
    return connection.exec_driver_sql(
        "SELECT coalesce(idx_scan, 0) + seq_scan FROM pg_stat_xact_user_tables WHERE relname = %s", (table,)
    ).scalar_one()


def test_postgresql_an_insert_into_one_profile_probes_it_once_and_checks_its_keys(postgresql):
    """Migration 0024: the events of ONE profile (a single-record request) are counted by one
    UPDATE of it, which also locks it and finds it — not a lock and then an update (two probes) —
    and the keys are checked as before: a missing profile or dataset refused (23503), datasets of
    several or none checked too."""
    migrated_engine = postgresql
    sandbox = f"ek-{uuid.uuid4().hex[:12]}"
    with write_transaction(migrated_engine) as connection:
        (a, b), dataset = new_profiles(connection, sandbox, 2), new_dataset(connection, sandbox, "Web", "event")
    with write_transaction(migrated_engine) as connection:
        # generic plans: a custom plan's estimate may probe the key index itself (the extremes of
        # a column with statistics), which would count here
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        # this transaction's own scans (pg_stat_xact_user_tables): the cluster-wide counters also
        # took the scans of other pooled connections, flushed whenever their backends chose
        before = _own_scans(connection, "profiles")
        insert_events(connection, [_event(a, dataset, n) for n in range(3)])
        after = _own_scans(connection, "profiles")
    assert after - before == 1, after - before  # 0020: 2 (the PERFORM … FOR NO KEY UPDATE, then the UPDATE)
    missing = 10**12
    key_refused(migrated_engine, lambda c: insert_events(c, [_event(missing, dataset, 10)]))
    key_refused(migrated_engine, lambda c: insert_events(c, [_event(a, missing, 11)]))
    key_refused(migrated_engine, lambda c: insert_events(c, [_event(a, dataset, 12), _event(a, missing, 13)]))
    with write_transaction(migrated_engine) as connection:
        other = new_dataset(connection, f"ek-{uuid.uuid4().hex[:12]}", "Other", "event")
        insert_events(connection, [_event(b, dataset, 20), _event(b, other, 21), _event(b, None, 22)])
        insert_events(connection, [_event(b, None, 23)])
    with migrated_engine.connect() as connection:
        counts = dict(connection.execute(sa.select(profiles.c.pk, profiles.c.event_count)
                                         .where(profiles.c.pk.in_([a, b]))).all())
    assert counts == {a: 3, b: 4}


def test_postgresql_0024_downgrades_to_0020s_counter_and_back(postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade
    from tests.test_migration_0018 import _downgrade

    engine = create_engine(postgres_url_factory())

    def counter() -> str:
        with engine.connect() as connection:
            return connection.exec_driver_sql("SELECT prosrc FROM pg_proc WHERE proname = 'cdp_event_count_insert'"
                                              ).scalar_one()
    try:
        upgrade(engine)
        assert "INTO low, high, total" in counter()
        _downgrade(engine, "0023")
        assert "INTO low, high, total" not in counter() and "pk = wanted[1] FOR NO KEY UPDATE" in counter()
        (a,), dataset = _profiles_and_dataset(engine, 1)
        with write_transaction(engine) as connection:
            insert_events(connection, [_event(a, dataset, 1), _event(a, dataset, 2)])
        upgrade(engine)
        with write_transaction(engine) as connection:
            insert_events(connection, [_event(a, dataset, 3)])
        with engine.connect() as connection:
            assert connection.execute(sa.select(profiles.c.event_count).where(profiles.c.pk == a)).scalar_one() == 3
    finally:
        engine.dispose()
