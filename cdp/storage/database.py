"""Engines for the embedded default (SQLite) and PostgreSQL, set up the way the compiled SQL
expects: UTC sessions on PostgreSQL; on SQLite, foreign keys on and the language's functions
registered (cdp.engine.sqlite_functions).

Writers on SQLite: a transaction that reads before it writes cannot become a writer once another
writer has committed (WAL: ``SQLITE_BUSY_SNAPSHOT``, no waiting). So cdp begins its own
transactions (``isolation_level=None`` on the driver) and :func:`write_transaction` — or the
execution option ``sqlite_begin="IMMEDIATE"`` — takes the write lock at ``BEGIN``, waiting up to
``busy_timeout`` for other writers; readers never wait (WAL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str, **kwargs) -> sa.Engine:
    if url.startswith("postgresql"):
        # a request may hold two connections (its own, and a streamed record's transaction), and
        # the server runs up to 40 requests at once: room for all of them
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 80)
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        from cdp.engine.sqlite_functions import register

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_connection, _record):  # noqa: ANN001 - DBAPI connection
            register(dbapi_connection)
            dbapi_connection.isolation_level = None  # BEGIN is ours (see _sqlite_begin)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: sa.Connection) -> None:
            mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
            if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
                raise ValueError(f"sqlite_begin: {mode!r}")
            connection.exec_driver_sql(f"BEGIN {mode}")
    elif engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _postgres_setup(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")
            # psycopg prepares a statement run five times, and PostgreSQL may then keep a generic
            # plan made when a table was small — e.g. a sequential scan of identities, reused
            # while a batch grows it by a million rows in one transaction (no ANALYZE sees them):
            # measured 2.5 s per lookup. A plan per execution sizes the tables as they are now.
            cursor.execute("SET plan_cache_mode = force_custom_plan")
            # doubles as text are the shortest text that reads back the same (Python's repr): the
            # SQL engine takes a double's "decimal value as written" that way (round, %)
            cursor.execute("SET extra_float_digits = 1")
            cursor.close()
            dbapi_connection.commit()
    return engine


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that will write: committed at the end, rolled back on an
    exception. On SQLite it holds the write lock from its first statement (see the module doc)."""
    with engine.connect() as connection:
        connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            yield connection


def sqlite_text(value) -> str:
    """The text SQLite stores for a date or an aware datetime (SQLAlchemy's DateTime format)."""
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat()
