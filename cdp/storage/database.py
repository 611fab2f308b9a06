"""Engines for the embedded default (SQLite) and PostgreSQL, set up the way the compiled SQL
expects: UTC sessions on PostgreSQL; on SQLite, foreign keys on and the language's functions
registered (cdp.storage.sqlite_functions).

Writers on SQLite: a transaction that reads before it writes cannot become a writer once another
writer has committed (WAL: ``SQLITE_BUSY_SNAPSHOT``, no waiting). So cdp begins its own
transactions (``isolation_level=None`` on the driver) and :func:`write_transaction` — or the
execution option ``sqlite_begin="IMMEDIATE"`` — takes the write lock at ``BEGIN``, waiting up to
``busy_timeout`` for other writers; readers never wait (WAL).

Connections go back to the pool clean. On SQLite a statement that was stepped but neither
finished nor reset keeps its read snapshot open even after ``COMMIT`` or ``ROLLBACK`` (Python 3.11's
``sqlite3`` no longer resets cursors on rollback): a request that failed half-way through
iterating a result — its cursor kept alive by the traceback until the garbage collector runs —
would leave its pooled connection reading an old snapshot (stale reads for whoever gets it
next) and unable to write (``SQLITE_BUSY_SNAPSHOT`` at once: a 503 in milliseconds). So the
driver's connections track their cursors (:class:`TrackingConnection`) and every cursor is
closed when the connection is checked in, whatever the request's outcome.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from cdp.storage.sqlite_functions import register

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_SYNCHRONOUS = "NORMAL"  # in WAL mode; see create_engine


class MissingDriverError(RuntimeError):
    """The database URL needs a driver that is not installed; the message says what to install."""


def postgresql_driver_available() -> bool:
    return importlib.util.find_spec("psycopg") is not None


def normalize_url(url: str) -> str:
    """``postgresql://…`` and ``postgres://…`` mean cdp's driver, psycopg 3 (SQLAlchemy alone would
    pick psycopg2)."""
    scheme, sep, rest = url.partition(":")
    if sep and scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg:" + rest
    return url


class TrackingConnection(sqlite3.Connection):
    """A sqlite3 connection that knows its open cursors, so that they can all be closed (their
    statements reset, their read snapshots released) when it goes back to the pool."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cursors: weakref.WeakSet[sqlite3.Cursor] = weakref.WeakSet()

    def cursor(self, factory=sqlite3.Cursor):  # noqa: ANN001 - the sqlite3 signature
        cursor = super().cursor(factory)
        self._cursors.add(cursor)
        return cursor

    # the C shortcuts make their cursor without calling cursor(): route them through it
    def execute(self, sql, parameters=(), /):  # noqa: ANN001
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, parameters, /):  # noqa: ANN001
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script, /):  # noqa: ANN001
        return self.cursor().executescript(script)

    def close_cursors(self) -> int:
        """Close every cursor still open; how many there were."""
        cursors = list(self._cursors)
        for cursor in cursors:
            try:
                cursor.close()
            except sqlite3.Error:  # already unusable: nothing of it can hold a snapshot
                pass
        return len(cursors)


def _hand_out_last_returned(kwargs: dict) -> None:
    """The pool hands out the connection returned last (SQLAlchemy's default: the one returned
    first), unless the caller chose a pool class of its own. Under concurrent requests the pool's
    connections took turns, each with a cold SQLite page cache after the others' writes — and, on
    PostgreSQL, a backend without the hot statements prepared: a streamed record's non-streaming
    statements 217 → 148 µs on SQLite (bench/RESULTS.md, session 15). Idle connections beyond the
    pool's size are still closed."""
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_use_lifo", True)


def create_engine(url: str, *, read_only: bool = False, **kwargs) -> sa.Engine:
    """An engine set up for cdp; MissingDriverError for a PostgreSQL URL without psycopg (the
    embedded default, SQLite, needs no extra package).

    ``read_only`` (SQLite): the database file is opened read-only and must exist — nothing is
    written to it, not even the switch to WAL; temporary tables still work."""
    url = normalize_url(url)
    if read_only and url.startswith("sqlite"):
        url = _sqlite_read_only(url)
    if url.startswith("postgresql"):
        if url.startswith("postgresql+psycopg:") and not postgresql_driver_available():
            raise MissingDriverError(
                "PostgreSQL needs the psycopg driver, which is not installed: "
                "pip install 'cdp[postgresql]' (SQLite, the embedded default, needs nothing more)")
        # a request may hold two connections (its own, and a streamed record's transaction), and
        # the server runs up to 40 requests at once: room for all of them
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 80)
        _hand_out_last_returned(kwargs)
    elif url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {}).setdefault("factory", TrackingConnection)
        # the same room: with SQLAlchemy's default (5 kept, 10 more opened and closed again) 8
        # concurrent requests plus the background loops opened a connection per request — its
        # set-up (WAL, pragmas, functions) and SQLite's first read of the schema each time (a file
        # only: an in-memory database has a pool of its own, one connection a thread)
        database = sa.engine.make_url(url).database
        if "poolclass" not in kwargs and database not in (None, "", ":memory:") and "mode=memory" not in url:
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 80)
            _hand_out_last_returned(kwargs)
    # values bound to a statement are personal data: never in an error's text, so never in a log
    kwargs.setdefault("hide_parameters", True)
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_connection, _record):  # noqa: ANN001 - DBAPI connection
            register(dbapi_connection)
            dbapi_connection.isolation_level = None  # BEGIN is ours (see _sqlite_begin)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            if not read_only:
                cursor.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: a commit writes the WAL but does not wait for fsync (the checkpoint
                # does). The database is never corrupted, and a commit survives the process being
                # killed; only an OS crash or power loss may lose the last commits (SQLite docs,
                # "WAL mode with synchronous=NORMAL"). SQLITE_SYNCHRONOUS = "FULL" for more.
                cursor.execute(f"PRAGMA synchronous = {SQLITE_SYNCHRONOUS}")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        @event.listens_for(engine, "checkin")
        def _sqlite_clean(dbapi_connection, _record):  # noqa: ANN001
            # after the pool's rollback: no statement of the last user may keep a snapshot open
            if isinstance(dbapi_connection, TrackingConnection):
                dbapi_connection.close_cursors()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: sa.Connection) -> None:
            mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
            if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
                raise ValueError(f"sqlite_begin: {mode!r}")
            _sqlite_begin_statement(connection, _SQLITE_BEGINS[mode])
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
            keep_prepared_statements(dbapi_connection)

        @event.listens_for(engine, "checkin")
        def _postgres_end_holds(_dbapi_connection, record):  # noqa: ANN001
            # after the pool's rollback (or the owner's commit): what was held for the transaction goes
            _end_holds(record.info)
    return engine


# ---- PostgreSQL: prepared statements kept across a rollback --------------------------------------

# a statement that may change what a prepared statement reads (or drops prepared statements)
_SCHEMA_CHANGE = re.compile(rb"(?:^|;)\s*(?:CREATE|ALTER|DROP|TRUNCATE|COMMENT|GRANT|REVOKE|DISCARD|DEALLOCATE|DO|"
                            rb"REINDEX|CLUSTER|SECURITY|IMPORT|REFRESH|LOAD|RESET|SET\s+(?:LOCAL\s+)?"
                            rb"(?:SESSION\s+)?search_path)\b", re.IGNORECASE)


def keep_prepared_statements(dbapi_connection) -> bool:  # noqa: ANN001 - a psycopg connection
    """psycopg prepares a statement run five times on a connection and then only binds and runs it
    (no parse, no analysis; a cached plan where ``plan_cache_mode`` allows it) — but forgets ALL of
    them at every rollback, and a pooled connection is rolled back each time a reader returns it
    (a GET, the delivery loop's poll, a lost race's ROLLBACK TO): in 8 clients' single-record POSTs
    two thirds of the ingest statements were parsed, analysed and planned afresh, with a
    ``DEALLOCATE ALL`` every few requests (bench/RESULTS.md, session 11). PostgreSQL keeps a
    prepared statement through a rollback and re-plans it when a table it reads changes; psycopg
    forgets them because a rolled-back schema change could leave one reading columns of another
    type. Here they are forgotten only when the connection ran such a statement (DDL, DISCARD,
    DEALLOCATE, search_path; checked on every statement's text) since they were last forgotten.
    Returns whether it was installed (psycopg's manager has the expected shape)."""
    try:
        kept_class = _kept_prepared_statements()
    except ImportError:  # pragma: no cover - a psycopg without this module
        return False
    current = getattr(dbapi_connection, "_prepared", None)
    if type(current) is not kept_class.__base__ or not all(
            hasattr(current, name) for name in ("prepare_threshold", "prepared_max", "_names", "_counts")):
        return False  # another psycopg: its own behaviour
    kept = kept_class()
    kept.prepare_threshold, kept.prepared_max = current.prepare_threshold, current.prepared_max
    dbapi_connection._prepared = kept
    return True


@functools.cache
def _kept_prepared_statements() -> type:
    from psycopg._preparing import PrepareManager

    class KeptPreparedStatements(PrepareManager):
        """psycopg's manager, forgetting the statements only after a schema change."""

        def __init__(self) -> None:
            super().__init__()
            self.schema_changed = False

        def get(self, query, prepare=None):  # noqa: ANN001 - psycopg's types
            if not self.schema_changed and _SCHEMA_CHANGE.search(query.query):
                self.schema_changed = True
            return super().get(query, prepare)

        def clear(self) -> bool:
            if not self.schema_changed:
                return False
            self.schema_changed = False
            return super().clear()

    return KeptPreparedStatements


def _sqlite_read_only(url: str) -> str:
    parsed = sa.engine.make_url(url)
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return url
    from pathlib import Path
    from urllib.parse import quote

    path = Path(database).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no SQLite database file {path}")
    return f"{parsed.drivername}:///file:{quote(str(path))}?mode=ro&uri=true"


class FifoLock:
    """A lock handed to its waiters in the order they came: ``release`` gives it straight to the
    longest waiter, so a thread arriving just then cannot take it first (``threading.Lock`` lets it:
    of 8 single-record writers queued on SQLite's in-process writer lock, the slowest 1 % were
    passed over 2–4 times each, up to 12; bench/RESULTS.md, session 16)."""

    __slots__ = ("_mutex", "_busy", "_waiters")

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy = False
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._mutex:
            if not self._busy:
                self._busy = True
                return True
            if not blocking:
                return False
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout):
            return True  # handed over by release
        with self._mutex:
            try:
                self._waiters.remove(turn)
            except ValueError:  # handed over between the timeout and now: ours after all
                return True
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # still busy: the waiter's now
            elif self._busy:
                self._busy = False
            else:
                raise RuntimeError("release of an unlocked FifoLock")

    def locked(self) -> bool:
        return self._busy


class PerEngine:
    """One object per engine in this process (made by ``make`` on first use; gone with the
    engine): the in-process locks that stand beside a database (its writer lock here, the
    identity turns of cdp/identity/turns.py)."""

    def __init__(self, make: Callable[[], Any]):
        self._make = make
        self._objects: weakref.WeakKeyDictionary[sa.Engine, Any] = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    def __call__(self, engine: sa.Engine) -> Any:
        with self._guard:
            made = self._objects.get(engine)
            if made is None:
                made = self._objects[engine] = self._make()
            return made


_writer_lock = PerEngine(FifoLock)


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that will write: committed at the end, rolled back on an
    exception. On SQLite it holds the write lock from its first statement (see the module doc).

    On SQLite the writers of one engine (one process) also queue on an in-process lock before
    ``BEGIN IMMEDIATE``: SQLite's own busy handler makes a waiting writer sleep and poll (sleeps
    of up to 100 ms), so with a few concurrent writers most of a request's time was spent asleep
    after the lock had been freed (measured: p95 545 ms, max 9 s, for 1-record writes taking
    5 ms). A waiter is now woken the moment the previous writer ends, first come first served
    (:class:`FifoLock`). It waits at most the busy
    timeout, then fails as SQLite would (``database is locked``: 503). Writers of other
    processes or engines still meet at SQLite's lock, as before."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as connection, connection.begin():
            yield connection
        return
    lock = _writer_lock(engine)
    if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        busy = sqlite3.OperationalError("database is locked")
        busy.sqlite_errorcode, busy.sqlite_errorname = 5, "SQLITE_BUSY"
        raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, busy)
    held = [True]

    def release() -> None:  # once: after an early commit (commit_now), or at the end
        if held[0]:
            held[0] = False
            lock.release()
    try:
        with engine.connect() as connection:
            connection.execution_options(sqlite_begin="IMMEDIATE")
            connection.info[_RELEASE_WRITER] = release
            try:
                with connection.begin():
                    yield connection
            finally:
                connection.info.pop(_RELEASE_WRITER, None)  # info outlives the checkout (the pooled connection's)
    finally:
        release()


_RELEASE_WRITER = "cdp_release_writer"


def commit_now(connection: sa.Connection) -> None:
    """Commit a :func:`write_transaction`'s transaction before it ends (a handler that is done
    writing): the locks it holds go at once, not when the transaction's owner gets to its end; on
    SQLite the in-process writer lock is released right after the COMMIT too. Nothing may be
    executed on the connection afterwards."""
    connection.commit()
    release = connection.info.pop(_RELEASE_WRITER, None)
    if release is not None:
        release()
    _end_holds(connection.info)


_HOLDS = "cdp_holds_until_transaction_ends"


def hold_until_transaction_ends(connection: sa.Connection, release) -> None:  # noqa: ANN001 - a callable
    """Call ``release`` when ``connection``'s transaction has ended: right after :func:`commit_now`'s
    COMMIT, else when the connection goes back to the pool (after its commit or rollback) — whatever
    the request's outcome. For in-process holds tied to a transaction's locks (identity turns,
    cdp/identity/turns.py)."""
    connection.info.setdefault(_HOLDS, []).append(release)


def holds_until_transaction_ends(connection: sa.Connection) -> bool:
    return bool(connection.info.get(_HOLDS))


def _end_holds(info: dict) -> None:
    holds = info.pop(_HOLDS, None)
    while holds:
        holds.pop()()


_OUTBOX_WRITTEN = "cdp_outbox_written"


def note_outbox_written(connection: sa.Connection) -> None:
    """Mark the connection's transaction as one that wrote outbox rows (``membership_changes``):
    whoever commits it and wants them delivered at once wakes the delivery loop only then
    (:func:`take_outbox_written`). Set where the rows are written (cdp/storage/memberships.py).
    A mark set in a savepoint that was rolled back stays: one needless wake, never a missed one."""
    connection.info[_OUTBOX_WRITTEN] = True


def take_outbox_written(connection: sa.Connection) -> bool:
    """Whether outbox rows were written on ``connection`` since the mark was last taken (and take
    it). ``info`` outlives the checkout (it is the pooled connection's): take it once before the
    work, so that a mark left by the connection's last user does not count."""
    return connection.info.pop(_OUTBOX_WRITTEN, False)


_SQLITE_BEGINS = {mode: f"BEGIN {mode}" for mode in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")}


def _sqlite_begin_statement(connection: sa.Connection, sql: str) -> None:
    """SQLite's BEGIN on the DBAPI cursor, as cdp/storage/driver.py runs the ingest hot path's
    statements (a statement of every transaction: SQLAlchemy's execution context around it cost
    more than SQLite's BEGIN itself). Not through ``driver``: the connection has no transaction
    yet while it begins one. The engine's cursor listeners see it (statement counts), and its
    error is SQLAlchemy's (a busy database: OperationalError, as before)."""
    cursor = connection.connection.cursor()
    observed = connection._has_events or connection.engine._has_events
    if observed:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, (), None, False)
    try:
        cursor.execute(sql)
    except sqlite3.Error as error:
        connection._handle_dbapi_exception(error, sql, (), cursor, None)
    cursor.close()
    if observed:
        connection.dispatch.after_cursor_execute(connection, cursor, sql, (), None, False)


def sqlite_text(value: date | datetime) -> str:
    """The text SQLite stores for a date or an aware datetime (SQLAlchemy's DateTime format:
    ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, the year always four digits — ``strftime("%Y")``
    writes year 999 as ``999``, which neither sorts nor parses as a date)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value.isoformat()


HEALTH_LOCK_WAIT_MS = 2_000


class NotWritable(Exception):
    """The database refused a write for a reason other than a writer holding the lock."""


def probe_write(engine: sa.Engine, lock_wait_ms: int = HEALTH_LOCK_WAIT_MS) -> str:
    """Try a write transaction (a no-op UPDATE of ``alembic_version``, rolled back) on a pooled
    connection: ``"ok"``, or ``"busy"`` when another writer held the lock for ``lock_wait_ms``
    (a batch being applied: writes queue for up to the busy timeout). Raises :class:`NotWritable`
    when the database refuses writes (read-only file or database, stale snapshot, I/O, disk full)."""
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            if sqlite:  # straight to the driver: a pragma through SQLAlchemy would begin a transaction
                driver.execute(f"PRAGMA busy_timeout = {int(lock_wait_ms)}").close()
                connection.execution_options(sqlite_begin="IMMEDIATE")
            try:
                transaction = connection.begin()
                try:
                    if not sqlite:
                        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_wait_ms)}")
                    connection.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
                finally:
                    transaction.rollback()
            finally:
                if sqlite:
                    driver.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").close()
    except sa.exc.DBAPIError as exc:
        original = exc.orig
        if sqlite and getattr(original, "sqlite_errorcode", None) == 5:  # SQLITE_BUSY (not _SNAPSHOT: 517)
            return "busy"
        if not sqlite and getattr(original, "sqlstate", None) == "55P03":  # lock_not_available
            return "busy"
        raise NotWritable(str(original).strip().splitlines()[0][:200] if original else str(exc)) from None
    return "ok"
