"""The SQL backend: a checked tree → one SQLAlchemy Core query over the storage schema.

One visitor says what every SQL database shares (``base.SqlCompiler``); one small class per
dialect overrides only what differs (``sqlite.py``, ``postgresql.py``): a ``TRANSFORMS`` entry for
a simple mapping, a method for a real difference. ``DIALECTS`` names them, and
``SqlCompiler(dialect, as_of, …)`` gives the dialect's compiler. A function's SQL forms
live in its registry record (cdp/functions), keyed by dialect name with a "default".
docs/backends.md says how to add a dialect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

import sqlalchemy as sa

from cdp.dsl import ast, check
from cdp.engine.sql.base import DIALECTS, SqlCompiler
from cdp.engine.sql.segment_references import MAX_SEGMENT_DEPTH, MAX_SEGMENT_REFERENCES
from cdp.engine.sql.duckdb import DuckDBCompiler
# every dialect module, imported so that it registers itself in DIALECTS
from cdp.engine.sql.postgresql import PostgreSQLCompiler
from cdp.engine.sql.spark import SparkCompiler
from cdp.engine.sql.sqlite import MAX_SQLITE_SEGMENT_COPIES, SQLiteCompiler
from cdp.engine.support import require_support
from cdp.schema import Schema, luma_schema


def members_query(text_or_tree: str | ast.Node, *, dialect: str, as_of: datetime, sandbox: str = "prod",
                  schema: Schema | None = None, segments: Mapping[str, str] | None = None) -> sa.Select:
    """SELECT the external ids of qualifying profiles, in load order."""
    schema = schema or luma_schema()
    catalogue = dict(segments or {})
    if isinstance(text_or_tree, ast.Node) and text_or_tree.type is not None:
        typed = text_or_tree
    else:
        typed = check(text_or_tree, schema, segments=catalogue or None)
    require_support(typed, dialect, catalogue)  # before anything runs: never a database error
    compiler = SqlCompiler(dialect, as_of, schema=schema, segments=catalogue, sandbox=sandbox)
    condition = compiler.compile(typed)
    p = compiler.profile
    return (sa.select(p.c.external_id)
            .where(p.c.sandbox == sa.literal(sandbox, sa.String), condition)
            .order_by(p.c.pk))


def evaluate(connection: sa.Connection, text_or_tree: str | ast.Node, *, as_of: datetime, sandbox: str = "prod",
             schema: Schema | None = None, segments: Mapping[str, str] | None = None) -> list[str]:
    query = members_query(text_or_tree, dialect=connection.dialect.name, as_of=as_of, sandbox=sandbox,
                          schema=schema, segments=segments)
    return [row[0] for row in connection.execute(query)]


__all__ = ["DIALECTS", "DuckDBCompiler", "MAX_SEGMENT_DEPTH", "MAX_SEGMENT_REFERENCES", "MAX_SQLITE_SEGMENT_COPIES",
           "PostgreSQLCompiler", "SQLiteCompiler", "SparkCompiler", "SqlCompiler", "evaluate", "members_query"]
