"""Bulk writes of the ingestion hot path, straight to the driver.

SQLAlchemy processes every parameter of every row in Python (type processors, dict lookups), which
for the set-wise writes of ingestion (thousands of rows per chunk) cost several times what the
database spends on them. These few statements are written once per dialect and their values
prepared here the way the column types store them (datetimes in UTC — SQLite's text form —, JSON
as text). On SQLite they go through ``executemany`` (a loop in C); on PostgreSQL as ONE statement
over the rows sent as ONE JSON parameter (``jsonb_array_elements``) — psycopg's ``executemany``
runs a statement per row, which measured ~80 µs a row, and an array parameter per column is
dumped element by element in Python. Each function writes what the equivalent Core statement would
(tests/test_storage_bulk.py compares what both write).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from cdp.storage.database import sqlite_text
from cdp.storage.driver import driver


def _make_dumps() -> Callable[[Any], str]:
    """``json.dumps(value)`` (its defaults, its text) from ONE C encoder made here: ``json.dumps``
    builds a new encoder for every value, which measured ~60 % of encoding an event's fields and
    identities — two values a row, for every row of every write. No circular-reference check (the
    values are decoded JSON and engine values: trees): a cycle raises RecursionError instead of
    ValueError."""
    if json.encoder.c_make_encoder is None:  # no C speedups on this interpreter
        return json.dumps
    encode = json.encoder.c_make_encoder(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii,
                                         None, ": ", ", ", False, False, True)

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))
    return dumps


json_text = _make_dumps()


def _placeholders(count: int) -> str:
    return ", ".join(["?"] * count)


# a write stamps most rows with the same instant or two: each is converted once
_sqlite_text = functools.lru_cache(maxsize=256)(sqlite_text)


@functools.lru_cache(maxsize=256)
def _postgresql_text(value: datetime) -> str:
    """The ISO text of an instant in UTC, as the rows' JSON carried it (``_json_default`` wrote
    ``isoformat()`` of the UTC datetime) — made here, once per instant: most rows of a write share
    ``now``, and the JSON encoder then meets a string, not an object it calls back into Python
    for (cProfile, the identity stream on PostgreSQL: ~3 such calls a record)."""
    return value.astimezone(timezone.utc).isoformat()


def _instant(dialect: str):
    if dialect == "sqlite":
        return lambda value: None if value is None else _sqlite_text(value)
    return lambda value: None if value is None else _postgresql_text(value)


def _rows(columns: Sequence[tuple[str, str]]) -> str:
    """``SELECT (r->>0)::T AS a, … FROM jsonb_array_elements(%s::jsonb) AS r``: the rows travel as ONE
    JSON text (a list of lists), encoded by the json module in C and parsed once by PostgreSQL —
    an array parameter per column made psycopg dump every element in Python (measured: a fifth of
    a batch's time). A jsonb column takes its element as it is."""
    selected = ", ".join(f"r->{i}" if sql_type == "jsonb" else f"(r->>{i})::{sql_type}"
                         for i, (_, sql_type) in enumerate(columns))
    return f"SELECT {selected} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY n"


def _execute(connection: sa.Connection, sql_sqlite: str, sql_postgresql: str, rows: list[tuple]) -> int | None:
    """The rows written by one statement (cdp/storage/driver.py): the driver's row count."""
    if not rows:
        return None
    if connection.dialect.name == "sqlite":
        return driver(connection, sql_sqlite, rows, many=True)
    return driver(connection, sql_postgresql, (_json_rows(rows),))


def _json_rows(rows: list[tuple]) -> str:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _shared_json():
    """JSON text of values that many rows share (a record's identities, on each of its attribute
    source rows): encoded once per object during one call."""
    done: dict[int, str] = {}

    def dump(value: Any) -> str | None:
        if value is None:
            return None
        text = done.get(id(value))
        if text is None:
            text = done[id(value)] = json_text(value)
        return text
    return dump


def _document(dialect: str):
    """A JSON column's value as the statement takes it: text on SQLite; on PostgreSQL the value
    itself, inside the rows' JSON."""
    return json_text if dialect == "sqlite" else (lambda value: value)


_SOURCES = (("profile_pk", "bigint"), ("path", "varchar"), ("dataset_pk", "bigint"), ("value", "jsonb"),
            ("removed", "boolean"), ("observed_at", "timestamptz"), ("batch_pk", "bigint"),
            ("request_id", "varchar"), ("record_index", "integer"), ("identities", "jsonb"))
_SOURCE_NAMES = ", ".join(name for name, _ in _SOURCES)
_SOURCE_CONFLICT = ("ON CONFLICT (profile_pk, path, dataset_pk) DO UPDATE SET "
                    + ", ".join(f"{name} = excluded.{name}" for name, _ in _SOURCES[3:])
                    + " WHERE excluded.observed_at >= attribute_sources.observed_at")
_UPSERT_SOURCES = {
    "sqlite": f"INSERT INTO attribute_sources ({_SOURCE_NAMES}) VALUES ({_placeholders(len(_SOURCES))}) "
              f"{_SOURCE_CONFLICT}",
    "postgresql": f"INSERT INTO attribute_sources ({_SOURCE_NAMES}) {_rows(_SOURCES)} {_SOURCE_CONFLICT}",
}


def upsert_attribute_sources(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (profile_pk, path, dataset_pk) DO UPDATE unless the stored word is newer
    (rows: one per key)."""
    instant, document = _instant(connection.dialect.name), _document(connection.dialect.name)
    shared = _shared_json() if connection.dialect.name == "sqlite" else document
    _execute(connection, _UPSERT_SOURCES["sqlite"], _UPSERT_SOURCES["postgresql"], [
        (r["profile_pk"], r["path"], r["dataset_pk"], document(r["value"]), bool(r["removed"]),
         instant(r["observed_at"]), r["batch_pk"], r["request_id"], r["record_index"],
         shared(r.get("identities"))) for r in rows])


_INSERT_SOURCES_SQLITE = f"INSERT INTO attribute_sources ({_SOURCE_NAMES}) VALUES ({_placeholders(len(_SOURCES))})"
_COPY_SOURCES = f"COPY attribute_sources ({_SOURCE_NAMES}) FROM STDIN"


def insert_attribute_sources(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Plain INSERT of source rows no stored row can conflict with — those of profiles this
    transaction made, invisible to every other writer (one row per key): ``executemany`` on SQLite,
    ``COPY … FROM STDIN`` on PostgreSQL (the upsert's speculative insertion measured ~70 µs a row
    on this machine, COPY a few)."""
    if not rows:
        return
    shared = _shared_json()
    if connection.dialect.name == "sqlite":
        instant = _instant("sqlite")
        driver(connection, _INSERT_SOURCES_SQLITE, [
            (r["profile_pk"], r["path"], r["dataset_pk"], json_text(r["value"]), bool(r["removed"]),
             instant(r["observed_at"]), r["batch_pk"], r["request_id"], r["record_index"],
             shared(r.get("identities"))) for r in rows], many=True)
        return
    instant = _instant("postgresql")
    dbapi = connection.connection.driver_connection  # the same connection, in the same transaction
    with dbapi.cursor() as cursor, cursor.copy(_COPY_SOURCES) as copy:
        for r in rows:
            copy.write_row((r["profile_pk"], r["path"], r["dataset_pk"], json_text(r["value"]), bool(r["removed"]),
                            instant(r["observed_at"]), r["batch_pk"], r["request_id"], r["record_index"],
                            shared(r.get("identities"))))


_IDENTITIES = (("sandbox", "varchar"), ("profile_pk", "bigint"), ("namespace", "varchar"), ("value", "varchar"),
               ("first_seen", "timestamptz"), ("last_seen", "timestamptz"))
_IDENTITY_NAMES = ", ".join(name for name, _ in _IDENTITIES)
_CLAIM = {
    "sqlite": f"INSERT INTO identities ({_IDENTITY_NAMES}) VALUES ({_placeholders(len(_IDENTITIES))}) "
              f"ON CONFLICT (sandbox, namespace, value) DO NOTHING",
    "postgresql": f"INSERT INTO identities ({_IDENTITY_NAMES}) {_rows(_IDENTITIES)} "
                  f"ON CONFLICT (sandbox, namespace, value) DO NOTHING",
}


_IDENTITIES_PER_INSERT = 1000  # 6 parameters a row on SQLite: far below its 32,766


def claim_identities(connection: sa.Connection, rows: Sequence[dict[str, Any]],
                     keys: dict[tuple[str, str], int] | None = None) -> int:
    """INSERT … ON CONFLICT (sandbox, namespace, value) DO NOTHING, in the rows' order; returns how
    many were inserted. ``keys``: filled with the inserted identities' keys by (namespace, value)
    (RETURNING: only the rows inserted, not those already there)."""
    instant = _instant(connection.dialect.name)
    values = [(r["sandbox"], r["profile_pk"], r["namespace"], r["value"], instant(r["first_seen"]),
               instant(r["last_seen"])) for r in rows]
    if keys is None or not values:
        result = _execute(connection, _CLAIM["sqlite"], _CLAIM["postgresql"], values)
        return 0 if result is None else result
    if connection.dialect.name == "sqlite":  # RETURNING in one multi-row statement per chunk (one
        # statement, not three: the highest key before, an executemany and a read of the rows above it)
        count = 0
        for start in range(0, len(values), _IDENTITIES_PER_INSERT):
            chunk = values[start:start + _IDENTITIES_PER_INSERT]
            sql = (f"INSERT INTO identities ({_IDENTITY_NAMES}) VALUES "
                   + ", ".join([f"({_placeholders(len(_IDENTITIES))})"] * len(chunk))
                   + " ON CONFLICT (sandbox, namespace, value) DO NOTHING RETURNING pk, namespace, value")
            returned = driver(connection, sql, tuple(v for row in chunk for v in row), rows=True)
            keys.update(((namespace, value), pk) for pk, namespace, value in returned)
            count += len(returned)
        return count
    returned = driver(connection, _CLAIM["postgresql"] + " RETURNING pk, namespace, value", (_json_rows(values),),
                      rows=True)
    keys.update(((namespace, value), pk) for pk, namespace, value in returned)
    return len(returned)


_EVENTS = (("profile_pk", "bigint"), ("event_id", "varchar"), ("type", "varchar"), ("ts", "timestamptz"),
           ("fields", "jsonb"), ("dataset_pk", "bigint"), ("identities", "jsonb"))
_EVENT_NAMES = ", ".join(name for name, _ in _EVENTS)
_INSERT_EVENTS = {
    "sqlite": f"INSERT INTO events ({_EVENT_NAMES}) VALUES ({_placeholders(len(_EVENTS))})",
    "postgresql": f"INSERT INTO events ({_EVENT_NAMES}) {_rows(_EVENTS)}",
}


def insert_events(connection: sa.Connection, rows: Sequence[dict[str, Any]], *,
                  first: tuple[str, str, tuple] | None = None) -> None:
    """``first`` (PostgreSQL): a data-modifying CTE run before the insert, in the same statement —
    (its ``WITH …`` text, a condition on it that makes the insert wait for it, its parameters)."""
    instant, document = _instant(connection.dialect.name), _document(connection.dialect.name)
    values = [(r["profile_pk"], r["event_id"], r["type"], instant(r["ts"]), document(r["fields"]), r["dataset_pk"],
               document(r.get("identities"))) for r in rows]
    if first is None or not values:
        _execute(connection, _INSERT_EVENTS["sqlite"], _INSERT_EVENTS["postgresql"], values)
        return
    cte, condition, parameters = first
    sql = _INSERT_EVENTS["postgresql"].replace(" ORDER BY n", f" WHERE {condition} ORDER BY n")
    driver(connection, f"{cte} {sql}", (*parameters, _json_rows(values)))


_PROFILE_COLUMNS = (("sandbox", "varchar"), ("external_id", "varchar"), ("attributes", "jsonb"),
                    ("created_at", "timestamptz"), ("updated_at", "timestamptz"))
_PROFILE_NAMES = ", ".join(name for name, _ in _PROFILE_COLUMNS)
_PROFILES_PER_INSERT = 1000  # 5 parameters a row on SQLite: far below its 32,766


def insert_profiles(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """INSERT the profiles, RETURNING their keys in the rows' order (matched by external id, which
    is unique in a sandbox: neither database promises RETURNING's order)."""
    if not rows:
        return []
    instant, document = _instant(connection.dialect.name), _document(connection.dialect.name)
    values = [(r["sandbox"], r["external_id"], document(r["attributes"]), instant(r["created_at"]),
               instant(r["updated_at"])) for r in rows]
    keys: dict[str, int] = {}
    if connection.dialect.name == "sqlite":
        for start in range(0, len(values), _PROFILES_PER_INSERT):
            chunk = values[start:start + _PROFILES_PER_INSERT]
            sql = (f"INSERT INTO profiles ({_PROFILE_NAMES}) VALUES "
                   + ", ".join([f"({_placeholders(len(_PROFILE_COLUMNS))})"] * len(chunk))
                   + " RETURNING pk, external_id")
            keys.update((external_id, pk) for pk, external_id in driver(
                connection, sql, tuple(v for row in chunk for v in row), rows=True))
    else:
        sql = f"INSERT INTO profiles ({_PROFILE_NAMES}) {_rows(_PROFILE_COLUMNS)} RETURNING pk, external_id"
        keys.update((external_id, pk) for pk, external_id in driver(connection, sql, (_json_rows(values),),
                                                                       rows=True))
    return [keys[r["external_id"]] for r in rows]


_SET_ATTRIBUTES = {
    "sqlite": "UPDATE profiles SET attributes = ? WHERE pk = ?",
    # a statement per row (psycopg pipelines them): a join with the rows' JSON would let the planner
    # pick a scan of the whole table, sized by its estimate of 100 rows for the JSON
    "postgresql": "UPDATE profiles SET attributes = %s::jsonb WHERE pk = %s",
}


def set_profile_attributes(connection: sa.Connection, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """UPDATE profiles SET attributes = … WHERE pk = … for each (key, attributes) (one row per key)."""
    if rows:
        driver(connection, _SET_ATTRIBUTES[connection.dialect.name],
               [(json_text(attributes), pk) for pk, attributes in rows], many=True)


_LINKS = (("sandbox", "varchar"), ("profile_pk", "bigint"), ("a_pk", "bigint"), ("b_pk", "bigint"),
          ("first_seen", "timestamptz"), ("last_seen", "timestamptz"), ("seen_order", "integer"),
          ("dataset_pk", "bigint"), ("batch_pk", "bigint"), ("request_id", "varchar"), ("record_index", "integer"),
          ("removed_at", "timestamptz"), ("removed_reason", "text"))
_LINK_NAMES = ", ".join(name for name, _ in _LINKS)
_LINK_CONFLICT = ("ON CONFLICT (a_pk, b_pk) DO UPDATE SET "
                  + ", ".join(f"{name} = excluded.{name}" for name, _ in _LINKS if name not in (
                      "sandbox", "a_pk", "b_pk", "first_seen")))
_UPSERT_LINKS = {
    "sqlite": f"INSERT INTO identity_links ({_LINK_NAMES}) VALUES ({_placeholders(len(_LINKS))}) {_LINK_CONFLICT}",
    "postgresql": f"INSERT INTO identity_links ({_LINK_NAMES}) {_rows(_LINKS)} {_LINK_CONFLICT}",
}


def upsert_links(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (a_pk, b_pk) DO UPDATE: a link seen again takes the new time, record,
    profile and state (one row per key; sent in key order, one order for every writer)."""
    instant = _instant(connection.dialect.name)
    _execute(connection, _UPSERT_LINKS["sqlite"], _UPSERT_LINKS["postgresql"], [
        (r["sandbox"], r["profile_pk"], r["a_pk"], r["b_pk"], instant(r["first_seen"]), instant(r["last_seen"]),
         r["seen_order"], r["dataset_pk"], r["batch_pk"], r["request_id"], r["record_index"],
         instant(r.get("removed_at")), r.get("removed_reason"))
        for r in sorted(rows, key=lambda row: (row["a_pk"], row["b_pk"]))])


_INSERT_LINKS_SQLITE = f"INSERT INTO identity_links ({_LINK_NAMES}) VALUES ({_placeholders(len(_LINKS))})"
_COPY_LINKS = f"COPY identity_links ({_LINK_NAMES}) FROM STDIN"


def insert_links(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Plain INSERT of links no stored link can conflict with (one of their identities was inserted
    by this transaction): ``executemany`` on SQLite, ``COPY … FROM STDIN`` on PostgreSQL."""
    if not rows:
        return
    instant = _instant(connection.dialect.name)
    values = [(r["sandbox"], r["profile_pk"], r["a_pk"], r["b_pk"], instant(r["first_seen"]), instant(r["last_seen"]),
               r["seen_order"], r["dataset_pk"], r["batch_pk"], r["request_id"], r["record_index"],
               instant(r.get("removed_at")), r.get("removed_reason")) for r in rows]
    if connection.dialect.name == "sqlite":
        driver(connection, _INSERT_LINKS_SQLITE, values, many=True)
        return
    dbapi = connection.connection.driver_connection  # the same connection, in the same transaction
    with dbapi.cursor() as cursor, cursor.copy(_COPY_LINKS) as copy:
        for row in values:
            copy.write_row(row)
