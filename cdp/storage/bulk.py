"""Bulk writes of the ingestion hot path, straight to the driver's ``executemany``.

SQLAlchemy processes every parameter of every row in Python (type processors, dict lookups), which
for the set-wise writes of ingestion (thousands of rows per chunk) cost several times what the
database spends on them. These few statements are written once per dialect, their values are
prepared here the way the column types store them (datetimes as UTC — SQLite's text form —, JSON
as text on SQLite and ``Jsonb`` on PostgreSQL) and sent as tuples. Each function's SQL matches the
Core statement it replaces (tests/test_storage_bulk.py compares what both write).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timezone
from typing import Any

import sqlalchemy as sa

from cdp.storage.database import sqlite_text


def _placeholders(dialect: str, count: int) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    return ", ".join([mark] * count)


def _document(dialect: str):
    if dialect == "sqlite":
        return lambda value: json.dumps(value)
    from psycopg.types.json import Jsonb

    return Jsonb


def _instant(dialect: str):
    if dialect == "sqlite":
        return lambda value: None if value is None else sqlite_text(value)
    return lambda value: None if value is None else value.astimezone(timezone.utc)


_SOURCE_COLUMNS = ("profile_pk", "path", "dataset_pk", "value", "removed", "observed_at", "batch_pk", "request_id",
                   "record_index")


def upsert_attribute_sources(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (profile_pk, path, dataset_pk) DO UPDATE unless the stored word is newer
    (rows: one per key)."""
    dialect = connection.dialect.name
    document, instant = _document(dialect), _instant(dialect)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _SOURCE_COLUMNS[3:])
    sql = (f"INSERT INTO attribute_sources ({', '.join(_SOURCE_COLUMNS)}) VALUES "
           f"({_placeholders(dialect, len(_SOURCE_COLUMNS))}) ON CONFLICT (profile_pk, path, dataset_pk) DO UPDATE "
           f"SET {updates} WHERE excluded.observed_at >= attribute_sources.observed_at")
    connection.exec_driver_sql(sql, [
        (r["profile_pk"], r["path"], r["dataset_pk"], document(r["value"]), bool(r["removed"]),
         instant(r["observed_at"]), r["batch_pk"], r["request_id"], r["record_index"]) for r in rows])


def claim_identities(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT (sandbox, namespace, value) DO NOTHING; returns how many were inserted."""
    dialect = connection.dialect.name
    instant = _instant(dialect)
    sql = (f"INSERT INTO identities (sandbox, profile_pk, namespace, value, first_seen, last_seen) VALUES "
           f"({_placeholders(dialect, 6)}) ON CONFLICT (sandbox, namespace, value) DO NOTHING")
    result = connection.exec_driver_sql(sql, [
        (r["sandbox"], r["profile_pk"], r["namespace"], r["value"], instant(r["first_seen"]),
         instant(r["last_seen"])) for r in rows])
    return result.rowcount


def insert_events(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    dialect = connection.dialect.name
    document, instant = _document(dialect), _instant(dialect)
    sql = (f"INSERT INTO events (profile_pk, event_id, type, ts, fields, dataset_pk) VALUES "
           f"({_placeholders(dialect, 6)})")
    connection.exec_driver_sql(sql, [
        (r["profile_pk"], r["event_id"], r["type"], instant(r["ts"]), document(r["fields"]), r["dataset_pk"])
        for r in rows])
