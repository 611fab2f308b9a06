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
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class Many:
    """A list parameter: ``values`` of the PostgreSQL type ``cast``."""

    values: Sequence[Any]
    cast: str = "bigint"


@functools.lru_cache(maxsize=256)
def _text(sql: str, dialect: str, casts: tuple[str, ...]) -> str:
    if dialect == "sqlite":
        return sql.replace("{list}", "IN (SELECT value FROM json_each(?))")
    for cast in casts:
        sql = sql.replace("{list}", f"= ANY(?::{cast}[])", 1)
    # psycopg's placeholder is %s (a literal % would have to be written %%: none of ours has one)
    return sql.replace("?", "%s")


def _value(dialect: str, parameter: Any) -> Any:
    if not isinstance(parameter, Many):
        return parameter
    if dialect == "sqlite":
        return json.dumps(list(parameter.values), ensure_ascii=False, separators=(",", ":"))
    return array_literal(parameter.values)


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (``{1,2}``; text quoted, backslash and double quote escaped),
    sent as one text and parsed by the server in C: psycopg dumps a list parameter element by
    element in Python (cProfile of the identity stream on PostgreSQL: the largest Python cost of
    the graph's statements, 496 lists for 10,000 records)."""
    return "{" + ",".join(str(v) if v.__class__ is int else
                          '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def run(connection: sa.Connection, sql: str, *parameters: Any) -> sa.CursorResult:
    """Execute ``sql`` with ``parameters`` in order: a :class:`Many` for each ``{list}``, a value
    for each ``?``."""
    dialect = connection.dialect.name
    casts = tuple(p.cast for p in parameters if isinstance(p, Many))
    return connection.exec_driver_sql(_text(sql, dialect, casts), tuple(_value(dialect, p) for p in parameters))


def keys(values: Iterable[int]) -> Many:
    """A list of keys (bigint)."""
    return Many(list(values))
