"""Rows of the database → Parquet columns, a chunk at a time (cdp.snapshots.export).

The export reads profiles and events in chunks of ``CHUNK`` rows and turns each chunk into Arrow
arrays column by column (one transposition, then C loops: text as it is stored, JSON documents
as text, timestamps parsed by Arrow), instead of a Python loop building every value of every
row: ~90 µs per event row became a few. Events go to one file per bucket (``profile_pk % BUCKETS``),
written in the order the database sends them (profile, time, id), so a profile's events sit
together, sorted, in one file whose row groups a reader can skip by ``profile_pk``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

import sqlalchemy as sa

from cdp.engine.sql.analytic import naive_utc

BUCKETS = 8
CHUNK = 100_000  # rows per read from the database
ROW_GROUP = 128 * 1024  # rows per Parquet row group of an events file (buffered per bucket)


def pyarrow_modules():
    import pyarrow
    import pyarrow.parquet  # noqa: F401

    return pyarrow


def chunks(connection: sa.Connection, query: sa.Select) -> Iterator[list[Sequence]]:
    """The query's rows as the driver gives them (tuples: no Row objects, no result processing —
    the callers convert whole columns), ``CHUNK`` at a time; from a server-side cursor on
    PostgreSQL. Run on the connection's own driver connection, inside its transaction; the
    parameters are processed as SQLAlchemy would bind them (analytic.rendered does the same)."""
    compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    processors = getattr(compiled, "_bind_processors", {})
    values = {name: processors[name](value) if name in processors else value
              for name, value in compiled.construct_params().items()}
    parameters = [values[name] for name in compiled.positiontup] if compiled.positiontup is not None else values
    driver = connection.connection.driver_connection
    streaming = connection.dialect.name == "postgresql"
    cursor = driver.cursor(name="cdp_snapshot") if streaming else driver.cursor()
    try:
        cursor.execute(compiled.string, parameters)
        while rows := cursor.fetchmany(CHUNK):
            yield rows
    finally:
        cursor.close()


def document_texts(values: Sequence):
    """JSON documents as an Arrow string array: the stored text, or (a driver that decodes
    JSON) encoded again."""
    import json

    pa = pyarrow_modules()
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
                         for v in values], pa.string())


def timestamps(values: Sequence):
    """UTC instants as naive microsecond timestamps: stored text (SQLite's ``YYYY-MM-DD
    HH:MM:SS.ffffff``) parsed by Arrow, a driver's aware datetimes converted by Arrow; anything
    else (text with an offset) through Python, as the column's own type would read it."""
    pa = pyarrow_modules()
    naive = pa.timestamp("us")
    if not values:
        return pa.array([], naive)
    if isinstance(values[0], str):
        try:
            return pa.array(values, pa.string()).cast(naive)
        except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    elif isinstance(values[0], datetime) and values[0].tzinfo is not None:
        try:  # aware datetimes: Arrow converts each to UTC; the cast keeps the UTC values, zone dropped
            return pa.array(values, pa.timestamp("us", tz="UTC")).cast(naive)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass
    return pa.array([naive_utc(datetime.fromisoformat(v) if isinstance(v, str) else v) for v in values], naive)


def profile_table(rows: list[Sequence], sandbox: str, part: int, schema):
    """(pk, external_id, attributes text) rows → a profiles table of ``schema``."""
    pa = pyarrow_modules()
    pks, external_ids, attributes = zip(*rows)
    count = len(rows)
    return pa.Table.from_arrays([
        pa.array(pks, pa.int64()), pa.array([sandbox] * count, pa.string()), pa.array(external_ids, pa.string()),
        document_texts(attributes), pa.array([part] * count, pa.int64()),
        pa.array([False] * count, pa.bool_())], schema=schema)


def tombstones_table(pks: Sequence[int], sandbox: str, part: int, schema):
    pa = pyarrow_modules()
    count = len(pks)
    return pa.Table.from_arrays([
        pa.array(pks, pa.int64()), pa.array([sandbox] * count, pa.string()), pa.array([""] * count, pa.string()),
        pa.array(["{}"] * count, pa.string()), pa.array([part] * count, pa.int64()),
        pa.array([True] * count, pa.bool_())], schema=schema)


def event_table(rows: list[Sequence], part: int, schema):
    """(profile_pk, event_id, type, ts, fields text) rows → an events table of ``schema``."""
    pa = pyarrow_modules()
    profile_pks, event_ids, types, stamps, fields = zip(*rows)
    return pa.Table.from_arrays([
        pa.array(profile_pks, pa.int64()), pa.array(event_ids, pa.string()), pa.array(types, pa.string()),
        timestamps(stamps), document_texts(fields),
        pa.array([part] * len(rows), pa.int64())], schema=schema)


class BucketWriter:
    """Events → ``<folder>/bucket=K/<name>``, one file per bucket that has events, rows in the
    order written; row groups of ``ROW_GROUP`` rows (buffered per bucket)."""

    def __init__(self, folder: Path, schema, name: str = "events.parquet"):
        self.folder = folder
        self.name = name
        self.schema = schema
        self.writers: dict[int, object] = {}
        self.pending: dict[int, list] = {k: [] for k in range(BUCKETS)}
        self.pending_rows = dict.fromkeys(range(BUCKETS), 0)
        self.rows = 0

    def write(self, table) -> None:
        import numpy

        pa = pyarrow_modules()
        buckets = table.column("profile_pk").to_numpy() % BUCKETS
        for bucket in numpy.unique(buckets).tolist():
            piece = table.filter(pa.array(buckets == bucket))
            self.pending[bucket].append(piece)
            self.pending_rows[bucket] += piece.num_rows
            if self.pending_rows[bucket] >= ROW_GROUP:
                self._flush(bucket)
        self.rows += table.num_rows

    def _flush(self, bucket: int) -> None:
        pa = pyarrow_modules()
        if not self.pending[bucket]:
            return
        writer = self.writers.get(bucket)
        if writer is None:
            (self.folder / f"bucket={bucket}").mkdir(parents=True, exist_ok=True)
            writer = self.writers[bucket] = pa.parquet.ParquetWriter(
                self.folder / f"bucket={bucket}" / self.name, self.schema)
        writer.write_table(pa.concat_tables(self.pending[bucket]), row_group_size=ROW_GROUP)
        self.pending[bucket] = []
        self.pending_rows[bucket] = 0

    def close(self) -> None:
        for bucket in range(BUCKETS):
            self._flush(bucket)
        for writer in self.writers.values():
            writer.close()

    def files(self) -> list[Path]:
        """The files written, in bucket order."""
        return [self.folder / f"bucket={bucket}" / self.name for bucket in sorted(self.writers)]


def live_pks(profile_files: list[Path]):
    """The pks a reader of these parts sees (each pk's latest part is not a tombstone), as a
    sorted numpy array: one DuckDB query over the files' two columns."""
    import duckdb

    if not profile_files:
        import numpy

        return numpy.array([], dtype="int64")
    listed = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in profile_files) + "]"
    connection = duckdb.connect(":memory:")
    try:
        return connection.execute(
            f"SELECT pk FROM (SELECT pk, deleted, row_number() OVER (PARTITION BY pk ORDER BY part DESC) AS n "
            f"FROM read_parquet({listed}, union_by_name = true)) WHERE n = 1 AND NOT deleted ORDER BY pk"
        ).fetchnumpy()["pk"]
    finally:
        connection.close()


def database_pks(connection: sa.Connection, query: sa.Select):
    """A one-column query's integers as a sorted numpy array, read ``CHUNK`` at a time."""
    import numpy

    parts = [numpy.fromiter((row[0] for row in rows), dtype="int64", count=len(rows))
             for rows in chunks(connection, query)]
    return numpy.sort(numpy.concatenate(parts)) if parts else numpy.array([], dtype="int64")
