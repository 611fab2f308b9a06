"""Batch segmentation on DuckDB over a Parquet snapshot, beside the databases (SQLite, PostgreSQL).

    python bench/bench_analytic.py [--profiles 100000 200000] [--runs 5] [--segments 100] [--record]

Data (not timed): bench_sql's generated profiles (``generate_profiles(N, seed=42)``, ~10 events
each, cached as JSON Lines in bench/data/) bulk-loaded into a new SQLite file and a throwaway
PostgreSQL cluster (``bench_sql.load_all``: executemany / COPY). Then, for each N:

1. Snapshot: ``export_snapshot`` of the sandbox to Parquet from SQLite and from PostgreSQL (timed:
   the snapshot's cost, reported on its own and added to DuckDB's times).
2. The two benchmark segments of bench/_common.py, median of ``--runs``: the compiled query on
   SQLite and on PostgreSQL, the compiled query on DuckDB over the snapshot (``DuckDBSession``,
   views over the Parquet files; its SQL text run as the hand-written ones are, compiling timed
   apart), and two hand-written DuckDB queries for the same segment — over
   the JSON attribute text, and over the snapshot's typed attribute columns (what a user writes
   once they are there; the reference for compiled / hand-written). All must return the same ids.
3. Batch: ``--segments`` saved segments of mixed shapes (bench_segments.shapes, issue 11), a job
   over all of them (``cdp.segments.jobs.run_job``): on the database twice (the second run is the
   steady state: every membership found), then ``--engine duckdb`` over the snapshot (steady state
   too); the counts of the two steady-state runs must be equal.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sql  # noqa: E402 - the data and the bulk loader
from _common import SEGMENT_A, SEGMENT_B, carts_not_bought  # noqa: E402
from bench_segments import shapes  # noqa: E402

from cdp.devtools.postgres import start_cluster  # noqa: E402
from cdp.engine.sql import members_query as database_query  # noqa: E402
from cdp.engine.sql.analytic import DuckDBSession, members_query, rendered  # noqa: E402
from cdp.schema import luma_schema  # noqa: E402
from cdp.segments import jobs, service  # noqa: E402
from cdp.segments.models import SegmentCreate, SegmentStatus  # noqa: E402
from cdp.snapshots import export_snapshot, latest_manifest  # noqa: E402
from cdp.snapshots.export import relations_sql  # noqa: E402
from cdp.storage.database import create_engine  # noqa: E402
from cdp.storage.models import segments  # noqa: E402

AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
WEEK_AGO = AS_OF - timedelta(days=7)
SANDBOX = "prod"
SEGMENTS = {"a": SEGMENT_A, "b": SEGMENT_B}
DATABASES = ("sqlite", "postgresql")
HAND = {
    "a": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.sandbox = $sandbox
  AND json_extract_string(p.attributes, '/loyalty.tier') IN ('silver', 'gold')
  AND json_extract_string(p.attributes, '/home_address.country') = 'US'
  AND CAST(json_extract_string(p.attributes, '/loyalty.points') AS BIGINT) > 500
ORDER BY p.pk""",
    "b": f"""
SELECT p.pk, p.external_id FROM profiles p
WHERE p.pk IN ({carts_not_bought('$')})
  AND p.sandbox = $sandbox
  AND json_extract_string(p.attributes, '/loyalty.tier') IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > $lo AND e.ts <= $as_of
                AND json_extract_string(e.fields, '/product.category') != json_extract_string(p.attributes, '/preferred_category')
                AND json_extract_string(e.fields, '/product.size') != json_extract_string(p.attributes, '/preferred_size'))
ORDER BY p.pk""",
}

# the same, reading the snapshot's typed attribute columns (what a user writes once they are there)
HAND_FLAT = {
    "a": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.sandbox = $sandbox
  AND p."a.loyalty.tier" IN ('silver', 'gold')
  AND p."a.home_address.country" = 'US'
  AND p."a.loyalty.points" > 500
ORDER BY p.pk""",
    "b": f"""
SELECT p.pk, p.external_id FROM profiles p
WHERE p.pk IN ({carts_not_bought('$')})
  AND p.sandbox = $sandbox
  AND p."a.loyalty.tier" IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > $lo AND e.ts <= $as_of
                AND json_extract_string(e.fields, '/product.category') != p."a.preferred_category"
                AND json_extract_string(e.fields, '/product.size') != p."a.preferred_size")
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


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def save_segments(engine: sa.Engine, catalogue: dict[str, str]) -> None:
    with engine.begin() as connection:
        connection.execute(segments.delete().where(segments.c.sandbox == SANDBOX))
        for key, text in catalogue.items():
            service.create_segment(connection=connection, sandbox=SANDBOX, schema=luma_schema(), spec=SegmentCreate(
                key=key, name=key, expression=text, status=SegmentStatus.draft))
        connection.execute(segments.update().where(segments.c.sandbox == SANDBOX).values(status="active"))


def run_batch(engine: sa.Engine, on: str, root: Path) -> tuple[float, dict]:
    with engine.begin() as connection:
        job = jobs.create_job(connection=connection, sandbox=SANDBOX, keys=None)
    started = time.perf_counter()
    done = jobs.run_job(engine, job.id, as_of=AS_OF, on=on, snapshots=root)
    seconds = time.perf_counter() - started
    if done.status.value != "succeeded":
        raise SystemExit(f"{on}: the batch job failed: {done.message}")
    return seconds, {k: v.model_dump() for k, v in done.counts.items()}


def one_size(count: int, runs: int, batch: int, path: Path, cluster) -> dict:
    sqlite_path = bench_sql.DATA / f"analytic-{count}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
    urls = {"sqlite": f"sqlite:///{sqlite_path}", "postgresql": cluster.create_database(f"cdp_analytic_{count}")}
    log(f"{count:,}: bulk load into SQLite and PostgreSQL (not timed)")
    stats = bench_sql.load_all(path, count, 0, sqlite_path, urls["sqlite"], urls["postgresql"])
    engines = {name: create_engine(url) for name, url in urls.items()}

    @sa.event.listens_for(engines["sqlite"], "connect")
    def _pragmas(dbapi_connection, _record):  # the query connection of bench_sql
        for pragma in bench_sql.SQLITE_PRAGMAS:
            dbapi_connection.execute(pragma)

    row: dict = {"profiles": count, "events": stats.events}
    roots = {name: bench_sql.DATA / f"analytic-snapshots-{count}-{name}" for name in DATABASES}
    for name in DATABASES:
        log(f"{count:,}: snapshot from {name}")
        with engines[name].connect() as connection:
            started = time.perf_counter()
            export_snapshot(connection, sandbox=SANDBOX, root=roots[name], full=True)
            row[f"snapshot_{name}"] = time.perf_counter() - started
    manifest = latest_manifest(roots["sqlite"], SANDBOX)
    session = DuckDBSession().from_sql(*relations_sql(manifest))
    naive = lambda d: d.replace(tzinfo=None)  # noqa: E731
    params = {"sandbox": SANDBOX, "lo": naive(WEEK_AGO), "as_of": naive(AS_OF)}
    for key, text in SEGMENTS.items():
        log(f"{count:,}: segment ({key})")
        ids = {}
        for name in DATABASES:
            query = database_query(text, dialect=name, as_of=AS_OF, sandbox=SANDBOX)
            with engines[name].connect() as connection:
                row[f"{name}_{key}"], found = median_time(lambda: connection.execute(query).all(), runs)
            ids[name] = [r.external_id for r in found]
        # the compiled SQL's run (as the hand-written one's), and apart from it what compiling costs
        # (check, compile, render: Python, once per segment and run)
        row[f"compile_{key}"], (sql_text, values) = median_time(lambda: rendered(members_query(
            text, engine="duckdb", as_of=AS_OF, sandbox=SANDBOX, flat=session.flat), session.dialect), runs)
        row[f"duckdb_{key}"], compiled = median_time(lambda: session.connection.execute(sql_text, values).fetchall(),
                                                     runs)
        assert compiled == session.members(text, as_of=AS_OF, sandbox=SANDBOX)
        for label, hands in (("hand", HAND), ("flat", HAND_FLAT)):
            hand_sql = hands[key]
            used = {k: v for k, v in params.items() if f"${k}" in hand_sql}
            row[f"{label}_{key}"], hand = median_time(lambda: session.connection.execute(hand_sql, used).fetchall(), runs)
            assert [e for _pk, e in hand] == [e for _pk, e in compiled], (key, label)
        assert [e for _pk, e in compiled] == ids["sqlite"] == ids["postgresql"], key
        row[f"members_{key}"] = len(compiled)
    session.close()
    if batch:
        catalogue = shapes(batch)
        for name in DATABASES:
            log(f"{count:,}: batch of {batch} on {name}: twice on the database, then on DuckDB")
            save_segments(engines[name], catalogue)
            run_batch(engines[name], "database", roots[name])
            row[f"batch_{name}"], steady = run_batch(engines[name], "database", roots[name])
            row[f"batch_duckdb_{name}"], on_duckdb = run_batch(engines[name], "duckdb", roots[name])
            assert on_duckdb == steady, name
    for engine in engines.values():
        engine.dispose()
    return row


def report(rows: list[dict], runs: int, batch: int, command: str, started: datetime) -> str:
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    load = os.getloadavg()
    lines = [f"### {started:%Y-%m-%d %H:%M} UTC — batch segmentation: databases vs DuckDB over Parquet snapshots "
             f"(bench/bench_analytic.py, median of {runs})", "",
             f"Command: `{command}`; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             f"(2 cores shared with other engineers' runs). Data: bench_sql's generated profiles, bulk-loaded "
             "(not timed). DuckDB reads the SQLite snapshot; hand = hand-written DuckDB SQL over the JSON text, "
             "flat = over the snapshot's typed attribute columns (the reference for compiled / hand-written).", "",
             "| profiles | events | segment | SQLite | PostgreSQL | DuckDB compiled | DuckDB hand (JSON) | "
             "DuckDB hand (flat) | compiled / hand (flat) | DuckDB + snapshot (SQLite) | members |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        for key in SEGMENTS:
            lines.append(f"| {row['profiles']:,} | {row['events']:,} | ({key}) | {ms(row[f'sqlite_{key}'])} | "
                         f"{ms(row[f'postgresql_{key}'])} | {ms(row[f'duckdb_{key}'])} | {ms(row[f'hand_{key}'])} | "
                         f"{ms(row[f'flat_{key}'])} | {row[f'duckdb_{key}'] / row[f'flat_{key}']:.2f}× | "
                         f"{ms(row[f'duckdb_{key}'] + row['snapshot_sqlite'])} | {row[f'members_{key}']:,} |")
    lines += ["", "Compiling a segment for DuckDB (check, compile, render; not in the times above): "
              + "; ".join(f"{row['profiles']:,}: " + ", ".join(f"({key}) {ms(row[f'compile_{key}'])}" for key in SEGMENTS)
                          for row in rows) + "."]
    lines += ["", "| profiles | snapshot from SQLite | snapshot from PostgreSQL |"
              + (f" batch of {batch}: SQLite | on DuckDB (SQLite's snapshot) | PostgreSQL | on DuckDB "
                 "(PostgreSQL's snapshot) |" if batch else ""),
              "|---|---:|---:|" + ("---:|---:|---:|---:|" if batch else "")]
    for row in rows:
        line = f"| {row['profiles']:,} | {row['snapshot_sqlite']:.1f} s | {row['snapshot_postgresql']:.1f} s |"
        if batch:
            line += "".join(f" {row[f'batch_{name}']:.1f} s | {row[f'batch_duckdb_{name}']:.1f} s |" for name in DATABASES)
        lines.append(line)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        factor = last["profiles"] / first["profiles"]
        lines += ["", f"Growth from {first['profiles']:,} to {last['profiles']:,} profiles (×{factor:g}): "
                  + "; ".join(f"{name} ({key}) ×{last[f'{engine}_{key}'] / first[f'{engine}_{key}']:.1f}"
                              for key in SEGMENTS for engine, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL"),
                                                                      ("duckdb", "DuckDB")))
                  + f"; snapshot from SQLite ×{last['snapshot_sqlite'] / first['snapshot_sqlite']:.1f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, nargs="+", default=[100_000, 200_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--segments", type=int, default=100, help="the batch's segments (0: no batch)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    options = parser.parse_args()
    command = "python bench/bench_analytic.py " + " ".join(sys.argv[1:])
    started = datetime.now(UTC)
    _lock = bench_sql.one_run_at_a_time()
    path, _generated = bench_sql.ensure_jsonl(max(options.profiles))
    cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in bench_sql.PG_SETTINGS.items()))
    try:
        rows = []
        for count in options.profiles:
            rows.append(one_size(count, options.runs, options.segments, path, cluster))
            log(str(rows[-1]))
    finally:
        cluster.stop()
    text = report(rows, options.runs, options.segments, command, started)
    print(text)
    if options.record:
        with (Path(__file__).parent / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write("\n" + text)


if __name__ == "__main__":
    main()
