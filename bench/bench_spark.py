"""Batch segmentation on Spark (local) over a Parquet snapshot, beside DuckDB and the database.

    python bench/bench_spark.py --profiles 100000 --runs 5 --segments 100 --master local[2] [--record]
        [--skip-segments] [--engines duckdb,spark] [--per-query N] [--grouped-first]

Data (not timed): bench_sql's generated profiles (``generate_profiles(N, seed=42)``, ~10 events
each, cached as JSON Lines in bench/data/) bulk-loaded into SQLite and a throwaway PostgreSQL
cluster (``bench_sql.load_all``: executemany / COPY). Then:

1. Snapshot: ``export_snapshot`` (full) of the sandbox from PostgreSQL, timed on its own. Spark's
   start is timed on its own too: a server or a job starts it once per process.
2. The two benchmark segments of bench/_common.py (A: attributes only; B: the cart abandoners, a
   sequence with `then no event`): the compiled query on PostgreSQL and on DuckDB over the snapshot
   (median of ``--runs``), and on Spark the compiled query (``SparkSession.members``: compile,
   run, collect) and a hand-written Spark SQL query (what a user would write; the reference),
   measured in ``--runs`` interleaved pairs, so both sides see the same load: the ratio is the
   median of the pairs' ratios. All must return the same ids.
3. Batch (``--segments``, 0: none): bench_segments' mixed shapes (issue 14) saved as active
   segments, a job over all of them (``cdp.segments.jobs.run_job``, what ``cdp segments run``
   runs): on PostgreSQL twice (the second run is the steady state, every membership found), then
   on each of ``--engines`` over the snapshot, back to back: one statement per segment (as before
   the grouping), then a level of the reference graph's segments ``--per-query`` to a statement
   (default: the engine's, jobs.SEGMENTS_PER_QUERY, or 10 where that is 1); steady state too, each writing the
   memberships back to the database (that part timed on its own). All counts must be equal.

``--over-sqlite DB --snapshots ROOT``: only the batch, over a SQLite database grown by
bench/scale_data.py (1M profiles and more; no generation, no PostgreSQL) and a full snapshot of it
already taken (``export_snapshot``; ROOT holds ``prod/manifest``): ``--segments`` segments saved
active, then one job per engine of ``--engines`` (any of database, duckdb, spark; in that order,
each engine's default segments per statement), each timed with its writing back on its own, wall and CPU seconds
(the job's: this process and Spark's JVM; the writing back's: this process, where SQLite writes).
The first job inserts every membership, the later ones find them existing (an engine may be named
twice, e.g. ``duckdb,spark,duckdb``, to time both cases of the same engine): all must find the same
members per segment (asserted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sql  # noqa: E402 - the data and the bulk loader
from _common import SEGMENT_A, SEGMENT_B, carts_not_bought  # noqa: E402
from bench_analytic import median_time, run_batch, save_segments  # noqa: E402
from bench_segments import shapes  # noqa: E402

from cdp.devtools.postgres import start_cluster  # noqa: E402
from cdp.engine.sql import members_query as database_query  # noqa: E402
from cdp.engine.sql.analytic import DuckDBSession  # noqa: E402
from cdp.snapshots import export_snapshot  # noqa: E402
from cdp.snapshots.export import relations_sql  # noqa: E402
from cdp.storage.database import create_engine  # noqa: E402

AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
WEEK_AGO = AS_OF - timedelta(days=7)
SANDBOX = "prod"
SEGMENTS = {"a": SEGMENT_A, "b": SEGMENT_B}
HAND = {
    "a": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.sandbox = :sandbox
  AND p.`a.loyalty.tier` IN ('silver', 'gold')
  AND p.`a.home_address.country` = 'US'
  AND p.`a.loyalty.points` > 500
ORDER BY p.pk""",
    "b": f"""
SELECT p.pk, p.external_id FROM profiles p
WHERE p.pk IN ({carts_not_bought(':')})
  AND p.sandbox = :sandbox
  AND p.`a.loyalty.tier` IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > :lo AND e.ts <= :as_of
                AND e.`f.product.category` != p.`a.preferred_category`
                AND e.`f.product.size` != p.`a.preferred_size`)
ORDER BY p.pk""",
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def interleaved(first, second, runs: int) -> tuple[float, float, float, object, object]:
    """``runs`` pairs (first, second) after one warm-up of each: the medians of each side and the
    median of the pairs' ratios first / second."""
    a_result, b_result = first(), second()
    a_times, b_times = [], []
    for _ in range(runs):
        started = time.perf_counter()
        a_result = first()
        a_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        b_result = second()
        b_times.append(time.perf_counter() - started)
    ratio = statistics.median(a / b for a, b in zip(a_times, b_times))
    return statistics.median(a_times), statistics.median(b_times), ratio, a_result, b_result


def segments_side_by_side(engine, duck, spark, runs: int) -> list[dict]:
    params = {"sandbox": SANDBOX, "lo": WEEK_AGO, "as_of": AS_OF}
    rows = []
    for key, text in SEGMENTS.items():
        log(f"segment ({key})")
        query = database_query(text, dialect="postgresql", as_of=AS_OF, sandbox=SANDBOX)
        with engine.connect() as connection:
            database, database_rows = median_time(lambda: connection.execute(query).all(), runs)
        duckdb, duck_ids = median_time(lambda: duck.members(text, as_of=AS_OF, sandbox=SANDBOX), runs)
        hand_sql = HAND[key]
        used = {k: v for k, v in params.items() if f":{k}" in hand_sql}
        compiled, hand, ratio, spark_ids, hand_rows = interleaved(
            lambda: spark.members(text, as_of=AS_OF, sandbox=SANDBOX),
            lambda: spark.spark.sql(hand_sql, args=used).collect(), runs)
        assert ([e for _pk, e in spark_ids] == [e for _pk, e in duck_ids] == [r[1] for r in hand_rows]
                == [r.external_id for r in database_rows]), key
        rows.append({"key": key, "database": database, "duckdb": duckdb, "compiled": compiled, "hand": hand,
                     "ratio": ratio, "members": len(spark_ids)})
    return rows


def timed_batch(engine, on: str, root: Path, per_query: int | None = None, cpu: dict | None = None
                ) -> tuple[float, float, dict]:
    """A job over every active segment (``per_query``: segments per engine statement; None: the
    engine's default): (seconds, of which writing the memberships back, counts). ``cpu``, when
    given, receives the job's CPU seconds ("all": this process and Spark's JVM, from /proc) and
    those of the writing back ("writing": this process, where SQLite writes; write_members, which
    the database's own job does not call), and the seconds and CPU seconds of the set-wise update
    every engine's job runs ("update", "update_cpu": batch._write; on the database its writing
    back, the members having been computed into the run's table in SQL)."""
    from event_columns_spark import cpu_clock

    from cdp.segments import batch, jobs

    writing, writing_cpu = [0.0], [0.0]
    updating, updating_cpu = [0.0], [0.0]  # the set-wise update alone (batch._write), every engine's
    write_members, set_wise = batch.write_members, batch._write

    def timed_update(*args, **kwargs):
        began, cpu_began = time.perf_counter(), time.process_time()
        try:
            return set_wise(*args, **kwargs)
        finally:
            updating[0] += time.perf_counter() - began
            updating_cpu[0] += time.process_time() - cpu_began

    def timed_write(*args, **kwargs):
        began, cpu_began = time.perf_counter(), time.process_time()
        try:
            return write_members(*args, **kwargs)
        finally:
            writing[0] += time.perf_counter() - began
            writing_cpu[0] += time.process_time() - cpu_began

    with engine.begin() as connection:
        job = jobs.create_job(connection=connection, sandbox=SANDBOX, keys=None)
    batch.write_members, batch._write = timed_write, timed_update
    try:
        started, cpu_started = time.perf_counter(), cpu_clock()
        done = jobs.run_job(engine, job.id, as_of=AS_OF, on=on, snapshots=root, segments_per_query=per_query)
        seconds = time.perf_counter() - started
        if cpu is not None:
            cpu.update({"all": cpu_clock() - cpu_started, "writing": writing_cpu[0], "update": updating[0],
                        "update_cpu": updating_cpu[0]})
    finally:
        batch.write_members, batch._write = write_members, set_wise
    if done.status.value != "succeeded":
        raise SystemExit(f"{on}: the batch job failed: {done.message}")
    return seconds, writing[0], {k: v.model_dump() for k, v in done.counts.items()}


def batch_side_by_side(engine, root: Path, count: int, per_query: int | None, engines: list[str],
                       grouped_first: bool = False) -> dict:
    """PostgreSQL twice (the second: the steady state), then each analytic engine one statement
    per segment (before) and a level's segments grouped (after), back to back (``grouped_first``:
    in the other order, to see what the order and the load changed)."""
    from cdp.segments.jobs import SEGMENTS_PER_QUERY

    # the grouping measured against one statement per segment: the engine's default, or 10 where
    # the default is no grouping (DuckDB: measured no faster grouped)
    grouped_default = {on: SEGMENTS_PER_QUERY.get(on, 1) if SEGMENTS_PER_QUERY.get(on, 1) > 1 else 10 for on in engines}
    save_segments(engine, shapes(count))
    log(f"batch of {count}: on PostgreSQL twice")
    run_batch(engine, "database", root)
    database, steady = run_batch(engine, "database", root)
    out = {"database": database, "members": sum(c["realized"] + c["existing"] for c in steady.values()), "runs": []}
    for on in engines:
        grouped = per_query or grouped_default[on]
        pair = [("one per statement", 1), (f"{grouped} per statement", grouped)]
        for label, per in reversed(pair) if grouped_first else pair:
            log(f"batch of {count}: on {on}, {label}")
            seconds, writing, counts = timed_batch(engine, on, root, per)
            assert counts == steady, f"{on} ({label}) wrote other counts than the database"
            out["runs"].append({"engine": on, "per": per, "seconds": seconds, "writing": writing})
            log(f"  {seconds:.1f} s (writing back {writing:.1f} s)")
    return out


def report(args, stats, snapshot: float, spark_start: float, rows: list[dict], batch: dict | None,
           started: datetime) -> str:
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    load = os.getloadavg()
    lines = [f"### {started:%Y-%m-%d %H:%M} UTC — Spark (local) vs DuckDB vs PostgreSQL over a Parquet snapshot "
             "(bench/bench_spark.py)", "",
             f"`nice -n 15 .venv/bin/python bench/bench_spark.py --profiles {args.profiles} --runs {args.runs} "
             f"--segments {args.segments} --master {args.master}"
             + (" --skip-segments" if args.skip_segments else "") + f" --engines {args.engines}"
             + (" --grouped-first" if args.grouped_first else "")
             + (f" --per-query {args.per_query}" if args.per_query else "") + f"`; {args.profiles:,} profiles, {stats.events:,} "
             f"events; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} "
             f"cores; snapshot (full export from PostgreSQL) {ms(snapshot)}; Spark start {ms(spark_start)} "
             "(once per process)."]
    if rows:
        lines += ["", "| segment | PostgreSQL (compiled) | DuckDB compiled | Spark compiled | Spark hand-written | "
                  "Spark compiled / hand (median of pairs) | Spark / DuckDB | members |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['key']} | {ms(row['database'])} | {ms(row['duckdb'])} | {ms(row['compiled'])} | "
                     f"{ms(row['hand'])} | {row['ratio']:.2f}× | {row['compiled'] / row['duckdb']:.1f}× | "
                     f"{row['members']:,} |")
    if batch:
        lines += ["", f"Batch of {args.segments} segments (bench_segments' shapes; a job, memberships written back to "
                  f"PostgreSQL; steady state): PostgreSQL {batch['database']:.1f} s.", "",
                  "| engine | segments per statement | batch | of which writing back | batch / PostgreSQL |",
                  "|---|---:|---:|---:|---:|"]
        for run in batch["runs"]:
            lines.append(f"| {run['engine']} | {run['per']} | {run['seconds']:.1f} s | {run['writing']:.1f} s | "
                         f"{run['seconds'] / batch['database']:.2f}× |")
        lines += ["", f"Memberships in the steady state: {batch['members']:,} (equal counts everywhere, asserted)."]
    return "\n".join(lines) + "\n"


def computed_only(on: str, root: Path, count: int) -> tuple[float, float, dict[str, list[int]], list[str]]:
    """What a job over the snapshot computes, without writing back: the session started and the
    snapshot opened (seconds), then the levels of the reference graph, each level's segments
    jobs.SEGMENTS_PER_QUERY to a statement, remembered for the next level (seconds, members per
    segment, one line per statement with its CPU seconds: this process's threads and Spark's JVM,
    event_columns_spark.cpu_clock)."""
    from event_columns_spark import cpu_clock

    from cdp.engine.sql.analytic import open_session
    from cdp.schema.luma import luma_schema
    from cdp.segments import jobs
    from cdp.snapshots.export import latest_manifest, relations_sql

    catalogue = shapes(count)
    rows = [SimpleNamespace(pk=i + 1, key=key, expression=text) for i, (key, text) in enumerate(catalogue.items())]
    graph = {key: {other for other in catalogue if f'"{other}"' in text} for key, text in catalogue.items()}
    manifest = latest_manifest(root, SANDBOX)
    per = jobs.SEGMENTS_PER_QUERY.get(on, 1)
    began = time.perf_counter()
    session = open_session(on)
    if on == "spark":
        session.from_snapshot(manifest)
    else:
        session.from_sql(*relations_sql(manifest))
    opened = time.perf_counter() - began
    members: dict[str, list[int]] = {}
    lines = []
    try:
        began, cpu_began = time.perf_counter(), cpu_clock()
        done: dict[str, int] = {}
        for number, level in enumerate(jobs.dependency_levels(rows, graph)):
            found: list[list[int]] = []
            for start in range(0, len(level), per):
                statement, cpu = time.perf_counter(), cpu_clock()
                found += jobs._members_together(session, level[start:start + per], on=on, sandbox=SANDBOX,
                                                schema=luma_schema(), catalogue=catalogue, as_of=AS_OF,
                                                memberships_of=done)
                if per > 1:
                    lines.append(f"level {number}, segments {start}–{min(start + per, len(level)) - 1}: "
                                 f"{time.perf_counter() - statement:.1f} s, CPU {cpu_clock() - cpu:.1f} s "
                                 f"(load {os.getloadavg()[0]:.1f})")
            session.remember_many([(row.pk, pks) for row, pks in zip(level, found)])
            members.update((row.key, pks) for row, pks in zip(level, found))
            done.update((row.key, row.pk) for row in level)
        seconds = time.perf_counter() - began
        lines.append(f"computing in all: {seconds:.1f} s, CPU {cpu_clock() - cpu_began:.1f} s")
        return opened, seconds, members, lines
    finally:
        session.close()


def batch_over_sqlite(args) -> None:
    """The ``--over-sqlite`` mode (see the module's docstring)."""
    import sqlalchemy as sa

    from cdp.engine.sql.spark_session import stop

    if args.compute_only:
        from cdp.engine.sql.spark_session import stop

        first = None
        try:
            for on in args.engines.split(","):
                load = os.getloadavg()[0]
                log(f"computing {args.segments} segments on {on} (load {load:.1f})")
                opened, seconds, members, lines = computed_only(on, Path(args.snapshots), args.segments)
                for line in lines:
                    log("  " + line)
                assert first is None or members == first, f"{on} found other members than the first engine"
                first = members
                if args.digest:  # each segment's members as count and md5: engines run apart compared later
                    import hashlib
                    import json

                    Path(args.digest.replace("ENGINE", on)).write_text(json.dumps({
                        key: [len(pks), hashlib.md5(",".join(map(str, sorted(pks))).encode()).hexdigest()]
                        for key, pks in sorted(members.items())}, indent=0))
                print(f"| {on} | {opened:.1f} s | {seconds:.1f} s | {sum(map(len, members.values())):,} | "
                      f"{load:.1f} → {os.getloadavg()[0]:.1f} |", flush=True)
        finally:
            stop()
        return
    engine = create_engine(f"sqlite:///{args.over_sqlite}")

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # the query connection of bench_sql
        for pragma in bench_sql.SQLITE_PRAGMAS:
            dbapi_connection.execute(pragma)

    with engine.connect() as connection:
        profiles = connection.execute(sa.text("SELECT count(*) FROM profiles")).scalar_one()
    save_segments(engine, shapes(args.segments))
    rows, members = [], None
    try:
        for on in args.engines.split(","):
            load = os.getloadavg()[0]
            log(f"batch of {args.segments} on {on} ({profiles:,} profiles, load {load:.1f})")
            cpu: dict = {}
            seconds, writing, counts = timed_batch(engine, on, Path(args.snapshots), cpu=cpu)
            found = {key: c["realized"] + c["existing"] for key, c in counts.items()}
            assert members is None or found == members, f"{on} found other members than the first engine"
            members = found
            inserted = sum(c["realized"] for c in counts.values())
            rows.append((on, seconds, writing, cpu, inserted, load, os.getloadavg()[0]))
            log(f"  {seconds:.1f} s (writing back {writing:.1f} s; CPU {cpu['all']:.1f} s, writing back "
                f"{cpu['writing']:.1f} s; the set-wise update {cpu['update']:.1f} s, CPU {cpu['update_cpu']:.1f} s; "
                f"{inserted:,} memberships new; counts {counts})")
    finally:
        stop()
        engine.dispose()
    print(f"{profiles:,} profiles, {args.segments} segments, {sum(members.values()):,} memberships "
          "(equal per segment on every engine, asserted)")
    print("| engine (order run) | batch (wall / CPU) | of which writing back (wall / CPU) | computing (wall / CPU) | "
          "the set-wise update (wall / CPU) | memberships new | load at start → end |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for on, seconds, writing, cpu, inserted, before, after in rows:
        print(f"| {on} | {seconds:.1f} s / {cpu['all']:.1f} s | {writing:.1f} s / {cpu['writing']:.1f} s | "
              f"{seconds - writing:.1f} s / {cpu['all'] - cpu['writing']:.1f} s | "
              f"{cpu['update']:.1f} s / {cpu['update_cpu']:.1f} s | {inserted:,} | {before:.1f} → {after:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--segments", type=int, default=100, help="the batch's segments (0: no batch)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--per-query", type=int, default=None,
                        help="segments per statement of the grouped batch runs (default: the engine's)")
    parser.add_argument("--engines", default="duckdb,spark", help="the analytic engines of the batch")
    parser.add_argument("--grouped-first", action="store_true", help="the grouped batch run before the other")
    parser.add_argument("--skip-segments", action="store_true", help="only the batch (not segments a and b)")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    parser.add_argument("--over-sqlite", help="only the batch, over this SQLite database (bench/scale_data.py)")
    parser.add_argument("--snapshots", help="--over-sqlite: the snapshot root of that database")
    parser.add_argument("--digest", help="--compute-only: write each segment's member count and md5 to this file "
                                         "(ENGINE in the name: the engine's)")
    parser.add_argument("--compute-only", action="store_true",
                        help="--snapshots: only what each engine computes (no database, no writing back)")
    args = parser.parse_args()
    if args.over_sqlite or args.compute_only:
        return batch_over_sqlite(args)
    started = datetime.now(UTC)
    from cdp.engine.sql.spark_session import SparkSession, stop

    _lock = bench_sql.one_run_at_a_time()
    path, _generated = bench_sql.ensure_jsonl(args.profiles)
    cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in bench_sql.PG_SETTINGS.items()))
    try:
        sqlite_path = bench_sql.DATA / f"spark-{args.profiles}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
        pg_url = cluster.create_database(f"cdp_spark_{args.profiles}")
        log(f"{args.profiles:,}: bulk load (not timed)")
        stats = bench_sql.load_all(path, args.profiles, 0, sqlite_path, f"sqlite:///{sqlite_path}", pg_url)
        engine = create_engine(pg_url)
        root = bench_sql.DATA / f"spark-snapshots-{args.profiles}"
        log("snapshot from PostgreSQL")
        with engine.connect() as connection:
            began = time.perf_counter()
            manifest = export_snapshot(connection, sandbox=SANDBOX, root=root, full=True)
            snapshot = time.perf_counter() - began
        duck = DuckDBSession().from_sql(*relations_sql(manifest))
        log("Spark start")
        began = time.perf_counter()
        spark = SparkSession(master=args.master).from_snapshot(manifest)
        spark_start = time.perf_counter() - began
        try:
            rows = [] if args.skip_segments else segments_side_by_side(engine, duck, spark, args.runs)
            batch = batch_side_by_side(engine, root, args.segments, args.per_query, args.engines.split(","),
                                       args.grouped_first) \
                if args.segments else None
        finally:
            spark.close()
            duck.close()
            stop()
            engine.dispose()
    finally:
        cluster.stop()
    text = report(args, stats, snapshot, spark_start, rows, batch, started)
    print(text)
    if args.record:
        with (Path(__file__).parent / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write("\n" + text)


if __name__ == "__main__":
    sys.exit(main())
