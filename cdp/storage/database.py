"""Engines for the embedded default (SQLite) and PostgreSQL, set up the way the compiled SQL
expects: UTC sessions on PostgreSQL; on SQLite, foreign keys on and the language's functions
registered (cdp.engine.sqlite_functions)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event


def create_engine(url: str, **kwargs) -> sa.Engine:
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        from cdp.engine.sqlite_functions import register

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_connection, _record):  # noqa: ANN001 - DBAPI connection
            register(dbapi_connection)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()
    elif engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _postgres_setup(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.close()
            dbapi_connection.commit()
    return engine


def sqlite_text(value) -> str:
    """The text SQLite stores for a date or an aware datetime (SQLAlchemy's DateTime format)."""
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat()
