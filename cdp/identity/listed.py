"""Statements over a list of keys sent as ONE parameter, straight to the driver.

SQLAlchemy's expanding ``IN`` renders a placeholder per value and processes each on every call,
and a Core statement built per call is compiled again: on the identity graph's hot path (a
request of 500 records runs a dozen such statements) that measured several times what the
database spent running them (bench/RESULTS.md, issue 16). Here the list travels as one JSON text
on SQLite (``IN (SELECT value FROM json_each(?))``: one probe of the column's index per value)
and as one array on PostgreSQL (``= ANY(%s)``: an index scan per value), and each statement's text
is made once per dialect.

A statement is written with ``{list}`` where a list goes (``WHERE pk {list}``) and ``?`` for any
other parameter; :func:`run` fills them in, in order, for the connection's dialect.

On PostgreSQL a list of ONE value is sent as a plain ``= %s`` (a text of its own, prepared on its
own): a single-record request's statements then compare a key column with one value, which every
plan answers with one probe of the key's index. ``= ANY(%s)`` of a parameter is estimated at ten
values, and a plan PostgreSQL caches for it (``plan_cache_mode = auto``: the ingest requests,
cdp/ingestion/writer.py) was measured scanning every event of the dataset for the one event id
(``Bitmap Heap Scan … Filter: event_id = ANY($2)``, 1,300 rows for 1) while the tables had no
statistics yet (bench/RESULTS.md, session 11).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from cdp.storage.driver import array_literal, driver  # array_literal: also listed.array_literal (its callers)


@dataclass(frozen=True)
class Many:
    """A list parameter: ``values`` of the PostgreSQL type ``cast``."""

    values: Sequence[Any]
    cast: str = "bigint"


@functools.lru_cache(maxsize=256)
def _text(sql: str, dialect: str, casts: tuple[tuple[str, bool], ...]) -> str:
    if dialect == "sqlite":
        return sql.replace("{list}", "IN (SELECT value FROM json_each(?))")
    for cast, one in casts:
        sql = sql.replace("{list}", f"= ?::{cast}" if one else f"= ANY(?::{cast}[])", 1)
    # psycopg's placeholder is %s (a literal % would have to be written %%: none of ours has one)
    return sql.replace("?", "%s")


def _one(dialect: str, parameter: Many) -> bool:
    """Whether the list goes as one plain value (PostgreSQL, exactly one value)."""
    return dialect == "postgresql" and len(parameter.values) == 1


def _value(dialect: str, parameter: Any) -> Any:
    if not isinstance(parameter, Many):
        return parameter
    if dialect == "sqlite":
        return json.dumps(list(parameter.values), ensure_ascii=False, separators=(",", ":"))
    if _one(dialect, parameter):
        value = parameter.values[0]
        return value if value.__class__ is int else str(value)
    return array_literal(parameter.values)


def run(connection: sa.Connection, sql: str, *parameters: Any) -> sa.CursorResult:
    """Execute ``sql`` with ``parameters`` in order: a :class:`Many` for each ``{list}``, a value
    for each ``?``."""
    dialect = connection.dialect.name
    casts = tuple((p.cast, _one(dialect, p)) for p in parameters if isinstance(p, Many))
    return connection.exec_driver_sql(_text(sql, dialect, casts), tuple(_value(dialect, p) for p in parameters))


def rows(connection: sa.Connection, sql: str, *parameters: Any) -> list[tuple]:
    """:func:`run`'s rows as tuples, the statement run on the DBAPI cursor
    (cdp/storage/driver.py): for the hot path's statements whose rows are read by position."""
    dialect = connection.dialect.name
    casts = tuple((p.cast, _one(dialect, p)) for p in parameters if isinstance(p, Many))
    return driver(connection, _text(sql, dialect, casts), tuple(_value(dialect, p) for p in parameters), rows=True)


def keys(values: Iterable[int]) -> Many:
    """A list of keys (bigint)."""
    return Many(list(values))
