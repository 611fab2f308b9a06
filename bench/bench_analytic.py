"""Batch segmentation on DuckDB over a Parquet snapshot, beside the database (SQLite).

    python bench/bench_analytic.py [--profiles 100000 200000 400000] [--runs 5] [--record]

For each N: ``cdp.demo.generate_profiles(N, seed=42)`` (~10 events per profile) loaded into a new
SQLite file by ``load_documents``; ``export_snapshot`` of the sandbox to Parquet (timed: the
snapshot's cost, reported on its own); then, for the two benchmark segments of bench/_common.py,
the median of ``--runs`` of: the compiled query on SQLite (``members_query``), the compiled query
on DuckDB over the snapshot (``DuckDBSession``, views over the Parquet files), and a hand-written
DuckDB query for the same segment (what a user would write; must return the same ids). Reported:
times, compiled / hand-written on DuckDB, DuckDB with the snapshot's time included, and the
growth from the smallest N to the largest (the projection to larger N is linear in that growth).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
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
WHERE p.sandbox = $sandbox
  AND json_extract_string(p.attributes, '/loyalty.tier') IN ('silver', 'gold')
  AND json_extract_string(p.attributes, '/home_address.country') = 'US'
  AND CAST(json_extract_string(p.attributes, '/loyalty.points') AS BIGINT) > 500
ORDER BY p.pk""",
    "b": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.pk IN (SELECT c.profile_pk FROM events c
               WHERE c.type = 'addToCart' AND c.ts > $lo AND c.ts <= $as_of
                 AND NOT EXISTS (SELECT 1 FROM events q
                                 WHERE q.profile_pk = c.profile_pk AND q.type = 'purchase' AND q.ts > c.ts
                                   AND q.ts <= $as_of AND q.ts <= c.ts + INTERVAL 1 DAY))
  AND p.sandbox = $sandbox
  AND json_extract_string(p.attributes, '/loyalty.tier') IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > $lo AND e.ts <= $as_of
                AND json_extract_string(e.fields, '/product.category') != json_extract_string(p.attributes, '/preferred_category')
                AND json_extract_string(e.fields, '/product.size') != json_extract_string(p.attributes, '/preferred_size'))
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


def one_size(count: int, runs: int, folder: Path) -> dict:
    engine = create_engine(f"sqlite:///{folder / f'analytic-{count}.sqlite'}")
    upgrade(engine)
    started = time.perf_counter()
    with engine.begin() as connection:
        load_documents(connection, generate_profiles(count, seed=42), sandbox=SANDBOX)
    load = time.perf_counter() - started
    with engine.connect() as connection:
        started = time.perf_counter()
        manifest = export_snapshot(connection, sandbox=SANDBOX, root=folder / f"snapshots-{count}", full=True)
        snapshot = time.perf_counter() - started
    session = DuckDBSession().from_sql(*relations_sql(manifest))
    naive = lambda d: d.replace(tzinfo=None)  # noqa: E731
    params = {"sandbox": SANDBOX, "lo": naive(WEEK_AGO), "as_of": naive(AS_OF)}
    row = {"profiles": count, "events": manifest.parts[0].events, "load": load, "snapshot": snapshot}
    for key, text in SEGMENTS.items():
        query = members_query(text, dialect="sqlite", as_of=AS_OF, sandbox=SANDBOX)
        with engine.connect() as connection:
            row[f"sqlite_{key}"], database_ids = median_time(lambda: connection.execute(query).scalars().all(), runs)
        row[f"duckdb_{key}"], compiled = median_time(
            lambda: session.members(text, as_of=AS_OF, sandbox=SANDBOX), runs)
        hand_sql = HAND[key]
        used = {k: v for k, v in params.items() if f"${k}" in hand_sql}
        row[f"hand_{key}"], hand = median_time(lambda: session.connection.execute(hand_sql, used).fetchall(), runs)
        assert [e for _pk, e in compiled] == [e for _pk, e in hand] == list(database_ids), key
        row[f"members_{key}"] = len(compiled)
    session.close()
    engine.dispose()
    return row


def report(rows: list[dict], runs: int) -> str:
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    lines = [f"### {datetime.now(UTC):%Y-%m-%d} — batch segmentation on DuckDB over Parquet snapshots "
             f"(bench/bench_analytic.py, median of {runs})", "",
             "| profiles | events | snapshot (full export) | segment | SQLite (compiled) | DuckDB compiled | "
             "DuckDB hand-written | compiled / hand | DuckDB + snapshot | members |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for key in SEGMENTS:
            lines.append(f"| {row['profiles']:,} | {row['events']:,} | {row['snapshot']:.1f} s | ({key}) | "
                         f"{ms(row[f'sqlite_{key}'])} | {ms(row[f'duckdb_{key}'])} | {ms(row[f'hand_{key}'])} | "
                         f"{row[f'duckdb_{key}'] / row[f'hand_{key}']:.2f}× | "
                         f"{ms(row[f'duckdb_{key}'] + row['snapshot'])} | {row[f'members_{key}']:,} |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        factor = last["profiles"] / first["profiles"]
        lines += ["", f"Growth from {first['profiles']:,} to {last['profiles']:,} profiles (×{factor:g}): "
                  + "; ".join(f"{name} ({key}) ×{last[f'{engine}_{key}'] / first[f'{engine}_{key}']:.1f}"
                              for key in SEGMENTS for engine, name in (("sqlite", "SQLite"), ("duckdb", "DuckDB")))
                  + f"; snapshot ×{last['snapshot'] / first['snapshot']:.1f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, nargs="+", default=[100_000, 200_000, 400_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdp-analytic-") as folder:
        rows = []
        for count in options.profiles:
            rows.append(one_size(count, options.runs, Path(folder)))
            print(rows[-1], file=sys.stderr, flush=True)
    text = report(rows, options.runs)
    print(text)
    if options.record:
        with (Path(__file__).parent / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write("\n" + text)


if __name__ == "__main__":
    main()
