"""Batch segmentation on Spark (local) over a Parquet snapshot, beside DuckDB and the database.

The benchmark segments of bench/_common.py (A: attributes only; B: the cart abandoners, events with
a sequence) over ``--profiles`` generated profiles (cdp.demo) loaded into SQLite and exported as a
full snapshot. Timed (median of ``--runs`` after a warm-up): the compiled SQL in SQLite, the
compiled query on DuckDB over the snapshot, the compiled query on Spark over the same snapshot
(``local[N]``), and a hand-written Spark SQL query for each segment (what a user would write; it
must return the same ids). Spark's start is reported apart: a server or job starts it once.

    .venv/bin/python bench/bench_spark.py --profiles 20000 --runs 3 [--record]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import SEGMENT_A, SEGMENT_B

from cdp.demo import generate_profiles
from cdp.engine.sql import members_query
from cdp.engine.sql.analytic import DuckDBSession
from cdp.engine.sql.loading import load_documents
from cdp.snapshots import export_snapshot
from cdp.snapshots.export import relations_sql
from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade

AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
WEEK_AGO = AS_OF - timedelta(days=7)
SANDBOX = "prod"
SEGMENTS = {"a": SEGMENT_A, "b": SEGMENT_B}
HAND = {
    "a": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.sandbox = :sandbox
  AND get_json_object(p.attributes, "$['loyalty.tier']") IN ('silver', 'gold')
  AND get_json_object(p.attributes, "$['home_address.country']") = 'US'
  AND CAST(get_json_object(p.attributes, "$['loyalty.points']") AS BIGINT) > 500
ORDER BY p.pk""",
    "b": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.pk IN (SELECT c.profile_pk FROM events c
               WHERE c.type = 'addToCart' AND c.ts > :lo AND c.ts <= :as_of
                 AND NOT EXISTS (SELECT 1 FROM events q
                                 WHERE q.profile_pk = c.profile_pk AND q.type = 'purchase' AND q.ts > c.ts
                                   AND q.ts <= :as_of AND q.ts <= c.ts + INTERVAL 1 DAY))
  AND p.sandbox = :sandbox
  AND get_json_object(p.attributes, "$['loyalty.tier']") IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > :lo AND e.ts <= :as_of
                AND get_json_object(e.fields, "$['product.category']")
                    != get_json_object(p.attributes, "$['preferred_category']")
                AND get_json_object(e.fields, "$['product.size']")
                    != get_json_object(p.attributes, "$['preferred_size']"))
ORDER BY p.pk""",
}


def median_time(function, runs: int) -> tuple[float, object]:
    result = function()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    from cdp.engine.sql.spark_session import SparkSession, stop

    folder = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    engine = create_engine(f"sqlite:///{folder / 'spark.sqlite'}")
    upgrade(engine)
    with engine.begin() as connection:
        load_documents(connection, generate_profiles(args.profiles, seed=42), sandbox=SANDBOX)
    with engine.connect() as connection:
        started = time.perf_counter()
        manifest = export_snapshot(connection, sandbox=SANDBOX, root=folder / "snapshots", full=True)
        snapshot = time.perf_counter() - started
    duck = DuckDBSession().from_sql(*relations_sql(manifest))
    started = time.perf_counter()
    spark = SparkSession(master=args.master).from_snapshot(manifest)
    spark_start = time.perf_counter() - started
    params = {"sandbox": SANDBOX, "lo": WEEK_AGO, "as_of": AS_OF}
    rows = []
    for key, text in SEGMENTS.items():
        query = members_query(text, dialect="sqlite", as_of=AS_OF, sandbox=SANDBOX)
        with engine.connect() as connection:
            database, database_ids = median_time(lambda: connection.execute(query).scalars().all(), args.runs)
        duckdb, duck_ids = median_time(lambda: duck.members(text, as_of=AS_OF, sandbox=SANDBOX), args.runs)
        compiled, spark_ids = median_time(lambda: spark.members(text, as_of=AS_OF, sandbox=SANDBOX), args.runs)
        hand_sql = HAND[key]
        used = {k: v for k, v in params.items() if f":{k}" in hand_sql}
        hand, hand_ids = median_time(lambda: spark.spark.sql(hand_sql, args=used).collect(), args.runs)
        assert ([e for _pk, e in spark_ids] == [e for _pk, e in duck_ids] == [r[1] for r in hand_ids]
                == list(database_ids)), key
        rows.append((key, database, duckdb, compiled, hand, len(spark_ids)))
    spark.close()
    duck.close()
    stop()
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    load = os.getloadavg()
    lines = [f"### {datetime.now(UTC):%Y-%m-%d} — Spark (local) vs DuckDB vs the database over a Parquet snapshot",
             "", f"`.venv/bin/python bench/bench_spark.py --profiles {args.profiles} --runs {args.runs} "
             f"--master {args.master}`; {args.profiles:,} profiles, {manifest.parts[0].events:,} events; "
             f"load average {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} cores; snapshot (full export) "
             f"{ms(snapshot)}; Spark start {ms(spark_start)} (once per process).", "",
             "| segment | SQLite (compiled) | DuckDB compiled | Spark compiled | Spark hand-written | "
             "Spark compiled / hand | Spark / DuckDB | members |", "|---|---|---|---|---|---|---|---|"]
    for key, database, duckdb, compiled, hand, members in rows:
        lines.append(f"| {key} | {ms(database)} | {ms(duckdb)} | {ms(compiled)} | {ms(hand)} | "
                     f"{compiled / hand:.2f}× | {compiled / duckdb:.1f}× | {members:,} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as results:
            results.write("\n" + table)


if __name__ == "__main__":
    sys.exit(main())
