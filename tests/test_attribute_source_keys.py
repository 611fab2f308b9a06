"""The keys of ``attribute_sources`` (migration 0022, cdp.storage.key_triggers): checked, and their
deletes cascaded, by triggers instead of foreign keys — what the constraints did, on SQLite and
PostgreSQL — and on PostgreSQL an insert's keys once per statement: a batch file's set-wise insert
of its new people's sources probes profiles, datasets and batches a few times, not once a row and
key (three probes a source row before)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.storage.database import write_transaction
from cdp.storage.models import attribute_sources, datasets, ingestion_batches, profiles
from tests.key_checks import (  # noqa: F401 - postgresql: a fixture
    postgresql, key_refused, table_scans,
    new_batch, new_dataset, new_profiles,
)

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)
MISSING = 10**12


def _setup(engine, count: int) -> tuple[str, list[int], int, int, int]:
    """``count`` profiles, two datasets and a batch of the first in a new sandbox."""
    sandbox = f"sk-{uuid.uuid4().hex[:12]}"
    with write_transaction(engine) as connection:
        keys = new_profiles(connection, sandbox, count)
        crm, web = (new_dataset(connection, sandbox, name, "profile") for name in ("CRM", "Loyalty"))
        return sandbox, keys, crm, web, new_batch(connection, sandbox, crm)

def _source(profile_pk: int, path: str, dataset_pk: int, batch_pk: int | None = None) -> dict:
    return {"profile_pk": profile_pk, "path": path, "dataset_pk": dataset_pk, "value": "gold", "removed": False,
            "observed_at": NOW, "batch_pk": batch_pk, "request_id": None, "record_index": 0, "identities": None}


def test_source_keys_are_checked_and_deletes_cascade(migrated_engine):
    sandbox, (a, b), crm, web, batch = _setup(migrated_engine, 2)
    insert = attribute_sources.insert()
    for bad in (_source(MISSING, "loyalty.tier", crm), _source(a, "loyalty.tier", MISSING),
                _source(a, "loyalty.tier", crm, MISSING)):
        key_refused(migrated_engine, lambda c, bad=bad: c.execute(insert, [_source(a, "person.first_name", crm), bad]))
    with write_transaction(migrated_engine) as connection:
        connection.execute(insert, [_source(a, "loyalty.tier", crm, batch), _source(a, "loyalty.tier", web),
                                    _source(b, "loyalty.tier", crm, batch), _source(b, "person.first_name", web)])
    # an update that changes a key checks it (a merge moving sources to the survivor)
    key_refused(migrated_engine, lambda c: c.execute(attribute_sources.update().where(
        attribute_sources.c.profile_pk == a).values(profile_pk=MISSING)))
    key_refused(migrated_engine, lambda c: c.execute(attribute_sources.update().where(
        attribute_sources.c.profile_pk == a).values(batch_pk=MISSING)))
    with write_transaction(migrated_engine) as connection:  # a key left as it was is not a new key
        connection.execute(attribute_sources.update().where(attribute_sources.c.profile_pk == b)
                           .values(profile_pk=b, value="silver"))

    def stored():
        with migrated_engine.connect() as connection:
            return sorted(connection.execute(sa.select(
                attribute_sources.c.profile_pk, attribute_sources.c.path, attribute_sources.c.dataset_pk,
                attribute_sources.c.batch_pk).where(attribute_sources.c.profile_pk.in_([a, b]))).all())
    assert stored() == sorted([(a, "loyalty.tier", crm, batch), (a, "loyalty.tier", web, None),
                               (b, "loyalty.tier", crm, batch), (b, "person.first_name", web, None)])
    with write_transaction(migrated_engine) as connection:
        connection.execute(ingestion_batches.delete().where(ingestion_batches.c.pk == batch))
    assert stored() == sorted([(a, "loyalty.tier", crm, None), (a, "loyalty.tier", web, None),
                               (b, "loyalty.tier", crm, None), (b, "person.first_name", web, None)])  # SET NULL
    with write_transaction(migrated_engine) as connection:
        connection.execute(datasets.delete().where(datasets.c.pk == web))
    assert stored() == [(a, "loyalty.tier", crm, None), (b, "loyalty.tier", crm, None)]  # CASCADE
    with write_transaction(migrated_engine) as connection:
        connection.execute(profiles.delete().where(profiles.c.pk == a))
    assert stored() == [(b, "loyalty.tier", crm, None)]  # CASCADE
    with write_transaction(migrated_engine) as connection:
        connection.execute(datasets.delete().where(datasets.c.pk == crm))
    assert stored() == []


def test_no_foreign_key_is_left_on_attribute_sources(migrated_engine):
    assert sa.inspect(migrated_engine).get_foreign_keys("attribute_sources") == []


def test_postgresql_checks_a_source_insert_s_keys_once_per_statement(postgresql):
    """The staging path's shape: one INSERT … SELECT of 400 sources for 50 profiles, one dataset,
    one batch. Foreign keys: 400 probes each of profiles, datasets and batches."""
    sandbox, keys, crm, _web, batch = _setup(postgresql, 50)
    tables = ("profiles", "datasets", "ingestion_batches")
    with postgresql.connect() as reader:
        before = {table: table_scans(reader, table) for table in tables}
        with write_transaction(postgresql) as connection:
            connection.execute(sa.text(
                "INSERT INTO attribute_sources (profile_pk, path, dataset_pk, value, removed, observed_at, batch_pk) "
                "SELECT p.pk, 'a' || g, :dataset, '1'::jsonb, false, :now, :batch "
                "FROM unnest(CAST(:keys AS bigint[])) AS p(pk) CROSS JOIN generate_series(1, 8) AS g"),
                {"dataset": crm, "batch": batch, "now": NOW, "keys": keys})
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        after = {table: table_scans(reader, table) for table in tables}
        assert reader.execute(sa.select(sa.func.count()).select_from(attribute_sources).where(
            attribute_sources.c.profile_pk.in_(keys))).scalar_one() == 400
    assert after["profiles"] - before["profiles"] <= 50 + 5, (before, after)
    assert after["datasets"] - before["datasets"] <= 5, (before, after)
    assert after["ingestion_batches"] - before["ingestion_batches"] <= 5, (before, after)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_downgrade_gives_the_source_keys_back(backend, request, sqlite_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade
    from tests.test_migration_0018 import _downgrade

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    try:
        upgrade(engine)
        _downgrade(engine, "0021")
        assert sorted((fk["constrained_columns"][0], fk["referred_table"], fk["options"].get("ondelete"))
                      for fk in sa.inspect(engine).get_foreign_keys("attribute_sources")) == [
            ("batch_pk", "ingestion_batches", "SET NULL"), ("dataset_pk", "datasets", "CASCADE"),
            ("profile_pk", "profiles", "CASCADE")]
        _sandbox, (a,), crm, _web, _batch = _setup(engine, 1)
        with write_transaction(engine) as connection:  # no trigger is left to fire
            connection.execute(attribute_sources.insert(), [_source(a, "loyalty.tier", crm)])
            connection.execute(profiles.delete().where(profiles.c.pk == a))
        upgrade(engine)
        assert sa.inspect(engine).get_foreign_keys("attribute_sources") == []
    finally:
        engine.dispose()
