"""Batch segmentation at 1M / 2M / 4M profiles: the database vs DuckDB vs Spark over a Parquet
snapshot, side by side per size, and how each engine's time grows (issue 21).

    python bench/bench_scale.py --profiles 1000000 2000000 4000000 [--databases sqlite postgresql]
        [--postgresql-max 2000000] [--runs 3] [--warmup 1] [--spark-runs 1] [--spark-warmup 1]
        [--master local[2]] [--templates 50000] [--record] [--from-log]

Data (not timed): bench/scale_data.py — ``generate_profiles(T, seed=42)`` documents (~10 events
each) repeated set-wise inside each database up to N profiles (the database grows in place:
1M, then 2M, then 4M). For each N, ascending:

1. Snapshot: ``export_snapshot(full=True)`` from each database (timed: seconds and µs per event
   row; reported apart and added to the analytic engines' times).
2. The two benchmark segments of bench/_common.py (A: attributes; B: the cart abandoners), median
   of ``--runs`` after a warm-up: the compiled query on each database (SQLite, PostgreSQL up to
   ``--postgresql-max`` profiles), on DuckDB over the SQLite snapshot (``DuckDBSession`` over
   ``relations_sql``) and on Spark (``SparkSession(master).from_snapshot``, median of
   ``--spark-runs``); members() as a caller runs it (compile included: milliseconds). All engines
   must return the same ids (asserted).
3. Growth: per engine and segment, a least-squares fit of log(time) on log(profiles) — the
   exponent b of time ∝ profiles^b (1 = linear) — and time per million profiles from a linear
   fit; the projection to 8M and 16M profiles from the power law.

``--event-columns``: only DuckDB's event-reading segments over a snapshot with and without typed
event-field columns, beside hand-written SQL over them, and the export's cost of those columns
(bench/event_columns.py). ``--event-columns-spark``: the same on Spark over the snapshots that left
(bench/event_columns_spark.py).

Every size's figures are appended to bench/data/scale-results.jsonl as they are measured (Spark,
the slowest, last); ``--from-log`` prints the report of the latest figures of each size there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sql  # noqa: E402 - PostgreSQL and SQLite settings
import scale_data  # noqa: E402
from _common import SEGMENT_A, SEGMENT_B  # noqa: E402

from cdp.engine.sql import members_query as database_query  # noqa: E402
from cdp.engine.sql.analytic import DuckDBSession  # noqa: E402
from cdp.snapshots import export_snapshot  # noqa: E402
from cdp.snapshots.export import relations_sql  # noqa: E402

AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
SANDBOX = scale_data.SANDBOX
SEGMENTS = {"a": SEGMENT_A, "b": SEGMENT_B}
# the databases and snapshots (CDP_SCALE_DATA: another folder, e.g. a copy grown further while a
# run reads this one); the logs stay in bench/data
DATA = Path(os.environ.get("CDP_SCALE_DATA") or bench_sql.DATA)
RESULTS_LOG = bench_sql.DATA / "scale-results.jsonl"
# every --event-columns / --event-columns-spark run's figures, one line each (repeats kept: the spread)
EVENT_COLUMNS_LOG = bench_sql.DATA / "scale-event-columns.jsonl"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def median_time(function, runs: int, warmup: int = 1) -> tuple[float, object]:
    result = None
    for _ in range(warmup):
        result = function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def save(row: dict, command: str) -> None:
    """The size's figures so far (a later line for the same size supersedes an earlier one)."""
    save_to(RESULTS_LOG, row, command)


def save_to(path: Path, row: dict, command: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"command": command, **row}) + "\n")


def logged_rows(sizes: list[int]) -> list[dict]:
    rows: dict[int, dict] = {}
    for line in RESULTS_LOG.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[row["profiles"]] = row
    return [rows[size] for size in sorted(sizes) if size in rows]


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def snapshot(engine: sa.Engine, root: Path) -> tuple[float, object]:
    shutil.rmtree(root, ignore_errors=True)
    with engine.connect() as connection:
        started = time.perf_counter()
        manifest = export_snapshot(connection, sandbox=SANDBOX, root=root, full=True)
        return time.perf_counter() - started, manifest


def one_size(count: int, options, engines: dict[str, sa.Engine], spark_session_class, command: str) -> dict:
    row: dict = {"profiles": count, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "load_at_start": os.getloadavg()[0]}
    if "postgresql" in engines:
        with engines["postgresql"].connect() as connection:
            row["postgresql_bytes"] = connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
    manifests = {}
    for name, engine in engines.items():
        log(f"{count:,}: snapshot from {name}")
        seconds, manifest = snapshot(engine, DATA / f"scale-snapshots-{name}")
        events = manifest.parts[-1].events
        row[f"snapshot_{name}"] = seconds
        row[f"snapshot_{name}_us_per_event"] = seconds / events * 1e6
        row[f"snapshot_{name}_bytes"] = folder_bytes(manifest.folder)
        row["events"] = events
        manifests[name] = manifest
        log(f"{count:,}: snapshot from {name}: {seconds:.1f} s, {events:,} events")
    # DuckDB and Spark read one snapshot: SQLite's when there is one (as issue 21's first runs did)
    source = "sqlite" if "sqlite" in manifests else next(iter(manifests))
    manifest = manifests[source]
    row["snapshot_read"] = source
    save(row, command)
    duck = DuckDBSession().from_sql(*relations_sql(manifest))
    ids: dict[str, dict[str, list]] = {key: {} for key in SEGMENTS}
    for key, text in SEGMENTS.items():
        for name, engine in engines.items():
            log(f"{count:,}: segment ({key}) on {name}")
            query = database_query(text, dialect=name, as_of=AS_OF, sandbox=SANDBOX)
            with engine.connect() as connection:
                row[f"{name}_{key}"], found = median_time(lambda: connection.execute(query).all(), options.runs,
                                                          options.warmup)
            ids[key][name] = [r.external_id for r in found]
        log(f"{count:,}: segment ({key}) on DuckDB")
        row[f"duckdb_{key}"], found = median_time(lambda: duck.members(text, as_of=AS_OF, sandbox=SANDBOX),
                                                  options.runs, options.warmup)
        ids[key]["duckdb"] = [e for _pk, e in found]
        row[f"members_{key}"] = len(ids[key]["duckdb"])
        assert all(found_ids == ids[key]["duckdb"] for found_ids in ids[key].values()), key
        log(f"{count:,}: ({key}) " + ", ".join(f"{k} {row[f'{k}_{key}']:.2f} s" for k in ids[key]))
        save(row, command)
    duck.close()
    if spark_session_class is None:
        return row
    started = time.perf_counter()
    spark = spark_session_class(master=options.master)
    spark.from_snapshot(manifest)
    row["spark_session"] = time.perf_counter() - started
    for key, text in SEGMENTS.items():  # last: the slowest; the other engines' figures are saved
        log(f"{count:,}: segment ({key}) on Spark {options.master}")
        row[f"spark_{key}"], found = median_time(lambda: spark.members(text, as_of=AS_OF, sandbox=SANDBOX),
                                                 options.spark_runs, options.spark_warmup)
        assert [e for _pk, e in found] == ids[key]["duckdb"], key
        log(f"{count:,}: ({key}) spark {row[f'spark_{key}']:.2f} s")
        save(row, command)
    spark.close()
    return row


def spark_over_the_last_snapshot(count: int, options, spark_session_class, command: str) -> dict:
    """``--spark-only``: Spark's figures for a size whose snapshot (bench/data/scale-snapshots-<the
    database it was read from>) and other figures are already in the log; DuckDB gives the ids to compare."""
    from cdp.snapshots import latest_manifest

    row = {**logged_rows([count])[0], "command": command}
    manifest = latest_manifest(DATA / f"scale-snapshots-{row.get('snapshot_read', 'sqlite')}", SANDBOX)
    assert manifest is not None and manifest.parts[-1].events == row["events"], "the snapshot is of another size"
    duck = DuckDBSession().from_sql(*relations_sql(manifest))
    expected = {key: [e for _pk, e in duck.members(text, as_of=AS_OF, sandbox=SANDBOX)] for key, text in SEGMENTS.items()}
    duck.close()
    started = time.perf_counter()
    spark = spark_session_class(master=options.master)
    spark.from_snapshot(manifest)
    row["spark_session"] = time.perf_counter() - started
    for key, text in SEGMENTS.items():
        log(f"{count:,}: segment ({key}) on Spark {options.master}")
        row[f"spark_{key}"], found = median_time(lambda: spark.members(text, as_of=AS_OF, sandbox=SANDBOX),
                                                 options.spark_runs, options.spark_warmup)
        assert [e for _pk, e in found] == expected[key], key
        log(f"{count:,}: ({key}) spark {row[f'spark_{key}']:.2f} s")
        save(row, command)
    spark.close()
    return row


def cluster_cpu(cluster) -> float:
    """CPU seconds of the throwaway cluster so far: the postmaster's own and its reaped children's
    (backends and parallel workers that exited), and its live children's (user + system, /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = (cluster.directory / "data" / "postmaster.pid").read_text().split()[0]
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == postmaster:  # ppid
            total += int(fields[11]) + int(fields[12])
    return total / tick


def postgresql_timings(options, command: str) -> None:
    """``--database-timings``: PostgreSQL grown in a throwaway cluster to each size (its load timed),
    then the three segments of bench/event_columns.py (a, b, c) by the database's own query as a
    caller runs it (compile included), ``--runs`` after ``--warmup``: wall seconds and CPU seconds
    (this process plus the cluster's processes, /proc). The members must equal those the
    ``--event-columns`` runs logged at the same size (SQLite's), when there are any. One line per
    size in bench/data/scale-event-columns.jsonl (``"engine": "postgresql"``)."""
    import event_columns
    from cdp.devtools.postgres import start_cluster

    logged_members: dict[tuple[int, str], int] = {}
    if EVENT_COLUMNS_LOG.exists():
        for line in EVENT_COLUMNS_LOG.read_text(encoding="utf-8").splitlines():
            logged = json.loads(line)
            if logged.get("engine") is None:  # SQLite and DuckDB
                for key in event_columns.SEGMENTS:
                    if f"members_{key}" in logged:
                        logged_members[(logged["profiles"], key)] = logged[f"members_{key}"]
    # bench_sql's max_wal_size (16GB) keeps that much WAL on disk while millions of rows load
    settings = {**bench_sql.PG_SETTINGS, "shared_buffers": options.pg_shared_buffers,
                "max_wal_size": options.pg_max_wal_size}
    cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in settings.items()))
    try:
        url = cluster.create_database("cdp_scale")
        log(f"templates: generate_profiles({options.templates:,}) for postgresql")
        made = scale_data.templates(options.templates, "postgresql")
        for count in sorted(options.profiles):
            log(f"{count:,}: grow postgresql (timed)")
            load_start = os.getloadavg()[0]
            grown = time.perf_counter()
            engine = scale_data.grow_postgres(url, count, made, log)
            row: dict = {"engine": "postgresql", "profiles": scale_data.profile_count(engine),
                         "at": datetime.now(UTC).isoformat(timespec="seconds"), "grow_load_at_start": load_start,
                         "grow_seconds": time.perf_counter() - grown, "load_at_start": os.getloadavg()[0]}
            log(f"{count:,}: postgresql ready ({row['grow_seconds']:.0f} s)")
            try:
                with engine.connect() as connection:
                    row["postgresql_bytes"] = connection.execute(
                        sa.text("SELECT pg_database_size(current_database())")).scalar()
                    for key, text in event_columns.SEGMENTS.items():
                        wall, cpu, found = [], [], None
                        for round_ in range(options.warmup + options.runs):
                            cpu_started, started = time.process_time() + cluster_cpu(cluster), time.perf_counter()
                            found = connection.execute(database_query(
                                text, dialect="postgresql", as_of=AS_OF, sandbox=SANDBOX)).all()
                            if round_ >= options.warmup:
                                wall.append(time.perf_counter() - started)
                                cpu.append(time.process_time() + cluster_cpu(cluster) - cpu_started)
                        row[f"database_{key}"], row[f"database_cpu_{key}"] = statistics.median(wall), statistics.median(cpu)
                        row[f"database_runs_{key}"], row[f"database_cpu_runs_{key}"] = wall, cpu
                        row[f"members_{key}"] = len(found)
                        expected = logged_members.get((row["profiles"], key))
                        assert expected is None or expected == len(found), (key, expected, len(found))
                        log(f"{count:,}: ({key}) postgresql {row[f'database_{key}']:.2f} s, CPU "
                            f"{row[f'database_cpu_{key}']:.2f} s, {len(found):,} members"
                            + ("" if expected is None else " (= SQLite's)"))
            finally:
                engine.dispose()
            save_to(EVENT_COLUMNS_LOG, {**row, "load_at_end": os.getloadavg()[0]}, command)
    finally:
        cluster.stop()


# ---- growth -------------------------------------------------------------------------------------

def fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(exponent b, coefficient a, seconds per million profiles) of time = a · profiles^b (least
    squares on the logarithms) and of a straight line through the points."""
    xs = [math.log(p) for p, _t in points]
    ys = [math.log(t) for _p, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = math.exp(my - b * mx)
    px = [p / 1e6 for p, _t in points]
    pt = [t for _p, t in points]
    mpx, mpt = statistics.fmean(px), statistics.fmean(pt)
    slope = sum((x - mpx) * (y - mpt) for x, y in zip(px, pt)) / sum((x - mpx) ** 2 for x in px)
    return b, a, slope


ENGINES = (("sqlite", "SQLite"), ("postgresql", "PostgreSQL"), ("duckdb", "DuckDB"), ("spark", "Spark"))


def fit_spread(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """(b, its standard error, mean log profiles, mean log time) of the least-squares fit of
    log(time) on log(profiles); the error is nan with no residual degree of freedom."""
    xs = [math.log(p) for p, _t in points]
    ys = [math.log(t) for _p, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    residuals = [y - (my + b * (x - mx)) for x, y in zip(xs, ys)]
    se = math.sqrt(sum(r * r for r in residuals) / (len(points) - 2) / sxx) if len(points) > 2 else math.nan
    return b, se, mx, my


# Until 2026-12-07 14:13 UTC (commit 59221ef) bench/event_columns_spark.py passed only the event
# columns to the compiler, so Spark's compiled (a) and (b) read every profile attribute through
# get_json_object while the hand-written queries read the typed a.* columns: those runs measured
# another query. Spark lines logged since carry SPARK_READS_FIELD (event_columns_spark.measure);
# a Spark line without it counts for (a) and (b) only if logged from the fix on ("at", the run's
# start). (c) reads no attribute: every Spark line counts for it.
SPARK_READS_FIELD = "spark_compiled_reads_attribute_columns"
SPARK_ATTRIBUTE_COLUMNS_SINCE = datetime(2026, 12, 7, 14, 13, tzinfo=UTC)
SPARK_ATTRIBUTE_SEGMENTS = ("a", "b")


def spark_comparable(row: dict, key: str) -> bool:
    """Whether a logged Spark run's compiled query for segment ``key`` is the one measured today
    (the typed attribute columns read, as ``SparkSession.members`` reads them)."""
    if key not in SPARK_ATTRIBUTE_SEGMENTS or row.get(SPARK_READS_FIELD):
        return True
    if SPARK_READS_FIELD in row:  # logged false: a run that read attributes through JSON
        return False
    return datetime.fromisoformat(row["at"]) >= SPARK_ATTRIBUTE_COLUMNS_SINCE


def growth_series(logged: list[dict], excluded: list[str] | None = None
                  ) -> dict[tuple[str, str], dict[int, list[float]]]:
    """Per (engine, segment): every logged run's seconds, by size. The event-columns runs give
    SQLite's own query, DuckDB (compiled and hand-written) and the export; Spark's runs Spark
    (for (a) and (b) only the runs whose compiled query read the typed attribute columns:
    ``spark_comparable``; each run left out is described in ``excluded``);
    ``--database-timings`` PostgreSQL. Wall and CPU seconds are series of their own; "+ export"
    series add the median export of the size to each run of DuckDB / Spark."""
    import event_columns

    series: dict[tuple[str, str], dict[int, list[float]]] = {}

    def add(label: str, key: str, profiles: int, seconds: float | None) -> None:
        if seconds:
            series.setdefault((label, key), {}).setdefault(profiles, []).append(seconds)

    for row in logged:
        profiles, engine = row["profiles"], row.get("engine")
        if engine == "spark":
            left_out = [key for key in event_columns.SEGMENTS
                        if not spark_comparable(row, key) and row.get(f"spark_columns_{key}")]
            if left_out and excluded is not None:
                excluded.append(f"Spark at {profiles:,} profiles, logged {row['at']}: "
                                + ", ".join(f"({key})" for key in left_out))
        for key in event_columns.SEGMENTS:
            if engine == "spark":
                if not spark_comparable(row, key):
                    continue
                add("Spark local[2], compiled", key, profiles, row.get(f"spark_columns_{key}"))
                add("Spark local[2], hand-written", key, profiles, row.get(f"spark_hand_{key}"))
                add("Spark local[2], compiled, CPU (Python + JVM)", key, profiles, row.get(f"spark_cpu_columns_{key}"))
            elif engine == "postgresql":
                add("PostgreSQL (the database)", key, profiles, row.get(f"database_{key}"))
                add("PostgreSQL, CPU (cluster + client)", key, profiles, row.get(f"database_cpu_{key}"))
            else:
                add("SQLite (the database)", key, profiles, row.get(f"database_{key}"))
                add("SQLite, CPU", key, profiles, row.get(f"database_cpu_{key}"))
                add("DuckDB, compiled", key, profiles, row.get(f"columns_{key}"))
                add("DuckDB, hand-written", key, profiles, row.get(f"hand_{key}"))
                add("DuckDB, compiled, CPU", key, profiles, row.get(f"cpu_columns_{key}"))
                add("DuckDB, hand-written, CPU", key, profiles, row.get(f"cpu_hand_{key}"))
        if engine is None:
            add("snapshot export from SQLite", "—", profiles, row.get("export"))
            add("snapshot export from SQLite, CPU", "—", profiles, row.get("export_cpu"))
    exports = {size: statistics.median(values) for size, values in series.get(("snapshot export from SQLite", "—"),
                                                                                 {}).items()}
    for (label, key), by_size in list(series.items()):
        if label in ("DuckDB, compiled", "Spark local[2], compiled"):
            for size, values in by_size.items():
                for value in values:
                    if size in exports:
                        add(f"{label} + export", key, size, value + exports[size])
    rank = lambda label: next(i for i, name in enumerate(("SQLite", "PostgreSQL", "DuckDB", "Spark", "snapshot"))  # noqa: E731
                              if label.startswith(name))
    return dict(sorted(series.items(), key=lambda item: (item[0][1] == "—", item[0][1], rank(item[0][0]))))


def growth_report(logged: list[dict]) -> str:
    """How each engine's time grows with the profiles, from every run the log holds (repeats kept):
    per engine, segment and size the runs' median (lowest–highest), the exponent b of time = a ·
    profiles^b over every run's point (least squares on the logarithms) with its standard error,
    the exponent of each doubling (from the medians), and the projection to 8M and 16M profiles —
    only for a series measured at three sizes or more (two fit any exponent), its range from b ± one
    standard error."""
    excluded: list[str] = []
    series = growth_series(logged, excluded)
    sizes = sorted({size for by_size in series.values() for size in by_size})
    s = lambda v: f"{v:,.2f} s"  # noqa: E731
    lines = ["| engine | segment | " + " | ".join(f"{p / 1e6:g}M (runs: median, lowest–highest)" for p in sizes)
             + " | b ± s.e. (every run) | b per doubling (medians) | projected 8M (b ± s.e.) | projected 16M |",
             "|---|---|" + "---:|" * len(sizes) + "---:|---|---:|---:|"]
    for (label, key), by_size in series.items():
        cells = []
        for size in sizes:
            values = by_size.get(size, [])
            cells.append("—" if not values else s(values[0]) + " (1)" if len(values) == 1 else
                         f"{s(statistics.median(values))} ({len(values)}: {min(values):,.2f}–{max(values):,.2f})")
        medians = sorted((size, statistics.median(values)) for size, values in by_size.items())
        doublings = ", ".join(f"{math.log(t2 / t1) / math.log(p2 / p1):.2f}"
                              for (p1, t1), (p2, t2) in zip(medians, medians[1:]))
        points = [(size, value) for size, values in by_size.items() for value in values]
        fitted = projections = "—"
        if len(by_size) >= 2:
            b, se, mx, my = fit_spread(points)
            fitted = f"{b:.2f}" + ("" if math.isnan(se) else f" ± {se:.2f}")
            if len(by_size) >= 3:
                at = lambda n, e: math.exp(my + e * (math.log(n) - mx))  # noqa: E731
                projections = " | ".join(f"{s(at(n, b))} ({at(n, b - se):,.1f}–{at(n, b + se):,.1f})"
                                         for n in (8e6, 16e6))
        lines.append(f"| {label} | {key if key == '—' else f'({key})'} | " + " | ".join(cells)
                     + f" | {fitted} | {doublings or '—'} | "
                     + (projections if projections != "—" else "— | —") + " |")
    if excluded:
        lines += ["", f"Left out of Spark's (a) and (b): {len(excluded)} run(s) whose compiled query read the profile "
                  f"attributes through JSON (logged before the bench read the typed attribute columns, "
                  f"{SPARK_ATTRIBUTE_COLUMNS_SINCE:%Y-%m-%d %H:%M} UTC, without \"{SPARK_READS_FIELD}\"): "
                  + "; ".join(excluded) + "."]
    return "\n".join(lines) + "\n"


def report(rows: list[dict], options, command: str, started: datetime) -> str:
    s = lambda v: "—" if v is None else f"{v:,.2f} s"  # noqa: E731
    load = os.getloadavg()
    sizes = ", ".join(f"{r['profiles']:,}" for r in rows)
    lines = [f"### {started:%Y-%m-%d %H:%M} UTC — batch segmentation at {sizes} "
             "profiles: database vs DuckDB vs Spark over Parquet snapshots (bench/bench_scale.py)", "",
             "Commands: " + "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", command) for r in rows))
             + f" (median of --runs after --warmup untimed runs, Spark: --spark-runs after --spark-warmup); load "
             f"average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores. DuckDB "
             "and Spark read the snapshot of " + ", ".join(dict.fromkeys(
                 dict(ENGINES)[r.get("snapshot_read", "sqlite")] for r in rows))
             + "; \"+ snapshot\" adds that export's time.", "",
             "| profiles | events | segment | SQLite | PostgreSQL | DuckDB | Spark | DuckDB + snapshot | "
             "Spark + snapshot | members |", "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        snap = row.get(f"snapshot_{row.get('snapshot_read', 'sqlite')}")
        for key in SEGMENTS:
            duck, spark = row.get(f"duckdb_{key}"), row.get(f"spark_{key}")
            lines.append(f"| {row['profiles']:,} | {row['events']:,} | ({key}) | {s(row.get(f'sqlite_{key}'))} | "
                         f"{s(row.get(f'postgresql_{key}'))} | {s(duck)} | {s(spark)} | "
                         f"{s(duck + snap if snap and duck else None)} | {s(spark + snap if snap and spark else None)} | "
                         f"{row[f'members_{key}']:,} |")
    lines += ["", "| profiles | snapshot from SQLite | µs / event row | from PostgreSQL | µs / event row | "
              "snapshot size | PostgreSQL database | Spark session (from_snapshot) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        size = row.get("snapshot_sqlite_bytes") or row.get("snapshot_postgresql_bytes") or 0
        us = lambda name: f"{row[f'snapshot_{name}_us_per_event']:.1f}" if f"snapshot_{name}" in row else "—"  # noqa: E731
        database = f"{row['postgresql_bytes'] / 2**30:.2f} GiB" if "postgresql_bytes" in row else "—"
        lines.append(f"| {row['profiles']:,} | {s(row.get('snapshot_sqlite'))} | {us('sqlite')} | "
                     f"{s(row.get('snapshot_postgresql'))} | {us('postgresql')} | {size / 2**30:.2f} GiB | "
                     f"{database} | {s(row.get('spark_session'))} |")
    lines += ["", "Growth: time = a · profiles^b fitted on the sizes measured (least squares on the logarithms); "
              "slope = seconds per million profiles (a straight line); projections from the power law.", "",
              "| engine | segment | sizes | exponent b | slope (s / 1M profiles) | projected 8M | projected 16M |",
              "|---|---|---|---:|---:|---:|---:|"]
    series = [(f"{label}", lambda r, k=f"{name}_{key}": r.get(k), f"({key})") for name, label in ENGINES
              for key in SEGMENTS]
    series += [(f"snapshot from {label}", lambda r, k=f"snapshot_{name}": r.get(k), "—")
               for name, label in ENGINES[:2]]
    for label, value, key in series:
        points = [(r["profiles"], value(r)) for r in rows if value(r)]
        if len(points) < 2:
            continue
        b, a, slope = fit(points)
        lines.append(f"| {label} | {key} | {len(points)} | {b:.2f} | {slope:.2f} | {s(a * 8e6 ** b)} | "
                     f"{s(a * 16e6 ** b)} |")
    return "\n".join(lines) + "\n"


def event_columns_only(options, command: str, started: datetime) -> None:
    """``--event-columns``: per size, SQLite grown in place, then bench/event_columns.py's figures."""
    import event_columns

    load_start = os.getloadavg()
    made = scale_data.templates(options.templates, "sqlite")
    rows = []
    for count in sorted(options.profiles):
        log(f"{count:,}: grow sqlite (not timed)")
        engine = scale_data.grow_sqlite(DATA / "scale.sqlite", count, made, log)
        count = scale_data.profile_count(engine)  # the database grows in place, never shrinks: what it holds
        try:
            rows.append({"profiles": count, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                         "load_at_start": os.getloadavg()[0], **event_columns.measure(
                engine, DATA, SANDBOX, options.runs, lambda m, c=count: log(f"{c:,}: {m}"),
                reuse=options.reuse_export, database=not options.no_database)})
            save_to(EVENT_COLUMNS_LOG, {**rows[-1], "load_at_end": os.getloadavg()[0]}, command)
        finally:
            engine.dispose()
        print(event_columns.report(rows, options.runs, command, started, load_start, os.getloadavg()), flush=True)
    text = event_columns.report(rows, options.runs, command, started, load_start, os.getloadavg())
    if options.record:
        with (Path(__file__).parent / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write("\n" + text)


def event_columns_spark_only(options, command: str, started: datetime) -> None:
    """``--event-columns-spark``: Spark over the snapshots ``--event-columns`` left, at the size
    the SQLite database holds (bench/event_columns_spark.py)."""
    import event_columns_spark

    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--driver-memory {options.spark_memory} pyspark-shell")
    load_start = os.getloadavg()
    engine = sa.create_engine(f"sqlite:///{DATA / 'scale.sqlite'}")
    count = scale_data.profile_count(engine)
    try:
        rows = [{"profiles": count, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "load_at_start": os.getloadavg()[0], **event_columns_spark.measure(
            engine, DATA, SANDBOX, options.runs, options.master, lambda m: log(f"{count:,}: {m}"),
            options.segments, not options.no_json_reads, not options.no_hand_written, not options.no_database)}]
        save_to(EVENT_COLUMNS_LOG, {**rows[-1], "engine": "spark", "load_at_end": os.getloadavg()[0]}, command)
    finally:
        engine.dispose()
        from cdp.engine.sql.spark_session import stop

        stop()
    text = event_columns_spark.report(rows, options.runs, command, started, load_start, os.getloadavg())
    print(text, flush=True)
    if options.record:
        with (Path(__file__).parent / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write("\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--databases", nargs="+", default=["sqlite"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgresql-max", type=int, default=2_000_000,
                        help="PostgreSQL only up to this many profiles (its load is the slow part)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    parser.add_argument("--spark-runs", type=int, default=1)
    parser.add_argument("--spark-warmup", type=int, default=1)
    parser.add_argument("--spark-only", action="store_true",
                        help="Spark over the size's snapshot already written (its other figures from the log)")
    parser.add_argument("--from-log", action="store_true",
                        help="only the report, from bench/data/scale-results.jsonl (the latest figures of each size)")
    parser.add_argument("--master", default="local[2]", help="Spark master URL ('none': no Spark)")
    parser.add_argument("--spark-memory", default="6g")
    parser.add_argument("--pg-shared-buffers", default="1GB",
                        help="the throwaway cluster's shared_buffers (bench_sql's 2GB is too much on a shared box)")
    parser.add_argument("--pg-max-wal-size", default="2GB",
                        help="--database-timings: the cluster's max_wal_size (the WAL kept on disk)")
    parser.add_argument("--templates", type=int, default=50_000, help="distinct generated profiles repeated")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    parser.add_argument("--event-columns", action="store_true",
                        help="only DuckDB's event-reading segments over a snapshot with and without typed event "
                             "columns, beside hand-written SQL, and the export's cost of them (bench/event_columns.py; "
                             "SQLite only)")
    parser.add_argument("--reuse-export", action="store_true",
                        help="--event-columns: query the snapshots the last run left at this size again, no export")
    parser.add_argument("--no-database", action="store_true",
                        help="--event-columns: not the database's own query; the hand-written query's ids are the "
                             "reference; --event-columns-spark: DuckDB's ids over the same snapshot are")
    parser.add_argument("--event-columns-spark", action="store_true",
                        help="Spark over the snapshots --event-columns left (with and without typed event columns) "
                             "beside hand-written Spark SQL (bench/event_columns_spark.py; --master, --runs)")
    parser.add_argument("--segments", nargs="+", choices=["a", "b", "c"],
                        help="--event-columns-spark: only these segments (default: all)")
    parser.add_argument("--database-timings", action="store_true",
                        help="PostgreSQL only: grown in a throwaway cluster to each --profiles (load timed), the "
                             "segments (a), (b), (c) by its own query, wall and CPU seconds (cluster included), "
                             "logged to bench/data/scale-event-columns.jsonl for --growth-from-log")
    parser.add_argument("--no-json-reads", action="store_true",
                        help="--event-columns-spark: not the compiled query over the snapshot without event columns")
    parser.add_argument("--no-hand-written", action="store_true",
                        help="--event-columns-spark: the compiled query only (no ratio): Spark's time for the growth")
    parser.add_argument("--growth-from-log", action="store_true",
                        help="only the growth of each engine's time, from every run bench/data/"
                             "scale-event-columns.jsonl holds (--event-columns and --event-columns-spark runs)")
    options = parser.parse_args()
    command = "python bench/bench_scale.py " + " ".join(sys.argv[1:])
    # a TERM stops the run as Ctrl-C does: the finally below stops the throwaway cluster
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = datetime.now(UTC)
    DATA.mkdir(parents=True, exist_ok=True)
    if options.from_log:
        print(report(logged_rows(options.profiles), options, command, started))
        return
    if options.growth_from_log:
        logged = [json.loads(line) for line in EVENT_COLUMNS_LOG.read_text(encoding="utf-8").splitlines()]
        print(growth_report(logged))
        return
    if options.event_columns:
        event_columns_only(options, command, started)
        return
    if options.database_timings:
        postgresql_timings(options, command)
        return
    if options.event_columns_spark:
        event_columns_spark_only(options, command, started)
        return
    spark_session_class = None
    if options.master != "none":
        # the driver's heap is fixed when its JVM starts (a session's conf cannot change it)
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--driver-memory {options.spark_memory} pyspark-shell")
        from cdp.engine.sql.spark_session import SparkSession

        spark_session_class = SparkSession
    if options.spark_only:
        try:
            rows = [spark_over_the_last_snapshot(max(options.profiles), options, spark_session_class, command)]
        finally:
            from cdp.engine.sql.spark_session import stop

            stop()
        print(report(rows, options, command, started))
        return
    cluster = None
    made: dict[str, list] = {}
    rows = []
    try:
        if "postgresql" in options.databases:
            from cdp.devtools.postgres import start_cluster

            settings = {**bench_sql.PG_SETTINGS, "shared_buffers": options.pg_shared_buffers}
            cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in settings.items()))
            pg_url = cluster.create_database("cdp_scale")
        for count in sorted(options.profiles):
            engines: dict[str, sa.Engine] = {}
            for name in options.databases:
                if name == "postgresql" and count > options.postgresql_max:
                    continue
                if name not in made:
                    log(f"templates: generate_profiles({options.templates:,}) for {name}")
                    made[name] = scale_data.templates(options.templates, name)
                log(f"{count:,}: grow {name} (not timed)")
                grown = time.perf_counter()
                if name == "sqlite":
                    engine = scale_data.grow_sqlite(DATA / "scale.sqlite", count, made[name], log)

                    @sa.event.listens_for(engine, "connect")
                    def _pragmas(dbapi_connection, _record):  # the query connection of bench_sql
                        for pragma in bench_sql.SQLITE_PRAGMAS:
                            dbapi_connection.execute(pragma)
                else:
                    engine = scale_data.grow_postgres(pg_url, count, made[name], log)
                log(f"{count:,}: {name} ready ({time.perf_counter() - grown:.0f} s)")
                engines[name] = engine
            rows.append({"command": command, **one_size(count, options, engines, spark_session_class, command)})
            for engine in engines.values():
                engine.dispose()
    finally:
        if spark_session_class is not None:
            from cdp.engine.sql.spark_session import stop

            stop()
        if cluster is not None:
            cluster.stop()
    text = report(rows, options, command, started)
    print(text)
    if options.record:
        with (Path(__file__).parent / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write("\n" + text)


if __name__ == "__main__":
    main()
