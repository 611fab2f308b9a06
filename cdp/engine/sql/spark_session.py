"""Apache Spark sessions for the analytic engine (cdp.engine.sql.analytic): the compiler's query
(dialect ``spark``, cdp.engine.sql.spark) over a snapshot's Parquet files.

Nothing starts on import. The first :class:`SparkSession` starts Spark (``pyspark``, the spark
extra): local (``local[*]``) unless a master URL is given — ``--master`` or ``CDP_SPARK_MASTER``,
any cluster Spark reaches (``spark://host:7077``, ``yarn``, ``k8s://…``); the snapshot folder must
then be readable from the executors (a shared file system or object store path). It runs offline
(no packages are fetched), without the web UI, with its scratch files in a temporary folder, its
clock in UTC and ANSI mode on. Every :class:`SparkSession` is a Spark session of its own (its own
views and functions) over that one Spark context, which lives as long as the process: starting it
takes seconds, so a server or a test run starts it once (:func:`stop` ends it).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from cdp.engine.sql.analytic import (AnalyticSession, _membership_rows, _python_udfs, common_flat_columns,
                                     with_event_columns, with_typed_columns)
from cdp.engine.sql.duckdb import EVENT_PREFIX, FLAT_PREFIX
from cdp.engine.sql.spark import SparkDialect

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}  # "spark": the shared pyspark session, "master", "scratch"
_SPARK_TYPES = {"DOUBLE": "double", "BIGINT": "bigint", "VARCHAR": "string"}
# Spark's type of a typed event-field column ("f.<key>") → the language's (as DuckDB names them:
# analytic.flat_attributes); DuckDB writes TIMESTAMP without a zone, which Spark may read as NTZ
_COLUMN_TYPES = {"string": "string", "bigint": "integer", "double": "number", "boolean": "boolean",
                 "date": "date", "timestamp": "datetime", "timestamp_ntz": "datetime",
                 # a list attribute's elements as text (cdp.engine.sql.analytic.list_items), any list<T>
                 "array<string>": "list"}
SHUFFLE_PARTITIONS = 4  # the relations are small per query; Spark's 200 would be mostly empty tasks


def _base(master: str | None, conf: Mapping[str, str] | None = None):
    """The process's Spark (started on first use)."""
    wanted = master or os.environ.get("CDP_SPARK_MASTER") or "local[*]"
    with _LOCK:
        spark = _STATE.get("spark")
        if spark is not None:
            if master is not None and master != _STATE["master"]:
                raise ValueError(f"Spark already runs with master {_STATE['master']!r} in this process, "
                                 f"not {master!r}")
            return spark
        from pyspark.sql import SparkSession as PySparkSession

        # the Python functions (pql_*) run in workers of this very interpreter
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        scratch = tempfile.mkdtemp(prefix="cdp-spark-")
        java_options = "-Duser.timezone=UTC -Duser.language=en -Duser.country=US"
        spark = (PySparkSession.builder.master(wanted).appName("cdp")
                 .config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false")
                 .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
                 .config("spark.default.parallelism", str(SHUFFLE_PARTITIONS))
                 .config("spark.local.dir", scratch)
                 .config("spark.sql.warehouse.dir", str(Path(scratch) / "warehouse"))
                 .config("spark.driver.extraJavaOptions", java_options)
                 .config("spark.executor.extraJavaOptions", java_options)
                 .config("spark.sql.session.timeZone", "UTC")
                 .config("spark.sql.ansi.enabled", "true"))
        for key, value in (conf or {}).items():  # the defaults of every session of this Spark
            spark = spark.config(key, value)
        spark = spark.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        _STATE.update(spark=spark, master=wanted, scratch=scratch)
        return spark


def stop() -> None:
    """End the process's Spark (the next session starts it again)."""
    with _LOCK:
        spark = _STATE.pop("spark", None)
        scratch = _STATE.pop("scratch", None)
        _STATE.pop("master", None)
    if spark is not None:
        spark.stop()
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


def _bound(value: Any) -> Any:
    """A parameter as Spark binds it: datetimes as instants (aware, UTC)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


class SparkSession(AnalyticSession):
    """A Spark session with the ``profiles``, ``events`` and ``memberships`` views: over Arrow
    tables (:meth:`from_tables`, written to Parquet first) or a snapshot (:meth:`from_snapshot`)."""

    engine = "spark"

    def __init__(self, *, master: str | None = None, conf: Mapping[str, str] | None = None):
        """``conf``: Spark SQL settings of this session (and the defaults of later ones when this
        one starts Spark). Tiny relations, as in the tests, run several times faster with
        ``spark.sql.adaptive.enabled=false`` and one shuffle partition: adaptive execution plans
        stage by stage, which costs more than such a query computes."""
        self.spark = _base(master, conf).newSession()
        for key, value in (conf or {}).items():
            self.spark.conf.set(key, value)
        from pyspark.sql.types import StructType

        for name, function, parameters, result in _python_udfs() + [_lower_udf()]:
            self.spark.udf.register(name, function, _SPARK_TYPES[result])
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=_STATE["scratch"]))
        self._loads = 0
        self._remembered = 0
        self.dialect = SparkDialect()
        self._empty_memberships = self.spark.createDataFrame(
            [], StructType.fromDDL("segment_pk BIGINT, profile_pk BIGINT, status STRING"))
        self._empty_memberships.createOrReplaceTempView("memberships")

    # ---- the relations ----------------------------------------------------------------------

    def _views(self, profiles, events, event_columns: Sequence[str] | None = None,
               attribute_columns: Sequence[str] | None = None) -> "SparkSession":
        """``event_columns`` / ``attribute_columns``: the typed event-field / attribute columns
        to read (None: every one the relation has); ``flat_events`` and ``flat`` say which, for
        the compiler."""
        from pyspark.sql import functions as F

        def typed(frame, prefix: str, wanted: Sequence[str] | None) -> tuple[list, dict[str, str]]:
            found = {f.name: _COLUMN_TYPES.get(f.dataType.simpleString()) for f in frame.schema.fields
                     if f.name.startswith(prefix)}
            chosen = {name: type_ for name, type_ in found.items() if type_ is not None
                      and (wanted is None or name in wanted)}
            columns = [F.col(_quoted(name)).cast("timestamp").alias(name) if type_ == "datetime"
                       else F.col(_quoted(name)) for name, type_ in sorted(chosen.items())]
            return columns, {name[len(prefix):]: type_ for name, type_ in chosen.items()}

        attribute_typed, self.flat = typed(profiles, FLAT_PREFIX, attribute_columns)
        event_typed, self.flat_events = typed(events, EVENT_PREFIX, event_columns)
        profiles.select(F.col("pk").cast("bigint"), "sandbox", "external_id", "attributes", *attribute_typed) \
            .createOrReplaceTempView("profiles")
        events.select(F.col("profile_pk").cast("bigint"), "event_id", "type", F.col("ts").cast("timestamp"), "fields",
                      *event_typed).createOrReplaceTempView("events")
        return self

    def from_tables(self, profiles, events, *, schema=None, flat_columns: bool = True) -> "SparkSession":
        """Arrow tables in the snapshot layout (analytic.document_tables), through Parquet, with the
        typed attribute and event-field columns a snapshot has (``flat_columns=False``: none,
        every attribute and event field a JSON read)."""
        import pyarrow.parquet

        self._loads += 1
        target = self.folder / f"tables-{self._loads}"
        target.mkdir()
        pyarrow.parquet.write_table(_with_attribute_columns(profiles, schema) if flat_columns else profiles,
                                    target / "profiles.parquet")
        pyarrow.parquet.write_table(with_event_columns(events, schema) if flat_columns else events,
                                    target / "events.parquet")
        read = self.spark.read.parquet
        return self._views(read(str(target / "profiles.parquet")), read(str(target / "events.parquet")))

    def from_snapshot(self, manifest) -> "SparkSession":
        """A snapshot's parts merged on read, as ``relations_sql`` does for DuckDB: each profile's
        latest part wins (a tombstone removes it), and its events are that part's."""
        from pyspark.sql import Window, functions as F
        from pyspark.sql.types import StructType

        folder = manifest.folder
        profile_files = [str(folder / f"part-{p.number:05d}" / "profiles.parquet") for p in manifest.parts]
        event_dirs = [str(folder / f"part-{p.number:05d}" / "events") for p in manifest.parts if p.events]
        # the typed columns every events file has with one type (as relations_sql reads them for
        # DuckDB): Spark takes one file's schema and reads a column a file lacks as null
        event_columns = common_flat_columns([str(path) for d in event_dirs for path in sorted(Path(d).rglob("*.parquet"))],
                                      EVENT_PREFIX)[0]
        # the same for the profiles' typed attribute columns
        attribute_columns = common_flat_columns(profile_files, FLAT_PREFIX)[0]
        profiles = self.spark.read.parquet(*profile_files)
        if event_dirs:  # bucket=K folders: the files hold every column, the folders need no reading
            events = self.spark.read.option("recursiveFileLookup", "true").parquet(*event_dirs)
        else:
            events = self.spark.createDataFrame([], StructType.fromDDL(
                "profile_pk BIGINT, event_id STRING, type STRING, ts TIMESTAMP, fields STRING, part BIGINT"))
        if len(manifest.parts) == 1:
            return self._views(profiles.where(~F.col("deleted")), events, event_columns, attribute_columns)
        latest = (profiles.withColumn("_n", F.row_number().over(Window.partitionBy("pk").orderBy(F.col("part").desc())))
                  .where(F.col("_n") == 1))
        live = latest.where(~F.col("deleted"))
        owned = events.join(live.select(F.col("pk").alias("profile_pk"), "part"), ["profile_pk", "part"], "inner")
        return self._views(live, owned, event_columns, attribute_columns)

    def from_sql(self, profiles_sql: str, events_sql: str) -> "SparkSession":
        raise NotImplementedError("the SQL of relations_sql is DuckDB's; Spark reads a snapshot with from_snapshot")

    # ---- queries ----------------------------------------------------------------------------

    def rendered(self, query: sa.Select | sa.CompoundSelect) -> tuple[str, dict[str, Any]]:
        compiled = query.compile(dialect=self.dialect, compile_kwargs={"render_postcompile": True})
        return compiled.string, {name: _bound(value) for name, value in compiled.construct_params().items()}

    def fetch(self, query: sa.Select | sa.CompoundSelect) -> list[tuple]:
        text, parameters = self.rendered(query)
        return [tuple(row) for row in self.spark.sql(text, args=parameters).collect()]

    def run(self, query: sa.Select) -> list[tuple[int, str]]:
        return self.members_many([query])[0]

    def members_many(self, queries: Sequence[sa.Select]) -> list[list[tuple[int, str]]]:
        """As AnalyticSession's, the rows fetched as Arrow columns (a batch's members are
        millions of rows at a million profiles: pickled Row objects cost seconds per million)."""
        import pyarrow.compute as pc

        branches = [q.order_by(None).add_columns(sa.literal_column(str(i)).label("query"))
                    for i, q in enumerate(queries)]
        text, parameters = self.rendered(branches[0] if len(branches) == 1 else sa.union_all(*branches))
        table = self.spark.sql(text, args=parameters).toArrow()
        table = table.sort_by([("query", "ascending"), ("pk", "ascending")])
        counts = pc.value_counts(table.column("query")).to_pylist() if table.num_rows else []
        sizes = {entry["values"]: entry["counts"] for entry in counts}
        found, start = [], 0
        for i in range(len(queries)):
            part = table.slice(start, sizes.get(i, 0))
            start += sizes.get(i, 0)
            found.append(list(zip(part.column("pk").to_pylist(), part.column("external_id").to_pylist())))
        return found

    def remember_many(self, members: Sequence[tuple[int, list[int]]]) -> None:
        """One Parquet file for the segments given (a level of a run) and the view read again
        once: each re-read lists the folder and reads a footer, a Spark job of its own."""
        import pyarrow.parquet

        self._remembered += 1
        target = self.folder / "memberships"
        target.mkdir(exist_ok=True)
        pyarrow.parquet.write_table(_membership_rows(members), target / f"segments-{self._remembered:05d}.parquet")
        self.spark.read.parquet(str(target)).createOrReplaceTempView("memberships")

    def close(self) -> None:
        for view in ("profiles", "events", "memberships"):
            self.spark.catalog.dropTempView(view)
        shutil.rmtree(self.folder, ignore_errors=True)


def _with_attribute_columns(profiles, schema=None):
    """The profiles table with its typed attribute columns and its list attribute columns
    (analytic.with_typed_columns, analytic.list_items), as a snapshot's profiles files."""
    return with_typed_columns(profiles, event_fields=False, schema=schema, lists=True)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _lower_udf() -> tuple[str, Any, list[str], str]:
    from cdp.functions.text import simple_lower

    return ("pql_lower", lambda s: None if s is None else simple_lower(s), ["VARCHAR"], "VARCHAR")


__all__ = ["SparkSession", "stop"]
