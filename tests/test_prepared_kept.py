"""PostgreSQL: a pooled connection keeps its prepared statements when it is rolled back (every
reader's return to the pool), and forgets them after a schema change (cdp/storage/database.py,
keep_prepared_statements)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def engine(postgres_url_factory):
    from cdp.storage.database import create_engine

    engine = create_engine(postgres_url_factory())
    yield engine
    engine.dispose()


def _prepared(connection) -> list[str]:
    return connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()


def test_prepared_statements_outlive_rollbacks_but_not_a_schema_change(engine):
    with engine.connect() as connection:
        for n in range(7):  # psycopg prepares a statement at its fifth run
            assert connection.exec_driver_sql("SELECT %s::int + 1", (n,)).scalar_one() == n + 1
            connection.rollback()  # what returning a reader's connection to the pool does
        assert _prepared(connection) == ["SELECT $1::int + 1"]
        connection.rollback()
        connection.exec_driver_sql("CREATE TEMP TABLE kept_probe (a int)")
        connection.rollback()
        assert _prepared(connection) == []
        for n in range(7):  # and prepared again after it
            connection.exec_driver_sql("SELECT %s::int + 1", (n,)).scalar_one()
            connection.rollback()
        assert _prepared(connection) == ["SELECT $1::int + 1"]
