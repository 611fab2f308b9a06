"""Segments: a batch run of many saved segments against the bare SELECTs of the same segments,
estimate latency, and single-profile evaluation of a stored profile.

    python bench/bench_segments.py [--profiles 1000000] [--segments 100] [--no-batch | --batch-only]
        [--parallel] [--keep] [--reuse] [--load-only] [--record]
    (or: bash bench/run_segments.sh …, which uses the project's .venv)

1. Data: the same generated Luma profiles as bench_sql.py (``generate_profiles(N, seed=42)``,
   ~10 events each, cached in bench/data/), loaded the same way into a new SQLite file and a
   throwaway PostgreSQL cluster (bench_sql.load_all).
2. Segments: ``--segments`` saved segments of mixed shapes (attributes, lists, event windows,
   counts, sums, last(), days_since, the §13 sequence, and references to earlier segments),
   cycled with different parameters, all active, in sandbox prod.
3. Batch: a job over all of them (``cdp.segments.jobs.run_job``, as_of 2026-11-28T12:00Z) twice:
   the first run inserts every membership; the second finds them (realized → existing). Then,
   paired segment by segment in alternating order: the bare SELECT (``SELECT count(*)`` of exactly
   the query a run writes from, references reading memberships as in the run) and the segment's
   evaluation as a run does it (steady state), summed. Target: evaluations / bare ≤ 1.3.
4. Estimates: ``estimates.estimate`` of every 7th segment (every shape), 3 times each, sampled (the exact limit
   set below N, 20,000 sample rows): p50 and p95. Target: p95 < 300 ms at 1,000,000.
5. Evaluate: a stored profile with 100 events, ``service.evaluate`` by profile id for three
   segments (what POST /v1/evaluate runs after authentication), 1,000 times each: p50 and p99.
   Target: p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sql  # noqa: E402 - the data and the loader of the SQL benchmark
from _common import cpu_model, markdown_table, short  # noqa: E402

import cdp.dsl  # noqa: E402,F401 - before cdp.schema
from cdp.devtools.postgres import Cluster, start_cluster  # noqa: E402
from cdp.schema import luma_schema  # noqa: E402
from cdp.segments import batch, estimates, jobs, service  # noqa: E402
from cdp.snapshots import export_snapshot, latest_manifest  # noqa: E402
from cdp.segments.models import EvaluateRequest, SegmentCreate, SegmentStatus  # noqa: E402
from cdp.storage.database import create_engine  # noqa: E402
from cdp.engine.sql.loading import load_documents  # noqa: E402
from cdp.storage.models import profiles as profile_table, segment_dependencies, segments  # noqa: E402

AS_OF = bench_sql.AS_OF
SANDBOX = bench_sql.SANDBOX
RESULTS = bench_sql.RESULTS
TIERS = ["bronze", "silver", "gold", "platinum"]
TYPES = ["pageView", "productView", "addToCart", "purchase", "emailOpen"]
GIFT = """loyalty.tier is not null
and (exists event where type = "addToCart" and product.category != profile.preferred_category
       and product.size != profile.preferred_size within last {d} days)
and (exists event as cart where type = "addToCart" within last {d} days
       then no event where type = "purchase" within 1 day)"""


def shapes(count: int) -> dict[str, str]:
    """``count`` segments of mixed shapes; every 10th references two earlier ones."""
    made: dict[str, str] = {}
    for i in range(count):
        k = i // 10
        kind = i % 10
        if kind == 0:
            text = f'loyalty.tier = "{TIERS[k % 4]}" and loyalty.points > {100 * k}'
        elif kind == 1:
            text = f'home_address.country = "US" and loyalty.points between {50 * k} and {50 * k + 2000}'
        elif kind == 2:
            text = f'exists event where type = "{TYPES[k % 5]}" within last {k + 1} days'
        elif kind == 3:
            text = f'count(event where type = "purchase" within last {30 + 30 * k} days) >= {1 + k % 3}'
        elif kind == 4:
            text = f'sum(event.order.total where type = "purchase" within last 365 days) > {100 * (k + 1)}'
        elif kind == 5:
            text = f'interests has any ["running", "yoga"] and email_opt_in and loyalty.points > {10 * k}'
        elif kind == 6:
            text = GIFT.format(d=7 + k)
        elif kind == 7:
            text = f'days_since(last(event.timestamp where type = "purchase")) > {30 * (k + 1)}'
        elif kind == 8:
            text = f'last(event.product.category where type = "purchase") != preferred_category or month(person.birth_date) = {1 + k % 12}'
        else:
            a, b = f"seg-{i - 9:03d}", f"seg-{i - 7:03d}"
            text = f'(in segment "{a}" or in segment "{b}") and not in segment "seg-{i - 3:03d}"'
        made[f"seg-{i:03d}"] = text
    return made


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_database(dialect: str, url: str, catalogue: dict[str, str], profiles: int, batch_runs: bool = True,
                   latencies: bool = True, by_segment: bool = False, stop_at: datetime | None = None,
                   duckdb_snapshots: Path | None = None, reuse_snapshot: bool = False) -> dict:
    engine = create_engine(url)
    schema = luma_schema()
    out: dict = {"dialect": dialect}
    try:
        if dialect == "sqlite":
            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection, _record):  # the query connection of bench_sql
                for pragma in bench_sql.SQLITE_PRAGMAS:
                    dbapi_connection.execute(pragma)
        with engine.begin() as connection:
            ours = sa.select(segments.c.pk).where(segments.c.sandbox == SANDBOX)  # a --reuse run finds them
            connection.execute(segment_dependencies.delete().where(segment_dependencies.c.segment_pk.in_(ours)))
            connection.execute(segments.delete().where(segments.c.sandbox == SANDBOX))
            for key, text in catalogue.items():
                service.create_segment(connection=connection, sandbox=SANDBOX, schema=schema, spec=SegmentCreate(
                    key=key, name=key, expression=text, status=SegmentStatus.draft))
            connection.execute(segments.update().where(segments.c.sandbox == SANDBOX).values(status="active"))
        if batch_runs and duckdb_snapshots is not None:  # first: it reads profiles and events only
            snapshot = _snapshot(dialect, engine, duckdb_snapshots, reuse_snapshot)
        if batch_runs:
            runs = []
            for label in () if by_segment else ("first run (every membership inserted)", "second run (steady state)"):
                with engine.begin() as connection:
                    job = jobs.create_job(connection=connection, sandbox=SANDBOX, keys=None)
                bench_sql.log(f"{dialect}: batch {label}")
                started = time.perf_counter()
                done = jobs.run_job(engine, job.id, as_of=AS_OF)
                runs.append((label, time.perf_counter() - started, done))
                if done.status.value != "succeeded":
                    raise SystemExit(f"{dialect}: the job failed: {done.message}")
            first = second = 0.0  # --by-segment: each segment's first and second evaluation, summed
            # paired, segment by segment (robust to the machine's load drifting): the bare SELECT of
            # what a run writes from, counted, and the segment's evaluation as a run does it (steady
            # state), in alternating order
            bench_sql.log(f"{dialect}: paired bare SELECTs and segment evaluations")
            bare = write = 0.0
            members: dict[str, int] = {}
            pairs: dict[str, tuple[float, float]] = {}  # key → (bare, evaluation) seconds
            with engine.connect() as connection:
                connection.execution_options(sqlite_begin="IMMEDIATE")
                rows = connection.execute(sa.select(segments).where(segments.c.sandbox == SANDBOX)).all()
                graph = service.reference_graph(connection, SANDBOX)
                evaluated: dict[str, int] = {}
                order = batch.ordered(rows, graph)
                for index, row in enumerate(order):
                    if stop_at is not None and datetime.now(UTC) >= stop_at:
                        bench_sql.log(f"{dialect}: --stop-at reached: {index} of {len(order)} segments measured")
                        out["partial"] = (index, len(order))
                        break
                    query = batch.members_select(dialect=dialect, sandbox=SANDBOX, expression=row.expression,
                                                 schema=schema, catalogue=catalogue, as_of=AS_OF,
                                                 memberships_of=dict(evaluated))

                    def count() -> float:
                        started = time.perf_counter()
                        members[row.key] = connection.execute(
                            sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
                        connection.rollback()
                        return time.perf_counter() - started

                    def evaluate(steady: bool = True) -> tuple[float, batch.Counts]:
                        started = time.perf_counter()
                        with connection.begin():
                            result = batch.evaluate_segment(
                                connection, sandbox=SANDBOX, segment_pk=row.pk, segment_key=row.key,
                                expression=row.expression, schema=schema, catalogue=catalogue, as_of=AS_OF,
                                memberships_of=dict(evaluated))
                        if steady and (result.realized or result.exited):
                            raise SystemExit(f"{dialect}: {row.key}: not steady: {result}")
                        return time.perf_counter() - started, result

                    if by_segment:  # this segment's first run (inserts) and second (realized → existing)
                        connection.rollback()  # (the reads above began one)
                        seconds, inserted = evaluate(steady=False)
                        first += seconds
                        second += evaluate(steady=False)[0]
                    bare_before, write_before = bare, write
                    if index % 2:
                        write += evaluate()[0]
                        bare += count()
                    else:
                        bare += count()
                        write += evaluate()[0]
                    if by_segment and inserted.realized != members[row.key]:  # it wrote what the SELECT selects
                        raise SystemExit(f"{dialect}: {row.key}: first evaluation {inserted} vs SELECT {members[row.key]}")
                    evaluated[row.key] = row.pk
                    pairs[row.key] = (bare - bare_before, write - write_before)
                    bench_sql.log(f"{dialect}: {index + 1}/{len(order)} {row.key}: bare {bare - bare_before:.2f} s, "
                                  f"evaluation {write - write_before:.2f} s; so far {write:.1f} / {bare:.1f} s "
                                  f"= {write / bare:.3f}×")
            out["runs"] = runs if not by_segment else [("first evaluations", first, None),
                                                       ("second evaluations", second, None)]
            out["bare_s"], out["paired_write_s"], out["pairs"] = bare, write, pairs
            steady = {} if by_segment else runs[1][2].counts
            for key, counts in steady.items():  # the run wrote what the SELECT selects
                if counts.realized + counts.existing != members[key]:
                    raise SystemExit(f"{dialect}: {key}: run {counts} vs SELECT {members[key]}")
            out["members"] = sum(members.values())
            if duckdb_snapshots is not None:  # the segments measured, again on DuckDB over a snapshot
                out["duckdb"] = snapshot | _on_duckdb(dialect, engine, duckdb_snapshots, members)
        if latencies:
            out.update(_latencies(dialect, engine, schema, catalogue, profiles))
    finally:
        engine.dispose()
    return out


def _snapshot(dialect: str, engine: sa.Engine, root: Path, reuse: bool) -> dict:
    """A full snapshot of the database's profiles and events (timed: DuckDB's run pays it first);
    with ``reuse``, the one a --keep run left beside the kept database."""
    import shutil

    manifest = latest_manifest(root, SANDBOX) if reuse else None
    if manifest is not None and len(manifest.parts) == 1 and manifest.parts[0].full:  # profiles and events are
        seconds = manifest.seconds  # the kept database's (a batch writes neither): its export time as measured
        bench_sql.log(f"{dialect}: reusing the snapshot in {root} (exported in {seconds:.1f} s)")
    else:
        shutil.rmtree(root / SANDBOX, ignore_errors=True)  # a full export, not a part on top of an older one
        bench_sql.log(f"{dialect}: snapshot to {root}")
        with engine.connect() as connection:
            started = time.perf_counter()
            manifest = export_snapshot(connection, sandbox=SANDBOX, root=root, full=True)
            seconds = time.perf_counter() - started
        bench_sql.log(f"{dialect}: snapshot {seconds:.1f} s")
    return {"snapshot_s": seconds, "bytes": sum(f.stat().st_size for f in (root / SANDBOX).rglob("*") if f.is_file()),
            "profiles": sum(part.profiles for part in manifest.parts), "events": sum(part.events for part in manifest.parts)}


def _on_duckdb(dialect: str, engine: sa.Engine, root: Path, members: dict[str, int]) -> dict:
    """The segments the paired run measured (``members``: key → its SELECT's count), as one
    segment job on DuckDB over the snapshot (issue 21): compile, DuckDB's query, the members
    written back by the database batch's set-wise update. The database holds every segment's
    memberships in the steady state, so the job must find each member existing and none entering
    or leaving: DuckDB's members are the database's, segment by segment (asserted)."""
    with engine.begin() as connection:
        job = jobs.create_job(connection=connection, sandbox=SANDBOX, keys=list(members))
    bench_sql.log(f"{dialect}: a segment job on DuckDB over the snapshot ({len(members)} segments)")
    started = time.perf_counter()
    done = jobs.run_job(engine, job.id, as_of=AS_OF, on="duckdb", snapshots=root)
    job_s = time.perf_counter() - started
    if done.status.value != "succeeded":
        raise SystemExit(f"{dialect}: the DuckDB job failed: {done.message}")
    for key, count in members.items():
        counts = done.counts[key]
        if (counts.realized, counts.existing, counts.exited) != (0, count, 0):
            raise SystemExit(f"{dialect}: {key}: DuckDB's job {counts} vs the database's {count} members")
    bench_sql.log(f"{dialect}: DuckDB job {job_s:.1f} s; members equal")
    return {"job_s": job_s, "segments": len(members)}


def _latencies(dialect: str, engine: sa.Engine, schema, catalogue: dict[str, str], profiles: int) -> dict:
    """Estimates (sampled) and evaluate of a stored profile with 100 events: their latencies (ms)."""
    out: dict = {}
    # estimates, sampled
    bench_sql.log(f"{dialect}: estimates")
    estimate_ms = []
    estimate_by_key: dict[str, list[float]] = {}
    sampled = True
    with engine.connect() as connection:
        for key in list(catalogue)[::7]:  # every shape
            for _ in range(3):
                started = time.perf_counter()
                result = estimates.estimate(connection=connection, sandbox=SANDBOX, expression=catalogue[key],
                                            schema=schema, as_of=AS_OF, exact_limit=min(profiles - 1, 100_000),
                                            sample_rows=20_000, timeout_ms=60_000)
                estimate_ms.append((time.perf_counter() - started) * 1000)
                estimate_by_key.setdefault(key, []).append(estimate_ms[-1])
                sampled = sampled and result.sampled
    out["estimate_ms"], out["estimate_sampled"] = estimate_ms, sampled
    out["estimate_by_key"] = estimate_by_key
    # evaluate: a stored profile with 100 events
    bench_sql.log(f"{dialect}: evaluate")
    events = [{"id": f"b-{j}", "type": TYPES[j % 5], "timestamp": (AS_OF - timedelta(hours=3 * j)).isoformat(),
               "product": {"category": "mens", "size": "L", "price": 20.0 + j},
               "order": {"total": 50.0}} for j in range(100)]
    with engine.begin() as connection:
        known = connection.execute(sa.select(sa.func.count()).select_from(profile_table).where(
            profile_table.c.sandbox == SANDBOX, profile_table.c.external_id == "bench-100-events")).scalar_one()
    with engine.begin() as connection:  # once (a --reuse run finds it)
        known or load_documents(connection, [{"id": "bench-100-events", "attributes": {
            "loyalty": {"tier": "gold", "points": 1200}, "preferred_category": "womens", "preferred_size": "S"},
            "events": events}], sandbox=SANDBOX)
    evaluate_ms: dict[str, list[float]] = {}
    with engine.connect() as connection:
        for key in ("seg-000", "seg-006", "seg-009"):
            request = EvaluateRequest(segment=key, profile_id="bench-100-events", as_of=AS_OF)
            samples = []
            for _ in range(1000):
                started = time.perf_counter()
                service.evaluate(connection=connection, sandbox=SANDBOX, spec=request, schema=schema)
                samples.append((time.perf_counter() - started) * 1000)
            evaluate_ms[key] = samples[50:]  # the first calls compile and warm the caches
    out["evaluate_ms"] = evaluate_ms
    return out


def _reused(state_path: Path) -> Cluster | None:
    """The PostgreSQL cluster a ``--keep`` run left (started again), or None."""
    if not state_path.exists():
        return None
    state = json.loads(state_path.read_text())
    cluster = Cluster(Path(state["directory"]), state["port"], Path(state["bin_dir"]), state["as_user"],
                      state["options"])
    try:
        cluster.resume()
    except Exception as error:  # noqa: BLE001 - gone or unusable: load afresh
        bench_sql.log(f"the kept cluster did not start ({error}); loading afresh")
        state_path.unlink(missing_ok=True)
        return None
    bench_sql.log(f"reusing the databases of a --keep run ({state['directory']})")
    return cluster


def report(args, command: str, started: datetime, wall_s: float, results: list[dict], catalogue: dict) -> str:
    what = ("estimates, evaluate" if args.no_batch else "batch run" if args.batch_only
            else "batch run, estimates, evaluate")
    lines = [f"## Segments: {what} ({len(catalogue)} segments) — {args.profiles:,} profiles — "
             f"{started:%Y-%m-%d %H:%M} UTC", "",
             f"- machine: nproc {os.cpu_count()}, {cpu_model()}; load average (1 min) at start {args.load_at_start:.2f}, "
             f"at the end {os.getloadavg()[0]:.2f}",
             f"- command: `{command}`", f"- wall time: {wall_s / 60:.1f} min",
             "- segments: bench/bench_segments.py `shapes()` — attributes, lists, event windows, counts, sums, "
             "last(), days_since, the §13 sequence; every 10th references three earlier ones", ""]
    rows = []
    for r in results:
        if "runs" not in r:  # --no-batch
            continue
        ratio = r["paired_write_s"] / r["bare_s"]
        done, of = r.get("partial", (len(catalogue), len(catalogue)))
        rows.append([r["dialect"], f"{done} of {of}", f"{r['paired_write_s']:.2f}", f"{r['bare_s']:.2f}", f"{ratio:.2f}×",
                     "≤ 1.3×: " + ("PASS" if ratio <= 1.3 else "FAIL")]
                    + [f"{seconds:.2f}" for _label, seconds, _done in r["runs"]])
    lines += [] if not rows else ["### Batch evaluation (s) against the bare SELECTs of the same segments (s)", "",
              "Paired: each segment's bare SELECT (`SELECT count(*)` of the query a run writes from) and its "
              "evaluation as a run does it (steady state: members found existing, nothing rewritten), one after "
              "the other in alternating order, summed over the segments. For context, "
              + ("each segment's first evaluation (every membership inserted, and its outbox row) and second "
                 "(turned existing) just before its pair, summed." if args.by_segment else
                 "two whole jobs before that: the first inserts every membership (and its outbox row), the second "
                 "turns them existing."), "",
              markdown_table(["database", "segments", "evaluations", "bare SELECTs", "ratio", "target",
                              *(["first evaluations", "second evaluations"] if args.by_segment
                                else ["job: first run", "job: second run"])], rows), ""]
    for r in results:
        if "pairs" in r:
            costly = sorted(r["pairs"].items(), key=lambda item: item[1][0] - item[1][1])[:4]
            lines.append(f"- {r['dialect']}, largest excess of the evaluation over its bare SELECT (s): " + "; ".join(
                f"{key} {w:.2f} vs {b:.2f} (`{short(catalogue[key], 40)}`)" for key, (b, w) in costly))
    lines += [f"- {r['dialect']}: {r['members']:,} memberships in all; the "
              + ("first evaluations'" if args.by_segment else "steady run's") + " counts equal the SELECTs'"
              for r in results if "members" in r]
    lines += _duckdb_report(results)
    if args.batch_only:
        return "\n".join(lines) + "\n"
    rows = [[r["dialect"], "yes" if r["estimate_sampled"] else "no", len(r["estimate_ms"]),
             f"{statistics.median(r['estimate_ms']):.1f}", f"{percentile(r['estimate_ms'], 0.95):.1f}",
             "< 300 ms: " + ("PASS" if percentile(r["estimate_ms"], 0.95) < 300 else "FAIL")] for r in results]
    lines += ["", "### Estimates (ms; every 7th segment — every shape — 3 times each)", "",
              markdown_table(["database", "sampled", "estimates", "p50", "p95", "target (p95)"], rows), ""]
    for r in results:
        slowest = sorted(r["estimate_by_key"].items(), key=lambda item: -statistics.median(item[1]))[:3]
        lines.append(f"- {r['dialect']}, slowest (median ms): " + "; ".join(
            f"{key} {statistics.median(samples):.0f} (`{short(catalogue[key], 50)}`)" for key, samples in slowest))
        lines.append(f"- {r['dialect']}, every segment (median ms): " + ", ".join(
            f"{key} {statistics.median(samples):.0f}" for key, samples in r["estimate_by_key"].items()))
    lines.append("")
    rows = []
    for r in results:
        for key, samples in r["evaluate_ms"].items():
            rows.append([r["dialect"], key, f"{statistics.median(samples):.2f}", f"{percentile(samples, 0.99):.2f}",
                         "< 10 ms: " + ("PASS" if percentile(samples, 0.99) < 10 else "FAIL")])
    lines += ["### Evaluate a stored profile with 100 events (ms; `service.evaluate`, 950 calls after 50 warm-up)",
              "", markdown_table(["database", "segment", "p50", "p99", "target (p99)"], rows), ""]
    return "\n".join(lines) + "\n"


def _duckdb_report(results: list[dict]) -> list[str]:
    """DuckDB's job over the snapshot beside the database's own evaluations of the same segments."""
    rows = []
    for r in results:
        if "duckdb" not in r:
            continue
        d = r["duckdb"]
        database_s = r["paired_write_s"]  # the same segments' steady evaluations in the database, summed
        rows.append([r["dialect"], d["segments"], f"{d['profiles']:,} / {d['events']:,}", f"{d['bytes'] / 2**30:.2f}",
                     f"{d['snapshot_s']:.1f}", f"{database_s:.1f}", f"{d['job_s']:.1f}",
                     f"{d['job_s'] / database_s:.2f}×", f"{(d['job_s'] + d['snapshot_s']) / database_s:.2f}×"])
    if not rows:
        return []
    return ["", "### DuckDB over a snapshot of the database, beside the database (s)", "",
            "The segments of the paired run as one segment job on DuckDB (`run_job(on=\"duckdb\")`) over a full "
            "snapshot (`export_snapshot`, timed apart), memberships written back to the database by the batch's "
            "set-wise update; the database's figure is the same segments' steady evaluations above, summed. Every "
            "segment's members on DuckDB equal the database's (the job found each member existing, none entering "
            "or leaving: asserted).", "",
            markdown_table(["database", "segments", "profiles / events", "snapshot GiB", "snapshot", "database",
                            "DuckDB job", "DuckDB / database", "(DuckDB + snapshot) / database"], rows), ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=100)
    parser.add_argument("--record", action="store_true", help="append the report to bench/RESULTS.md")
    parser.add_argument("--no-batch", action="store_true", help="estimates and evaluate only (no batch runs)")
    parser.add_argument("--keep", action="store_true", help="keep the loaded SQLite file and PostgreSQL cluster "
                        "in bench/data/ for --reuse (loading 1,000,000 profiles takes a while)")
    parser.add_argument("--reuse", action="store_true", help="use the databases a --keep run of the same "
                        "--profiles left, if any, instead of loading them again")
    parser.add_argument("--batch-only", action="store_true", help="the batch runs only (no estimates, evaluate)")
    parser.add_argument("--parallel", action="store_true", help="the two databases at once, in two threads (the "
                        "batch's ratio is paired segment by segment; not for the latency targets)")
    parser.add_argument("--by-segment", action="store_true", help="instead of two whole jobs first: each "
                        "segment's first and second evaluation just before its pair (a run cut short by --stop-at "
                        "still measures the pairs done)")
    parser.add_argument("--stop-at", metavar="HH:MM", help="UTC time after which no further segment is paired "
                        "(the report gives the ratio over the segments done)")
    parser.add_argument("--duckdb", choices=["sqlite", "postgresql"], help="after that database's batch: a full "
                        "snapshot of it (kept in bench/data/ with --keep) and the segments measured as one segment "
                        "job on DuckDB over it, memberships written back to it; its members must equal the database's")
    parser.add_argument("--load-only", action="store_true", help="generate and load the data (with --keep: "
                        "for later --reuse runs), measure nothing")
    args = parser.parse_args(argv)
    n = args.profiles
    command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_segments.py " + " ".join(sys.argv[1:])
    _lock = bench_sql.one_run_at_a_time()
    started_at = datetime.now(UTC)
    args.load_at_start = os.getloadavg()[0]
    stop_at = None
    if args.stop_at:
        hour, minute = map(int, args.stop_at.split(":"))
        stop_at = started_at.replace(hour=hour, minute=minute, second=0, microsecond=0)
        stop_at += timedelta(days=1) if stop_at <= started_at else timedelta()
    wall = time.perf_counter()
    sqlite_path = bench_sql.DATA / f"segments-{n}.sqlite"
    sqlite_url = f"sqlite:///{sqlite_path}"
    state_path = bench_sql.DATA / f"segments-{n}.cluster.json"
    cluster = _reused(state_path) if args.reuse else None
    if cluster is None:
        path, _generated = bench_sql.ensure_jsonl(n)
        for suffix in ("", "-wal", "-shm"):
            Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        options = " ".join(f"-c {k}={v}" for k, v in bench_sql.PG_SETTINGS.items())
        cluster = start_cluster(extra_options=options)
    pg_url = cluster.url.rsplit("/", 1)[0] + "/cdp_bench_segments"
    catalogue = shapes(args.segments)
    snapshots = bench_sql.DATA / f"segments-{n}-snapshot-{args.duckdb}" if args.duckdb else None
    try:
        if not state_path.exists():  # generation and loading: not timed
            cluster.create_database("cdp_bench_segments")
            bench_sql.load_all(path, n, min(10_000, n // 10), sqlite_path, sqlite_url, pg_url)
            if args.keep:
                state_path.write_text(json.dumps({"directory": str(cluster.directory), "port": cluster.port,
                                                  "bin_dir": str(cluster.bin_dir), "as_user": cluster.as_user,
                                                  "options": cluster.options}))
        if args.load_only:
            bench_sql.log("loaded; --load-only: nothing measured")
            return 0
        databases = (("sqlite", sqlite_url), ("postgresql", pg_url))

        def one(database: tuple[str, str]) -> dict:
            return bench_database(*database, catalogue, n, batch_runs=not args.no_batch,
                                  latencies=not args.batch_only, by_segment=args.by_segment, stop_at=stop_at,
                                  duckdb_snapshots=snapshots if database[0] == args.duckdb else None,
                                  reuse_snapshot=args.reuse and args.keep)

        if args.parallel:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(databases)) as pool:
                results = list(pool.map(one, databases))
        else:
            results = [one(database) for database in databases]
    finally:
        if snapshots is not None and not args.keep:
            import shutil

            shutil.rmtree(snapshots, ignore_errors=True)
        if args.keep and state_path.exists():  # loaded: kept even when a measurement failed
            cluster.halt()  # its data stays for --reuse
        else:
            cluster.stop()
            state_path.unlink(missing_ok=True)
    text = report(args, command, started_at, time.perf_counter() - wall, results, catalogue)
    print(text)
    if args.record:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + text)
        print(f"(appended to {RESULTS.relative_to(bench_sql.ROOT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
