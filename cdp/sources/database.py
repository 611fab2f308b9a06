"""A database source: a table or a read-only query of a database reached by a SQLAlchemy URL.

* Credentials: the password (from the URL or ``config.password``) is stored apart from the
  configuration (``sources.secrets``) and never returned; reads show the URL without it and
  ``password_set``.
* Reading: always in a read-only transaction (PostgreSQL ``SET TRANSACTION READ ONLY``; SQLite
  opened read-only), so a query cannot change the source database; a ``query`` must be one
  SELECT (or WITH … SELECT).
* Incremental runs: with ``cursor_column``, a run reads the rows whose cursor is past the end of
  the last *successful* run (its batch succeeded), in cursor order, at most ``max_rows_per_run``;
  rows whose cursor is null are never read. A failed run moves nothing forward, so the next run
  reads its rows again. Without a cursor column every run reads every row (profile records are
  set again; events are idempotent by id).
* A run's rows are written as JSON Lines and submitted as a batch (cdp/ingestion) with the
  source's mapping: validated, counted, applied in one transaction, per-row errors kept — exactly
  like a batch file. Row numbers in its errors are the order of the rows read (1 = first).
"""

from __future__ import annotations

import json
import re
import tempfile
from contextlib import contextmanager
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from cdp.errors import CdpError, Unprocessable
from cdp.sources.models import DatabaseConfig

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_SELECT = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
CONNECT_TIMEOUT_SECONDS = 10


class SourceUnavailable(CdpError):
    status, code = 422, "source_unavailable"


def split_secrets(config: DatabaseConfig, own_database: str | None = None) -> tuple[dict, dict]:
    """(the configuration as shown, the secrets): the password leaves the URL. ``own_database``:
    cdp's own URL, which a source may not read (it holds every sandbox's data)."""
    problems = []
    try:
        url = sa.engine.make_url(config.url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and ValueError
        raise Unprocessable(f"config.url: not a SQLAlchemy URL ({str(exc)[:200]})", code="invalid_source",
                            details={"errors": ["config.url: not a SQLAlchemy URL"]}) from None
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        problems.append(f"config.url: {url.get_backend_name()!r} databases are not supported here (postgresql, "
                        f"sqlite)")
    if same_database(url, own_database):
        problems.append("config.url: that is cdp's own database; a source reads another database (cdp's tables hold "
                        "every sandbox's data)")
    if (config.table is None) == (config.query is None):
        problems.append("config: give table or query (one of them)")
    if config.table is not None and not _IDENTIFIER.match(config.table):
        problems.append(f"config.table: {config.table[:100]!r} is not a table name (name or schema.name)")
    if config.query is not None:
        body = config.query.strip().rstrip(";")
        if not _SELECT.match(body) or ";" in body:
            problems.append("config.query: one SELECT statement (or WITH … SELECT), nothing else")
    if config.cursor_column is not None and not _IDENTIFIER.match(config.cursor_column):
        problems.append(f"config.cursor_column: {config.cursor_column[:100]!r} is not a column name")
    if problems:
        raise Unprocessable(problems[0], code="invalid_source", details={"errors": problems})
    password = url.password or config.password
    shown = config.model_dump(exclude={"password"})
    shown["url"] = url._replace(password=None).render_as_string(hide_password=False)
    return shown, ({"password": str(password)} if password else {})


def same_database(url: sa.URL, own: str | None) -> bool:
    """Whether ``url`` names cdp's own database (whose tables hold every sandbox's data)."""
    if not own:
        return False
    mine = sa.engine.make_url(own)
    if url.get_backend_name() != mine.get_backend_name():
        return False
    if url.get_backend_name() == "sqlite":
        from pathlib import Path

        theirs, ours = url.database or "", mine.database or ""
        return bool(theirs) and theirs not in (":memory:",) and Path(theirs).resolve() == Path(ours).resolve()
    return ((url.host or "localhost"), url.port or 5432, url.database) == \
        ((mine.host or "localhost"), mine.port or 5432, mine.database)


def _url(config: dict, secrets: dict) -> sa.URL:
    url = sa.engine.make_url(config["url"])
    if secrets.get("password"):
        url = url.set(password=secrets["password"])
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@contextmanager
def read_only(config: dict, secrets: dict):
    """A connection to the source database in a read-only transaction (rolled back at the end)."""
    from cdp.storage.database import create_engine

    url = _url(config, secrets)
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url.render_as_string(hide_password=False), read_only=True, poolclass=NullPool)
        else:
            engine = sa.create_engine(url, poolclass=NullPool,
                                      connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    except Exception as exc:  # noqa: BLE001 - a missing driver, a missing file
        raise SourceUnavailable(f"cannot open the source database: {_say(exc)}") from None
    try:
        try:
            connection = engine.connect()
        except Exception as exc:  # noqa: BLE001
            raise SourceUnavailable(f"cannot connect to the source database: {_say(exc)}") from None
        with connection:
            transaction = connection.begin()
            try:
                if engine.dialect.name == "postgresql":
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                else:
                    connection.exec_driver_sql("PRAGMA query_only = ON")
                yield connection
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def _say(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _quote(connection: sa.Connection, dotted: str) -> str:
    prepare = connection.dialect.identifier_preparer
    return ".".join(prepare.quote(part) for part in dotted.split("."))


def _from(connection: sa.Connection, config: dict) -> str:
    if config.get("table"):
        return _quote(connection, config["table"])
    return f"({config['query'].strip().rstrip(';')}) AS cdp_source"


def select(connection: sa.Connection, config: dict, *, after: Any = None, limit: int | None = None):
    """The source's rows past ``after`` (the cursor value, exclusive), in cursor order."""
    sql = f"SELECT * FROM {_from(connection, config)}"
    params: dict[str, Any] = {}
    cursor = config.get("cursor_column")
    if cursor:
        column = _quote(connection, cursor)
        sql += f" WHERE {column} IS NOT NULL"
        if after is not None:
            sql += f" AND {column} > :after"
            params["after"] = after
        sql += f" ORDER BY {column}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        return connection.execute(sa.text(sql), params)
    except sa.exc.DBAPIError as exc:
        raise SourceUnavailable(f"the source's query failed: {_say(exc)}") from None


# ---- values ---------------------------------------------------------------------------------------

def json_ready(value: Any) -> Any:
    """A database value as JSON: instants in ISO 8601 (without an offset: UTC), exact decimals as
    numbers, bytes refused (as text it would be a guess)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return value
    if isinstance(value, (bytes, memoryview)):
        return None
    return str(value)


def cursor_json(value: Any) -> dict:
    """A cursor value kept between runs, with its type (to bind it back as it was)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return {"type": "datetime", "value": aware.isoformat(), "naive": value.tzinfo is None}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"type": "number", "value": value}
    return {"type": "string", "value": str(value)}


def cursor_value(stored: dict | None) -> Any:
    if stored is None:
        return None
    kind, value = stored["type"], stored["value"]
    if kind == "datetime":
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=None) if stored.get("naive") else parsed
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


# ---- test, preview, extract ------------------------------------------------------------------------

def columns_of(config: dict, secrets: dict) -> list[str]:
    with read_only(config, secrets) as connection:
        result = select(connection, {**config, "cursor_column": None}, limit=0)
        return list(result.keys())


def sample(config: dict, secrets: dict, limit: int) -> tuple[list[str], list[dict]]:
    with read_only(config, secrets) as connection:
        result = select(connection, config, limit=limit)
        columns = list(result.keys())
        return columns, [{k: json_ready(v) for k, v in row._mapping.items()} for row in result]


class Extracted:
    """A run's rows, spooled as JSON Lines."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024, mode="w+b")
        self.rows = 0
        self.last_cursor: Any = None
        self.group_before: Any = None  # the cursor value before the current one


def extract(config: dict, secrets: dict, *, after: Any, checkpoint=lambda: None) -> Extracted:
    """The rows past ``after`` (at most ``max_rows_per_run``; a run never ends between two rows of
    the same cursor value), written as JSON Lines as they are read (only the file grows)."""
    limit = int(config.get("max_rows_per_run", 100_000))
    cursor = config.get("cursor_column")
    out = Extracted()
    group_start = group_rows = 0  # where the rows of the current cursor value begin (offset, rows before)
    with read_only(config, secrets) as connection:
        result = select(connection, config, after=after, limit=limit + 1 if cursor else None)
        if cursor and cursor not in result.keys():
            raise SourceUnavailable(f"the cursor column {cursor!r} is not among the source's columns "
                                    f"({', '.join(list(result.keys())[:30])})")
        for row in result:
            mapping = row._mapping
            value = mapping[cursor] if cursor else None
            if cursor and out.rows == limit:  # one row more than a run takes
                if value == out.last_cursor:  # do not split the rows of one cursor value between two runs
                    if group_rows == 0:
                        raise SourceUnavailable(f"more than {limit:,} rows share the cursor value {value!r}; raise "
                                                f"config.max_rows_per_run")
                    out.file.truncate(group_start)
                    out.file.seek(group_start)
                    out.rows, out.last_cursor = group_rows, out.group_before
                break
            if cursor and (out.rows == 0 or value != out.last_cursor):
                group_start, group_rows, out.group_before = out.file.tell(), out.rows, out.last_cursor
            out.file.write(json.dumps({k: json_ready(v) for k, v in mapping.items()}, ensure_ascii=False).encode()
                           + b"\n")
            out.rows += 1
            out.last_cursor = value
            if out.rows % 1000 == 0:
                checkpoint()
            if not cursor and out.rows > 1_000_000:
                raise SourceUnavailable("more than 1,000,000 rows and no cursor column: give config.cursor_column "
                                        "so that runs read the table in parts")
    return out
