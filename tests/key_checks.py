"""What the tests of keys checked by triggers share (migrations 0019, 0021, 0022 —
tests/test_event_keys.py, test_identity_keys.py, test_attribute_source_keys.py): a migrated
PostgreSQL of the module's own, a table's scan count, a write refused for a missing key, and the
lost race a deleted profile gives a concurrent writer; and the rows their keys point at."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, ingestion_batches, profiles

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def postgresql(postgres_url_factory):
    """PostgreSQL alone: its foreign keys cost a query per row and key (SQLite's, a probe of the
    rowid), and only its writers run concurrently (SQLite's take turns)."""
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    yield engine
    engine.dispose()


def table_scans(connection: sa.Connection, table: str) -> int:
    """Index and sequential scans of ``table`` so far (PostgreSQL's statistics, read afresh)."""
    connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
    return connection.exec_driver_sql(
        "SELECT coalesce(idx_scan, 0) + seq_scan FROM pg_stat_user_tables WHERE relname = %s", (table,)).scalar_one()


def key_refused(engine: sa.Engine, write: Callable[[sa.Connection], object], *,
                              driver_errors: bool = False) -> BaseException:
    """``write`` in a transaction fails as the foreign key failed: SQLSTATE 23503 on PostgreSQL,
    SQLite's "FOREIGN KEY constraint failed". ``driver_errors``: on PostgreSQL the error may be the
    driver's own (COPY runs on the driver's cursor), not SQLAlchemy's IntegrityError."""
    with pytest.raises(Exception) as refused:  # noqa: PT011 - which one: checked below
        with write_transaction(engine) as connection:
            write(connection)
    error = getattr(refused.value, "orig", refused.value)
    if engine.dialect.name == "postgresql":
        if not driver_errors:
            assert isinstance(refused.value, sa.exc.IntegrityError), refused.value
        assert error.sqlstate == "23503", error  # foreign_key_violation, as the constraint raised
    else:
        assert isinstance(refused.value, sa.exc.IntegrityError), refused.value
        assert "FOREIGN KEY constraint failed" in str(error)
    return refused.value


def a_write_racing_a_profile_delete(engine: sa.Engine, profile_pk: int,
                                    write: Callable[[sa.Connection], object]) -> None:
    """What ingestion's retry relies on (a lost race: 23503): ``write`` for a profile that another
    transaction is deleting waits for that transaction's lock, then finds the profile gone."""
    errors: list[BaseException] = []
    deleting = engine.connect()
    transaction = deleting.begin()
    deleting.execute(profiles.delete().where(profiles.c.pk == profile_pk))

    def writer_thread() -> None:
        try:
            with write_transaction(engine) as connection:
                write(connection)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    writer = threading.Thread(target=writer_thread)
    writer.start()
    writer.join(0.5)
    assert writer.is_alive()  # waiting for the deleting transaction
    transaction.commit()
    deleting.close()
    writer.join(10)
    assert len(errors) == 1 and isinstance(errors[0], sa.exc.IntegrityError), errors
    assert errors[0].orig.sqlstate == "23503"


def new_profiles(connection: sa.Connection, sandbox: str, count: int) -> list[int]:
    """``count`` empty profiles of ``sandbox``; their keys."""
    return [connection.execute(profiles.insert().values(
        sandbox=sandbox, external_id=f"p{i}", attributes={}, created_at=NOW, updated_at=NOW)
        .returning(profiles.c.pk)).scalar_one() for i in range(count)]


def new_dataset(connection: sa.Connection, sandbox: str, name: str, kind: str) -> int:
    return connection.execute(datasets.insert().values(
        sandbox=sandbox, name=name, kind=kind, labels=[], field_labels={}, created_at=NOW,
        updated_at=NOW).returning(datasets.c.pk)).scalar_one()


def new_batch(connection: sa.Connection, sandbox: str, dataset_pk: int) -> int:
    """A succeeded batch of ``dataset_pk`` (a key for links and attribute sources to point at)."""
    return connection.execute(ingestion_batches.insert().values(
        sandbox=sandbox, dataset_pk=dataset_pk, status="succeeded", format="csv", file_sha256="0" * 64,
        error_threshold=0.0, total_rows=0, accepted_rows=0, rejected_rows=0, duplicate_rows=0,
        created_at=NOW).returning(ingestion_batches.c.pk)).scalar_one()
