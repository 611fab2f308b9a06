"""A batch file's valid rows, staged: spooled once by the validate pass, then applied set-wise.

The validate pass maps and validates every row once and spools the valid ones here as compact
tuples (a temporary file, pickled in chunks: memory stays bounded whatever the file's size), so
the apply pass reads neither the upload nor validates anything again.

The apply pass (:func:`apply_staged`, in the batch's one transaction) loads the spooled rows into
temporary staging tables — ``COPY`` on PostgreSQL, ``executemany`` on SQLite; dropped with the
transaction, so a killed server leaves nothing behind — and splits them with a few set-wise
statements:

* **fresh** rows: none of their identities is owned by a profile yet, none is carried by another
  row of the batch, they are valid for the linking rules (no two identities of a unique namespace,
  no more than the graph limit) and, for events, their event id is new to the dataset and to the
  batch. Each is a connected component of its own in the identity graph, so each gets a new
  profile holding exactly its identities, its links, its attribute sources and its attributes (the
  policy over one source row per attribute is that row's value), or its event — written as
  ``INSERT … SELECT`` from the staging tables, a handful of statements for all of them;
* every other row — linking to a stored profile, sharing an identity with another row, refused
  by the rules, a repeated event id — goes through :class:`cdp.ingestion.writer.Writer`, in
  arrival order, exactly as before (merges, the linking rules, the graph limit, per-row errors).

The two sets share no identity and no event id, so applying the fresh rows first gives the same
graph, attributes and links as applying all rows in arrival order (tests/test_batch_staging.py
checks it against the Writer on generated batches). The rows of one batch are stamped with one
instant (the batch is one transaction). New profiles are then offered to the streaming segments
as the Writer offers its new profiles (``Change(everything=True)``).

On PostgreSQL a concurrent writer may claim an identity of a fresh row between the split and the
insert; the fresh rows' writes then fail on the unique index (or a deadlock) inside a savepoint,
which is rolled back, and the split is made again (that identity is now owned: its row goes
through the Writer).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from cdp.engine.sql.loading import json_value
from cdp.ingestion.models import RecordResult
from cdp.ingestion.validation import ValidRecord
from cdp.segments.reads import Change
from cdp.storage.bulk import json_text
from cdp.storage.database import sqlite_text

log = logging.getLogger("cdp.ingestion")

SPOOL_CHUNK_ROWS = 1000  # rows pickled together (and loaded into the staging tables together)
APPLY_CHUNK_ROWS = 1000  # rows of the Writer's path resolved set-wise at once
_FRESH_ATTEMPTS = 4  # PostgreSQL: splits made again after losing an identity to a concurrent writer

# A spooled row: (row number, identities, attributes set, paths removed, event id, event type,
# ts, event fields, observed at, identities normalised) — the fields of a ValidRecord, as a tuple
# (pickled ~3x faster).
_Spooled = tuple


class Spool:
    """The valid rows of a batch, in file order, in a temporary file (pickled chunks)."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.pending: list[_Spooled] = []
        self.count = 0

    def add(self, number: int, record: ValidRecord) -> None:
        self.pending.append((number, record.identities, record.set_attributes, record.removed, record.event_id,
                             record.event_type, record.ts, record.event_fields, record.observed_at,
                             record.normalized))
        self.count += 1
        if len(self.pending) >= SPOOL_CHUNK_ROWS:
            self._flush()

    def add_staged(self, row: _Spooled) -> None:
        """A row already as the spool keeps it (compiled_rows.py makes them)."""
        self.pending.append(row)
        self.count += 1
        if len(self.pending) >= SPOOL_CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            pickle.dump(self.pending, self.file, protocol=pickle.HIGHEST_PROTOCOL)
            self.pending = []

    def chunks(self) -> Iterator[list[_Spooled]]:
        """The spooled rows, chunk by chunk (may be read several times)."""
        self._flush()
        self.file.seek(0)
        while True:
            try:
                yield pickle.load(self.file)
            except EOFError:
                return

    def close(self) -> None:
        self.file.close()


def record_of(row: _Spooled) -> ValidRecord:
    _, identities, set_attributes, removed, event_id, event_type, ts, event_fields, observed_at, normalized = row
    return ValidRecord(identities=identities, set_attributes=set_attributes, removed=removed, event_id=event_id,
                       event_type=event_type, ts=ts, event_fields=event_fields, observed_at=observed_at,
                       normalized=normalized)


@dataclass
class StagedOutcome:
    fresh: int  # rows applied as new profiles by the set-wise statements (all accepted)
    results: list[tuple[int, RecordResult]]  # (row number, result) of the rows that went through the Writer
    # (empty when apply_staged was given ``report``)


# ---- the staging tables ------------------------------------------------------------------------

_TABLES = {
    "sqlite": [
        "CREATE TEMP TABLE cdp_stage_rows (row_no INTEGER PRIMARY KEY, external_id TEXT NOT NULL, "
        "attributes TEXT, identities TEXT, observed_at TEXT, event_id TEXT, event_type TEXT, ts TEXT, fields TEXT, "
        "fresh INTEGER NOT NULL, profile_pk INTEGER)",
        "CREATE TEMP TABLE cdp_stage_ids (row_no INTEGER NOT NULL, namespace TEXT NOT NULL, value TEXT NOT NULL, "
        "pk INTEGER NOT NULL)",
        "CREATE TEMP TABLE cdp_stage_removed (row_no INTEGER NOT NULL, path TEXT NOT NULL)",
    ],
    # temporary (never WAL-logged), dropped at the end of the transaction whatever its outcome
    "postgresql": [
        "CREATE TEMP TABLE cdp_stage_rows (row_no bigint PRIMARY KEY, external_id varchar NOT NULL, "
        "attributes jsonb, identities jsonb, observed_at timestamptz, event_id varchar, event_type varchar, "
        "ts timestamptz, fields jsonb, fresh boolean NOT NULL, profile_pk bigint) ON COMMIT DROP",
        "CREATE TEMP TABLE cdp_stage_ids (row_no bigint NOT NULL, namespace varchar NOT NULL, value varchar NOT NULL, "
        "pk bigint NOT NULL) "
        "ON COMMIT DROP",
        "CREATE TEMP TABLE cdp_stage_removed (row_no bigint NOT NULL, path varchar NOT NULL) ON COMMIT DROP",
    ],
}
_NAMES = ("cdp_stage_rows", "cdp_stage_ids", "cdp_stage_removed")
# (namespace, value, row_no): the split's and the identities' insert read the row numbers from the
# index alone
_INDEXES = ["CREATE INDEX cdp_stage_ids_pair ON cdp_stage_ids (namespace, value, row_no)",
            "CREATE INDEX cdp_stage_ids_row ON cdp_stage_ids (row_no, pk)",
            "CREATE INDEX cdp_stage_removed_row ON cdp_stage_removed (row_no)"]
_ROW_COLUMNS = ("row_no, external_id, attributes, identities, observed_at, event_id, event_type, ts, fields, fresh, "
                "profile_pk")

# the split: a row stops being fresh when one of its identities is owned, or carried by another
# row, or (events) its event id is stored in the dataset or repeated in the batch
# (SQLite: CROSS JOIN keeps the staged identities the outer loop — its planner otherwise chose to walk
# every identity of the sandbox and probe the staged ones, a batch's cost growing with the sandbox)
_SPLIT = [
    "UPDATE cdp_stage_rows SET fresh = {false} WHERE fresh AND row_no IN (SELECT s.row_no FROM cdp_stage_ids s "
    "{cross} identities i ON i.sandbox = :sandbox AND i.namespace = s.namespace AND i.value = s.value)",
    "UPDATE cdp_stage_rows SET fresh = {false} WHERE fresh AND row_no IN (SELECT s.row_no FROM cdp_stage_ids s "
    "JOIN (SELECT namespace, value FROM cdp_stage_ids GROUP BY namespace, value HAVING count(*) > 1) d "
    "ON d.namespace = s.namespace AND d.value = s.value)",
]
_SPLIT_EVENTS = [
    "UPDATE cdp_stage_rows SET fresh = {false} WHERE fresh AND event_id IN (SELECT event_id FROM cdp_stage_rows "
    "GROUP BY event_id HAVING count(*) > 1)",
    "UPDATE cdp_stage_rows SET fresh = {false} WHERE fresh AND EXISTS (SELECT 1 FROM events e "
    "WHERE e.dataset_pk = :dataset AND e.event_id = cdp_stage_rows.event_id)",
]
# A new profile's key is chosen when its row is staged, and the profile inserted with it: no staged
# row looks its profile up again by its random external id (a probe of a random page of the
# profiles' unique index per row, measured 3-4 µs a row on SQLite and ~4 µs on PostgreSQL at
# 100,000-200,000 rows). SQLite: the highest key stored when the pass began (the pass holds the one
# write lock from its start) plus the row's number — SQLite would have given the next keys itself
# (no AUTOINCREMENT: the highest key + 1). PostgreSQL: the profiles' sequence, a value per staged
# row drawn with the chunk (as an insert would draw them; concurrent writers draw others). Rows
# that are not fresh leave gaps.
_WRITE_PROFILES = ("INSERT INTO profiles (pk, sandbox, external_id, attributes, created_at, updated_at) "
                   "SELECT profile_pk, :sandbox, external_id, coalesce(attributes, {empty}), :now, :now "
                   "FROM cdp_stage_rows WHERE fresh ORDER BY row_no")
_DRAW_KEYS = "SELECT nextval(%s::regclass) FROM generate_series(1, %s)"
# A new identity's key is chosen when it is staged too (as a profile's, above: SQLite the highest key
# stored when the pass began + the staged identity's place, PostgreSQL the identities' sequence), so
# that a fresh row's links are made from the staged identities alone — before, from the identities
# just inserted, found again by their profile (two probes of its index a link)
_WRITE_IDENTITIES = ("INSERT INTO identities (pk, sandbox, profile_pk, namespace, value, first_seen, last_seen) "
                     "SELECT s.pk, :sandbox, r.profile_pk, s.namespace, s.value, :now, :now FROM cdp_stage_ids s "
                     "JOIN cdp_stage_rows r ON r.row_no = s.row_no WHERE r.fresh ORDER BY s.pk")
# a fresh row's profile holds exactly its identities: its links are every two of them
_WRITE_LINKS = ("INSERT INTO identity_links (sandbox, profile_pk, a_pk, b_pk, first_seen, last_seen, seen_order, "
                "dataset_pk, batch_pk, request_id, record_index, removed_at, removed_reason) "
                "SELECT :sandbox, r.profile_pk, a.pk, b.pk, :now, :now, r.row_no, :dataset, :batch, NULL, r.row_no, "
                "NULL, NULL FROM cdp_stage_rows r JOIN cdp_stage_ids a ON a.row_no = r.row_no "
                "JOIN cdp_stage_ids b ON b.row_no = r.row_no AND a.pk < b.pk WHERE r.fresh")
# a fresh row's attribute sources: one per attribute its document sets (read back from it by the
# database: no row per value is built in Python), and one per path it removes
_SOURCE_COLUMNS = ("INSERT INTO attribute_sources (profile_pk, path, dataset_pk, value, removed, observed_at, "
                   "batch_pk, request_id, record_index, identities) ")
_WRITE_SOURCES = {
    # the element's JSON text (a number as the number: the column's numeric affinity stores the
    # Writer's text of a number as that number too)
    "sqlite": _SOURCE_COLUMNS + "SELECT r.profile_pk, j.key, :dataset, CASE j.type "
              "WHEN 'text' THEN json_quote(j.value) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
              "WHEN 'null' THEN 'null' ELSE j.value END, 0, "
              "coalesce(r.observed_at, :now), :batch, NULL, r.row_no, r.identities "
              "FROM cdp_stage_rows r, json_each(r.attributes) j WHERE r.fresh",
    "postgresql": _SOURCE_COLUMNS + "SELECT r.profile_pk, j.key, :dataset, j.value, false, "
                  "coalesce(r.observed_at, :now), :batch, NULL, r.row_no, r.identities "
                  "FROM cdp_stage_rows r, jsonb_each(r.attributes) j WHERE r.fresh",
}
_WRITE_REMOVALS = (_SOURCE_COLUMNS + "SELECT r.profile_pk, a.path, :dataset, {null}, {true}, "
                   "coalesce(r.observed_at, :now), :batch, NULL, r.row_no, r.identities FROM cdp_stage_removed a "
                   "JOIN cdp_stage_rows r ON r.row_no = a.row_no WHERE r.fresh")
_WRITE_EVENTS = ("INSERT INTO events (profile_pk, event_id, type, ts, fields, dataset_pk, identities) "
                 "SELECT profile_pk, event_id, event_type, ts, fields, :dataset, identities FROM cdp_stage_rows "
                 "WHERE fresh ORDER BY event_id")


_FRESH_PAGE = sa.text("SELECT row_no, profile_pk FROM cdp_stage_rows WHERE fresh AND row_no > :after "
                      "ORDER BY row_no LIMIT 5000")
_OTHERS = sa.text("SELECT row_no FROM cdp_stage_rows WHERE NOT fresh AND row_no BETWEEN :first AND :last")


def _sql(dialect: str, text: str) -> sa.TextClause:
    postgresql = dialect == "postgresql"
    return sa.text(text.format(false="false" if postgresql else "0", true="true" if postgresql else "1",
                               null="'null'::jsonb" if postgresql else "'null'",
                               empty="'{}'::jsonb" if postgresql else "'{}'",
                               cross="JOIN" if postgresql else "CROSS JOIN"))


# values a JSON document stores as they are (json_value returns them unchanged): not looked at again
_AS_STORED = frozenset({str, int, float, bool, type(None)})


def _new_external_ids(count: int) -> list[str]:
    """``count`` new profiles' ids, as ``f"p-{uuid.uuid4().hex}"`` makes them (random version-4
    UUIDs: the version and variant bits set in each), from one read of the system's randomness and
    one hex encoding — ``uuid.UUID`` per id measured a few µs a row."""
    data = bytearray(os.urandom(16 * count))
    data[6::16] = bytes((byte & 0x0F) | 0x40 for byte in data[6::16])  # version 4
    data[8::16] = bytes((byte & 0x3F) | 0x80 for byte in data[8::16])  # variant RFC 4122
    text = data.hex()
    return ["p-" + text[i:i + 32] for i in range(0, len(text), 32)]


class _Stager:
    """Loads spooled rows into the staging tables, chunk by chunk."""

    def __init__(self, connection: sa.Connection, writer, kind: str, first_key: int | None,
                 first_identity_key: int | None):
        self.connection = connection
        self.first_key = first_key  # SQLite: a new profile's key is this + its row's number
        self.next_identity_key = first_identity_key  # SQLite: a staged identity's key is this, then + 1
        self.sequence, self.identity_sequence = (None, None) if first_key is not None else connection.exec_driver_sql(
            "SELECT pg_get_serial_sequence('profiles', 'pk'), pg_get_serial_sequence('identities', 'pk')").one()
        self.writer = writer
        self.kind = kind
        self.dialect = connection.dialect.name
        self.limit = writer.settings.graph_limit

    def _instant(self, value: datetime | None):
        if value is None:
            return None
        return sqlite_text(value) if self.dialect == "sqlite" else value.astimezone(timezone.utc)

    def load(self, chunk: list[_Spooled]) -> None:
        rows, ids, removals = [], [], []
        writer, dialect, first_key = self.writer, self.dialect, self.first_key
        drawn = None if first_key is not None else self.connection.exec_driver_sql(
            _DRAW_KEYS, (self.sequence, len(chunk))).scalars().all()
        # new profiles' ids, as uuid.uuid4() makes them, from one read of the system's randomness
        external = _new_external_ids(len(chunk))
        for position, row in enumerate(chunk):
            number, identities, set_attributes, removed, event_id, event_type, ts, fields, observed_at, normalized = row
            # normalised and distinct already (validate_record): only their namespaces are checked
            # against the writer's, as the Writer does for a validated record
            if normalized and all(namespace in writer.namespaces for namespace, _ in identities):
                pairs, errors = identities, []
            else:
                pairs, errors = writer.normalized_identities(identities)
            # what the Writer refuses or must check against other rows goes its way
            fresh = not errors and bool(pairs) and len(pairs) <= self.limit and not writer.graph.rules.doubled(pairs)
            # keys in (namespace, value) order within the row, as the Writer draws them (a link's a_pk < b_pk)
            ids += [(number, namespace, value) for namespace, value in (sorted(pairs) if len(pairs) > 1 else pairs)]
            shared = json_text([list(pair) for pair in pairs])
            key = drawn[position] if first_key is None else first_key + number
            if self.kind == "profile":
                values = {path: value if value.__class__ in _AS_STORED else json_value(value, dialect)
                          for path, value in set_attributes.items()}
                if removed:
                    removals += [(number, path) for path in removed if path not in values]
                rows.append((number, external[position], json_text(values), shared, self._instant(observed_at),
                             None, None, None, None, fresh, key))
            else:
                fresh = fresh and event_id is not None
                rows.append((number, external[position], None, shared, None, event_id, event_type,
                             self._instant(ts), json_text({k: v if v.__class__ in _AS_STORED else json_value(v, dialect)
                                                           for k, v in fields.items()}),
                             fresh, key))
        self._write("cdp_stage_rows", _ROW_COLUMNS, rows)
        if first_key is None:
            identity_keys = self.connection.exec_driver_sql(_DRAW_KEYS, (self.identity_sequence, len(ids))).scalars().all()
        else:
            identity_keys = range(self.next_identity_key, self.next_identity_key + len(ids))
            self.next_identity_key += len(ids)
        self._write("cdp_stage_ids", "row_no, namespace, value, pk",
                    [(*identity, key) for identity, key in zip(ids, identity_keys)])
        self._write("cdp_stage_removed", "row_no, path", removals)

    def _write(self, table: str, columns: str, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.dialect == "sqlite":
            marks = ", ".join("?" * (columns.count(",") + 1))
            self.connection.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            return
        driver = self.connection.connection.driver_connection  # the same connection, in the same transaction
        with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def apply_staged(connection: sa.Connection, writer, spool: Spool, *, kind: str, dataset_pk: int, batch_pk: int,
                 now: datetime, checkpoint=lambda done: None,
                 report: Callable[[int, RecordResult], None] | None = None) -> StagedOutcome:
    """Apply the spooled rows on ``connection`` (in the caller's transaction) with ``writer`` (a
    :class:`~cdp.ingestion.writer.Writer` of that connection, its clock at ``now``): the fresh rows
    set-wise from the staging tables, the others through the writer in arrival order. ``report``:
    called with each of those rows' (number, result) as it comes (else they are listed in the
    outcome)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # the sandbox's one serialized writer for the whole apply pass, taken before its first
        # write: the pass holds each chunk's locks until it commits, so two passes (or a pass and a
        # request that kept losing) would each wait for what the other holds (Writer.serialize)
        writer.serialize()
    for name in _NAMES:
        if dialect == "sqlite":  # a pooled connection may hold them from a transaction that failed to drop them
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
    for statement in _TABLES[dialect]:
        connection.exec_driver_sql(statement)
    first_key = first_identity_key = None
    if dialect == "sqlite":
        first_key = connection.exec_driver_sql("SELECT coalesce(max(pk), 0) FROM profiles").scalar_one()
        first_identity_key = connection.exec_driver_sql("SELECT coalesce(max(pk), 0) + 1 FROM identities").scalar_one()
    stager = _Stager(connection, writer, kind, first_key, first_identity_key)
    done = 0
    for chunk in spool.chunks():
        stager.load(chunk)
        done += len(chunk)
        checkpoint(done)
    for statement in _INDEXES:
        connection.exec_driver_sql(statement)
    if dialect == "postgresql":
        connection.exec_driver_sql("ANALYZE cdp_stage_rows, cdp_stage_ids, cdp_stage_removed")
    params = {"sandbox": writer.sandbox, "dataset": dataset_pk, "batch": batch_pk,
              "now": sqlite_text(now) if dialect == "sqlite" else now}
    fresh = _apply_fresh(connection, params, kind) if spool.count else 0
    # new profiles: any streaming segment may take them (as the Writer does for the profiles it
    # makes); read a page at a time, as the rest below, so memory does not grow with the file. Their
    # history rows are moved once, at the end, in one order (no deadlock with concurrent writers;
    # the deltas are per hour and segment, so they do not grow with the file either)
    after = -1
    with writer.streaming.deferred():
        while page := connection.execute(_FRESH_PAGE, {"after": after}).all():
            for _, profile_pk in page:
                writer.streaming.profile_changed(profile_pk, Change(everything=True), now)
            after = page[-1][0]
    results: list[tuple[int, RecordResult]] = []
    pending: list[tuple[int, ValidRecord]] = []

    def apply_pending() -> None:
        for number, result in zip((number for number, _ in pending), writer.apply_many(pending)):
            if report is None:
                results.append((number, result))
            else:
                report(number, result)
        pending.clear()

    if fresh < spool.count:
        for chunk in spool.chunks():  # in file order: the rows of a chunk are a range of row numbers
            others = set(connection.execute(_OTHERS, {"first": chunk[0][0], "last": chunk[-1][0]}).scalars())
            for row in chunk:
                if row[0] in others:
                    pending.append((row[0], record_of(row)))
                    if len(pending) >= APPLY_CHUNK_ROWS:
                        apply_pending()
                        checkpoint(done)
        apply_pending()
    for name in _NAMES:
        connection.exec_driver_sql(f"DROP TABLE {name}")
    return StagedOutcome(fresh=fresh, results=results)


def _apply_fresh(connection: sa.Connection, params: dict[str, Any], kind: str) -> int:
    """The fresh rows' writes; how many."""
    dialect = connection.dialect.name
    for attempt in range(_FRESH_ATTEMPTS if dialect == "postgresql" else 1):
        try:
            with connection.begin_nested() if dialect == "postgresql" else _no_savepoint():
                return _write_fresh(connection, params, kind)
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
            if getattr(getattr(exc, "orig", None), "sqlstate", None) not in ("23505", "40P01"):
                raise
            # a concurrent writer claimed one of the identities (or event ids), or the two
            # deadlocked: split again
            log.info("batch %s: a staged identity was claimed meanwhile (attempt %s); splitting again",
                     params["batch"], attempt + 1)
    # still losing: every row through the Writer (set-wise, retried; a row that still loses is a
    # `conflict` error of that row)
    connection.execute(_sql(dialect, "UPDATE cdp_stage_rows SET fresh = {false}"))
    return 0


class _no_savepoint:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# PostgreSQL (migration 0025): the key checks of the identities', links' and sources' inserts are not
# run for the fresh rows' writes — their profile and identity keys are the rows these statements
# have just inserted (in this transaction: no other can see, so none can delete them), their dataset
# and batch the job's own, locked here once as the checks would lock them (FOR KEY SHARE: a
# concurrent delete waits for the batch; a missing one refused as the checks refuse it)
_KEYS_CREATED = "SELECT set_config('cdp.keys_created', %s, true)"
_LOCK_KEY = {"dataset": "SELECT 1 FROM datasets WHERE pk = %s FOR KEY SHARE",
             "batch": "SELECT 1 FROM ingestion_batches WHERE pk = %s FOR KEY SHARE"}


def _lock_job_keys(connection: sa.Connection, params: dict[str, Any]) -> None:
    for name, query in _LOCK_KEY.items():
        if params[name] is not None and connection.exec_driver_sql(query, (params[name],)).first() is None:
            raise sa.exc.IntegrityError(query, (params[name],), _MissingKey(f"the batch's {name} {params[name]} "
                                                                            "is not a key of its table"))


class _MissingKey(Exception):
    sqlstate = "23503"  # foreign_key_violation, as the key checks raise it


def _write_fresh(connection: sa.Connection, params: dict[str, Any], kind: str) -> int:
    dialect = connection.dialect.name
    for statement in _SPLIT + (_SPLIT_EVENTS if kind == "event" else []):
        connection.execute(_sql(dialect, statement), params)
    postgresql = dialect == "postgresql"
    if postgresql:
        _lock_job_keys(connection, params)
    connection.execute(_sql(dialect, _WRITE_PROFILES), params)
    if postgresql:  # inside the savepoint of _apply_fresh: rolled back with it when a write fails
        connection.exec_driver_sql(_KEYS_CREATED, ("on",))
    connection.execute(sa.text(_WRITE_IDENTITIES), params)
    connection.execute(sa.text(_WRITE_LINKS), params)
    if kind == "profile":
        connection.execute(sa.text(_WRITE_SOURCES[dialect]), params)
        connection.execute(_sql(dialect, _WRITE_REMOVALS), params)
    if postgresql:  # every later insert of the transaction checked again
        connection.exec_driver_sql(_KEYS_CREATED, ("off",))
    if kind == "event":
        connection.execute(sa.text(_WRITE_EVENTS), params)
    return connection.execute(sa.text("SELECT count(*) FROM cdp_stage_rows WHERE fresh")).scalar_one()
