"""Fixed statements run on the connection's DBAPI cursor, past SQLAlchemy's per-statement work.

:func:`driver` runs a fixed statement (its text and parameter forms written once, as
``exec_driver_sql`` takes them: it processes no parameter either) without the execution context,
result metadata and row objects SQLAlchemy builds around each — 15.6–21.3 µs a statement on SQLite
against sqlite3's own 2.0 µs (bench/RESULTS.md, session 15). Its users: streaming's read and
membership writes (cdp/storage/memberships.py) and the ingestion hot path (cdp/ingestion/writer.py,
cdp/identity/owners.py, cdp/storage/bulk.py, cdp/ingestion/config.py). :func:`array_literal` sends
a PostgreSQL list as one text parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa


def driver(connection: sa.Connection, sql: str, parameters: Any, *, many: bool = False,
           rows: bool = False) -> Any:
    """Run one of the fixed statements of this module (and streaming's read) on the connection's
    DBAPI cursor, past SQLAlchemy's per-statement work (~12 µs of Python a statement on SQLite,
    measured: its execution context, result metadata and row objects for statements whose text
    and parameter forms are fixed here). ``rows``: the fetched rows (tuples), else the cursor's
    ``rowcount``. Inside the connection's transaction only (else through ``exec_driver_sql``,
    which begins it); errors are SQLAlchemy's (its own handling of a statement's error: an
    IntegrityError stays one, so callers that tell a lost race from a failure keep working); the
    ``before_cursor_execute`` / ``after_cursor_execute`` listeners of the connection and its
    engine (the tests' and benches' statement counts) are called as SQLAlchemy calls them, with no
    execution context."""
    if not connection.in_transaction():
        result = connection.exec_driver_sql(sql, parameters)
        return [tuple(row) for row in result] if rows else result.rowcount
    cursor = connection.connection.cursor()
    observed = connection._has_events or connection.engine._has_events
    if observed:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, many)
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        answer = cursor.fetchall() if rows else cursor.rowcount
    except connection.dialect.loaded_dbapi.Error as error:
        # as SQLAlchemy handles its own statements' errors (SQLAlchemy 2.x): translated, and a
        # lost connection invalidated; it raises
        connection._handle_dbapi_exception(error, sql, parameters, cursor, None)
    cursor.close()
    if observed:
        connection.dispatch.after_cursor_execute(connection, cursor, sql, parameters, None, many)
    return answer


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (``{1,2}``; text quoted, backslash and double quote escaped),
    sent as one text parameter and cast by the statement: psycopg dumps a list parameter element by
    element in Python (~20 µs more a statement than one text, measured; cdp.identity.listed does
    the same for the identity graph)."""
    return "{" + ",".join(str(v) if v.__class__ is int else
                          '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
