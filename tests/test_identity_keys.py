"""The keys of ``identities`` and ``identity_links`` (migration 0021): checked, and their deletes
cascaded, by triggers instead of foreign keys — what the constraints did, on SQLite and
PostgreSQL — and on PostgreSQL an insert's keys once per statement: 500 identities or links probe
the profiles' and identities' key indexes a few times, not once a row and key."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.storage.bulk import claim_identities, insert_links, upsert_links
from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, identities, identity_links, ingestion_batches, profiles
from tests.key_checks import (  # noqa: F401 - postgresql: a fixture
    a_write_racing_a_profile_delete, postgresql, key_refused, table_scans,
    new_batch, new_dataset, new_profiles,
)

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)
MISSING = 10**12


def _setup(engine, count: int) -> tuple[str, list[int], int, int]:
    """``count`` profiles, a dataset and a batch of it in a new sandbox."""
    sandbox = f"ik-{uuid.uuid4().hex[:12]}"
    with write_transaction(engine) as connection:
        keys = new_profiles(connection, sandbox, count)
        dataset = new_dataset(connection, sandbox, "Web", "event")
        return sandbox, keys, dataset, new_batch(connection, sandbox, dataset)

def _identity(sandbox: str, profile_pk: int, value: str) -> dict:
    return {"sandbox": sandbox, "profile_pk": profile_pk, "namespace": "email", "value": value,
            "first_seen": NOW, "last_seen": NOW}


def _link(sandbox: str, profile_pk: int, a_pk: int, b_pk: int, dataset_pk: int | None,
          batch_pk: int | None = None) -> dict:
    return {"sandbox": sandbox, "profile_pk": profile_pk, "a_pk": a_pk, "b_pk": b_pk, "first_seen": NOW,
            "last_seen": NOW, "seen_order": 0, "dataset_pk": dataset_pk, "batch_pk": batch_pk,
            "request_id": None, "record_index": 0, "removed_at": None, "removed_reason": None}


def _insert_identities(connection, rows: list[dict]) -> list[int]:
    keys: dict = {}
    claim_identities(connection, rows, keys)
    return [keys[(row["namespace"], row["value"])] for row in rows]


def test_keys_are_checked_and_deletes_cascade(migrated_engine):
    sandbox, (a, b), dataset, batch = _setup(migrated_engine, 2)
    # an identity's profile; a link's profile, identities, dataset and batch — by the bulk writers
    # ingestion uses (COPY and the upsert on PostgreSQL) and by plain Core statements
    key_refused(migrated_engine, lambda c: claim_identities(c, [_identity(sandbox, MISSING, "x@example.com")], {}))
    key_refused(migrated_engine, lambda c: c.execute(identities.insert(), [
        _identity(sandbox, a, "y@example.com"), _identity(sandbox, MISSING, "z@example.com")]))
    with write_transaction(migrated_engine) as connection:
        i1, i2, i3, i4 = _insert_identities(connection, [_identity(sandbox, a, f"{n}@example.com") for n in range(4)])
    for bad in (_link(sandbox, MISSING, i1, i2, dataset), _link(sandbox, a, MISSING, i2, dataset),
                _link(sandbox, a, i1, MISSING, dataset), _link(sandbox, a, i1, i2, MISSING),
                _link(sandbox, a, i1, i2, dataset, MISSING)):
        key_refused(migrated_engine, lambda c, bad=bad: insert_links(
            c, [_link(sandbox, a, i3, i4, dataset), bad]), driver_errors=True)  # COPY on PostgreSQL
        key_refused(migrated_engine, lambda c, bad=bad: upsert_links(c, [bad]))
    with write_transaction(migrated_engine) as connection:
        insert_links(connection, [_link(sandbox, a, i1, i2, dataset, batch), _link(sandbox, a, i1, i3, dataset)])
        upsert_links(connection, [_link(sandbox, a, i2, i3, None), _link(sandbox, a, i3, i4, dataset, batch)])
    # an update that changes a key checks it (a merge moving identities and links; a link seen again)
    key_refused(migrated_engine, lambda c: c.execute(identities.update().where(identities.c.pk == i1)
                                                     .values(profile_pk=MISSING)))
    key_refused(migrated_engine, lambda c: upsert_links(c, [_link(sandbox, a, i1, i2, MISSING)]))
    key_refused(migrated_engine, lambda c: c.execute(identity_links.update().where(identity_links.c.a_pk == i1)
                                                     .values(batch_pk=MISSING)))
    key_refused(migrated_engine, lambda c: c.execute(identity_links.update().where(identity_links.c.a_pk == i1,
                                                                                   identity_links.c.b_pk == i2)
                                                     .values(b_pk=MISSING)))
    with write_transaction(migrated_engine) as connection:  # moves to keys that exist
        connection.execute(identities.update().where(identities.c.pk.in_([i1, i2, i3])).values(profile_pk=b))
        connection.execute(identity_links.update().where(identity_links.c.a_pk.in_([i1, i2])).values(profile_pk=b))

    def stored():
        with migrated_engine.connect() as connection:
            return (sorted(connection.execute(sa.select(identities.c.pk, identities.c.profile_pk)
                                              .where(identities.c.sandbox == sandbox)).all()),
                    sorted(connection.execute(sa.select(identity_links.c.a_pk, identity_links.c.b_pk,
                                                        identity_links.c.profile_pk, identity_links.c.dataset_pk,
                                                        identity_links.c.batch_pk)
                                              .where(identity_links.c.sandbox == sandbox)).all()))
    assert stored() == ([(i1, b), (i2, b), (i3, b), (i4, a)],
                        [(i1, i2, b, dataset, batch), (i1, i3, b, dataset, None), (i2, i3, b, None, None),
                         (i3, i4, a, dataset, batch)])
    with write_transaction(migrated_engine) as connection:
        connection.execute(ingestion_batches.delete().where(ingestion_batches.c.pk == batch))
    assert stored()[1] == [(i1, i2, b, dataset, None), (i1, i3, b, dataset, None), (i2, i3, b, None, None),
                           (i3, i4, a, dataset, None)]  # ON DELETE SET NULL
    with write_transaction(migrated_engine) as connection:
        connection.execute(datasets.delete().where(datasets.c.pk == dataset))
    assert stored()[1] == [(i1, i2, b, None, None), (i1, i3, b, None, None), (i2, i3, b, None, None),
                           (i3, i4, a, None, None)]  # ON DELETE SET NULL
    with write_transaction(migrated_engine) as connection:  # an identity's links, by either end
        connection.execute(identities.delete().where(identities.c.pk == i3))
    assert stored() == ([(i1, b), (i2, b), (i4, a)], [(i1, i2, b, None, None)])
    with write_transaction(migrated_engine) as connection:  # a link of a's on b's identities: gone with a
        insert_links(connection, [_link(sandbox, a, i2, i4, None)])
        connection.execute(profiles.delete().where(profiles.c.pk == a))
    assert stored() == ([(i1, b), (i2, b)], [(i1, i2, b, None, None)])  # ON DELETE CASCADE
    with write_transaction(migrated_engine) as connection:
        connection.execute(profiles.delete().where(profiles.c.pk == b))
    assert stored() == ([], [])


def test_no_foreign_key_is_left_on_identities_and_links(migrated_engine):
    inspector = sa.inspect(migrated_engine)
    assert inspector.get_foreign_keys("identities") == []
    assert inspector.get_foreign_keys("identity_links") == []


def test_postgresql_checks_an_insert_s_keys_once_per_statement(postgresql):
    """A foreign key probes its table once a row and key; the triggers look a statement's distinct
    keys up together (PostgreSQL counts an index scan per key of ``= ANY(…)`` at most)."""
    sandbox, keys, dataset, batch = _setup(postgresql, 50)
    with postgresql.connect() as reader:
        before = {table: table_scans(reader, table) for table in ("profiles", "identities")}
        with write_transaction(postgresql) as connection:
            # one statement each, as ingestion writes them (cdp/storage/bulk.py: the claim, COPY):
            # 500 identities of 50 profiles; the 435 links between 30 of them
            pks = _insert_identities(connection, [_identity(sandbox, keys[n % 50], f"{n}@example.com")
                                                  for n in range(500)])
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        claimed = table_scans(reader, "identities")  # the claim's own probes (ON CONFLICT's) left out
        with write_transaction(postgresql) as connection:
            insert_links(connection, [_link(sandbox, keys[a % 50], pks[a], pks[b], dataset, batch)
                                      for a in range(30) for b in range(a + 1, 30)])
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        after = {table: table_scans(reader, table) for table in ("profiles", "identities")}
    # foreign keys: 500 + 435 probes of profiles, 870 of identities (one a row and key)
    assert after["profiles"] - before["profiles"] <= 2 * 50 + 10, (before, after)
    assert after["identities"] - claimed <= 2 * 30 + 10, (before, claimed, after)


def test_postgresql_an_identity_of_a_profile_deleted_meanwhile_is_a_key_violation(postgresql):
    """What ingestion's retry relies on (a lost race: 23503): the insert waits for the deleting
    transaction's lock and then finds the profile gone."""
    sandbox, (a,), _, _ = _setup(postgresql, 1)
    a_write_racing_a_profile_delete(postgresql, a, lambda connection: claim_identities(
        connection, [_identity(sandbox, a, "late@example.com")], {}))
    with postgresql.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(identities)
                                  .where(identities.c.sandbox == sandbox)).scalar_one() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_downgrade_gives_the_foreign_keys_back(backend, request, sqlite_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade
    from tests.test_migration_0018 import _downgrade

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    try:
        upgrade(engine)
        _downgrade(engine, "0020")
        inspector = sa.inspect(engine)
        assert sorted((fk["constrained_columns"][0], fk["referred_table"], fk["options"].get("ondelete"))
                      for table in ("identities", "identity_links") for fk in inspector.get_foreign_keys(table)) == [
            ("a_pk", "identities", "CASCADE"), ("b_pk", "identities", "CASCADE"),
            ("batch_pk", "ingestion_batches", "SET NULL"), ("dataset_pk", "datasets", "SET NULL"),
            ("profile_pk", "profiles", "CASCADE"), ("profile_pk", "profiles", "CASCADE")]
        sandbox, (a,), _, _ = _setup(engine, 1)
        with write_transaction(engine) as connection:  # no trigger is left to fire
            claim_identities(connection, [_identity(sandbox, a, "back@example.com")], {})
            connection.execute(profiles.delete().where(profiles.c.pk == a))
        upgrade(engine)
        assert sa.inspect(engine).get_foreign_keys("identity_links") == []
    finally:
        engine.dispose()
