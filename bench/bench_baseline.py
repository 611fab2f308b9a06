"""Ingestion against bare baselines, side by side in one run (issue 16's ratios).

    bash bench/run_baseline.sh [--backend sqlite|postgresql|both] [--csv-rows N] [--requests N] [--workers 1,2] [--record]

For each backend one ``cdp serve`` (as bench_ingest.py starts it: same settings, same throwaway
PostgreSQL cluster) and, in the same run:

* **Streaming, 1 record per request, 8 clients** (threads of this process, one keep-alive
  connection each: bench/http_load.py's lean client, or ``--client httpx`` an ``httpx.Client``) next to the same server's **trivial authenticated GET**
  (``GET /v1/datasets/{id}``: the key checked, one small read), the same number of requests and
  clients, run alternately (GET, POST, GET, POST) so both see the same machine. Ratio = POST
  records/s ÷ GET requests/s; target ≥ 0.5, p99 ≤ 20 ms. On PostgreSQL also with ``cdp serve
  --workers 2`` (``--workers 1,2``, each count its own server on the same database): the scale-out.
* **Batch CSV** (bench_ingest.py's CRM contacts, default 100,000 rows: 2 identities and up to 5
  attributes a row), uploaded → job succeeded, next to the **bare load of the same rows into the same
  tables without identity resolution**: what a user would write by hand — the CSV read with
  ``csv``, one profile (its attributes document), its two identities and its attribute source rows
  per row, with keys handed out up front, in one transaction: ``executemany`` on SQLite,
  ``COPY … FROM STDIN`` (psycopg) on PostgreSQL. Ratio = ours ÷ bare, in seconds; target ≤ 3.

Client, server and database share the machine's cores; the report gives rates and latencies (wall time) and
each side's CPU per request (server, database, client), which the machine's load disturbs less.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest as bi  # noqa: E402
from bench_ingest import CSV_MAPPING, Api, Server, crm_csv, encode_requests, event_stream, run_clients  # noqa: E402

from cdp.devtools.postgres import start_cluster  # noqa: E402
from cdp.storage.database import create_engine, sqlite_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class CpuMeter:
    """CPU seconds (user + system) of the server (its worker processes included), of the database
    server (PostgreSQL's postmaster and backends; None on SQLite, which runs inside the server) and
    of this process (the clients), between two readings."""

    def __init__(self, server: Server, db_pid: int | None):
        self.server, self.db_pid = server, db_pid

    def read(self) -> tuple[float, float | None, float]:
        times = os.times()
        return (bi.tree_cpu_seconds(self.server.pid), bi.tree_cpu_seconds(self.db_pid) if self.db_pid else None,
                times.user + times.system)


def _spent(before: tuple, after: tuple) -> tuple:
    return tuple(None if a is None else a - b for a, b in zip(after, before))


def section_stream(server: Server, key: str, requests: int, rounds: int = 2, prefix: str = "",
                   db_pid: int | None = None, client: str = "lean") -> dict:
    api = Api(server.base, key, f"{prefix}baseline-stream")
    get_dataset = api.create_dataset("GET target", "event")
    api.close()
    records = event_stream(requests * rounds, 42)
    out: dict = {"get": [], "post": [], "get_cpu": [], "post_cpu": []}
    meter = CpuMeter(server, db_pid)
    for round_ in range(rounds):
        api = Api(server.base, key, f"{prefix}baseline-stream-{round_}")
        dataset = api.create_dataset("1 record per request", "event")
        api.close()
        headers = {"Authorization": f"Bearer {key}", "X-Sandbox": f"{prefix}baseline-stream"}
        before = meter.read()
        wall, outcome = run_clients(server.base, headers, f"/v1/datasets/{get_dataset}", [(b"", 1)] * requests, 8,
                                    client=client, method="GET")
        out["get_cpu"].append(_spent(before, meter.read()))
        assert outcome.accepted == requests, outcome.statuses
        out["get"].append((wall, outcome.latencies))
        bodies = encode_requests(records[round_ * requests:(round_ + 1) * requests], 1)
        headers = {"Authorization": f"Bearer {key}", "X-Sandbox": f"{prefix}baseline-stream-{round_}"}
        before = meter.read()
        wall, outcome = run_clients(server.base, headers, f"/v1/datasets/{dataset}/records", bodies, 8,
                                    client=client)
        out["post_cpu"].append(_spent(before, meter.read()))
        assert outcome.accepted == requests and outcome.non_200 == 0, (outcome.statuses, outcome.errors)
        out["post"].append((wall, outcome.latencies))
        bi.log(f"A. round {round_ + 1}: GET {requests / out['get'][-1][0]:,.0f}/s, POST 1 record "
               f"{requests / wall:,.0f}/s")
    return out


def _pg_stat_reset(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("SELECT pg_stat_statements_reset()")
    engine.dispose()


def _pg_stat_top(url: str, top: int = 15) -> list[tuple]:
    """The statements that took the most database time (pg_stat_statements), during the cdp batch."""
    engine = create_engine(url)
    with engine.begin() as c:
        rows = c.exec_driver_sql(
            "SELECT total_exec_time, calls, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 150) "
            "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s", (top,)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def section_csv(server: Server, key: str, url: str, rows: int, bare: bool = True) -> dict:
    path = crm_csv(rows, 42)
    api = Api(server.base, key, "baseline-csv")
    dataset = api.create_dataset("CRM contacts", "profile")
    pid = server.pid
    try:  # "5" resets the peak resident set size (VmHWM) to the current one (Linux ≥ 4.0)
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass
    rss_before = bi.proc_status(pid).get("VmRSS", 0)
    started = time.perf_counter()
    with path.open("rb") as f:
        response = api.client.post(f"/v1/datasets/{dataset}/batches", files={"file": (path.name, f, "text/csv")},
                                   data={"mapping": json.dumps(CSV_MAPPING)})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    while True:
        job = api.client.get(f"/v1/batches/{batch_id}").json()
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    ours = time.perf_counter() - started
    peak = bi.proc_status(pid).get("VmHWM", 0)
    api.close()
    assert job["status"] == "succeeded" and job["accepted_rows"] == rows, job
    bi.log(f"B. cdp: {rows:,} rows in {ours:.1f} s ({rows / ours:,.0f} rows/s), server peak RSS {peak >> 20} MiB")
    if not bare:
        return {"ours": ours, "bare": float("nan"), "rows": rows, "rss_before": rss_before, "peak": peak}
    bare = bare_load(url, path, rows)
    bi.log(f"B. bare: {rows:,} rows in {bare:.1f} s ({rows / bare:,.0f} rows/s)")
    return {"ours": ours, "bare": bare, "rows": rows, "rss_before": rss_before, "peak": peak}


_TARGETS = {"first_name": "person.first_name", "last_name": "person.last_name", "loyalty_tier": "loyalty.tier",
            "loyalty_points": "loyalty.points", "city": "home_address.city"}


def bare_load(url: str, path: Path, rows: int) -> float:
    """The same rows into the same tables, no identity resolution, by hand (see the module doc)."""
    engine = create_engine(url)
    with engine.begin() as c:  # a dataset of its own (the foreign key of attribute_sources)
        now = datetime.now(UTC)
        dataset = c.execute(sa.text(
            "INSERT INTO datasets (sandbox, name, kind, labels, field_labels, created_at, updated_at) "
            "VALUES ('baseline-bare', 'bare', 'profile', '[]', '{}', :now, :now) RETURNING pk"),
            {"now": now}).scalar_one()
    engine.dispose()
    started = time.perf_counter()
    now = datetime.now(UTC)
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("BEGIN IMMEDIATE")
        first = (db.execute("SELECT coalesce(max(pk), 0) FROM profiles").fetchone()[0]) + 1
        stamp = sqlite_text(now)
        profiles, identities, sources = [], [], []
        with path.open(encoding="utf-8", newline="") as f:
            for pk, row in enumerate(csv.DictReader(f), start=first):
                attributes = {}
                for column, target in _TARGETS.items():
                    value = row[column].strip()
                    if value:
                        value = int(value) if column == "loyalty_points" else (
                            value.lower() if column == "loyalty_tier" else value)
                        attributes[target] = value
                        sources.append((pk, target, dataset, json.dumps(value), 0, stamp))
                profiles.append((pk, "baseline-bare", f"p-{uuid.uuid4().hex}", json.dumps(attributes), stamp, stamp))
                identities.append(("baseline-bare", pk, "crm_id", row["crm_id"], stamp, stamp))
                identities.append(("baseline-bare", pk, "email", row["email"].strip().lower(), stamp, stamp))
        db.executemany("INSERT INTO profiles (pk, sandbox, external_id, attributes, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", profiles)
        db.executemany("INSERT INTO identities (sandbox, profile_pk, namespace, value, first_seen, last_seen) "
                       "VALUES (?, ?, ?, ?, ?, ?)", identities)
        db.executemany("INSERT INTO attribute_sources (profile_pk, path, dataset_pk, value, removed, observed_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", sources)
        db.execute("COMMIT")
        db.close()
    else:
        import psycopg

        conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as db, db.cursor() as cur:
            cur.execute("SELECT nextval('profiles_pk_seq') FROM generate_series(1, %s)", (rows,))
            keys = [r[0] for r in cur.fetchall()]
            with path.open(encoding="utf-8", newline="") as f, \
                    cur.copy("COPY profiles (pk, sandbox, external_id, attributes, created_at, updated_at) "
                             "FROM STDIN") as profiles_copy:
                reader = list(csv.DictReader(f))
                identities, sources = [], []
                for pk, row in zip(keys, reader):
                    attributes = {}
                    for column, target in _TARGETS.items():
                        value = row[column].strip()
                        if value:
                            value = int(value) if column == "loyalty_points" else (
                                value.lower() if column == "loyalty_tier" else value)
                            attributes[target] = value
                            sources.append((pk, target, dataset, json.dumps(value), False, now))
                    profiles_copy.write_row((pk, "baseline-bare", f"p-{uuid.uuid4().hex}", json.dumps(attributes),
                                             now, now))
                    identities.append(("baseline-bare", pk, "crm_id", row["crm_id"], now, now))
                    identities.append(("baseline-bare", pk, "email", row["email"].strip().lower(), now, now))
            with cur.copy("COPY identities (sandbox, profile_pk, namespace, value, first_seen, last_seen) "
                          "FROM STDIN") as copy:
                for item in identities:
                    copy.write_row(item)
            with cur.copy("COPY attribute_sources (profile_pk, path, dataset_pk, value, removed, observed_at) "
                          "FROM STDIN") as copy:
                for item in sources:
                    copy.write_row(item)
    return time.perf_counter() - started


def run_backend(name: str, args, results: dict) -> None:
    key = f"cdp_benchbase_{secrets.token_urlsafe(32)}"
    cluster = None
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-baseline-"))
    try:
        if name == "sqlite":
            url = f"sqlite:///{workdir / 'cdp.db'}"
        else:
            settings = dict(bi.PG_SETTINGS)
            if args.pg_stat:
                settings.update({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"})
            cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in settings.items()))
            url = cluster.create_database("cdp_baseline")
            if args.pg_stat:
                engine = create_engine(url)
                with engine.begin() as c:
                    c.exec_driver_sql("CREATE EXTENSION pg_stat_statements")
                engine.dispose()
        db_pid = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0]) if cluster else None
        if "stream" in args.only and name == "postgresql":  # scale-out: the same run with more server processes
            for workers in args.workers[1:]:
                server = Server(url, workdir / f"server-{workers}.log", key, workers=workers)
                try:
                    results[f"stream×{workers}"] = section_stream(server, key, args.requests, prefix=f"w{workers}-",
                                                                  db_pid=db_pid, client=args.client)
                finally:
                    server.stop()
        server = Server(url, workdir / "server.log", key, workers=args.workers[0] if name == "postgresql" else 1)
        try:
            if "stream" in args.only:
                results["stream"] = section_stream(server, key, args.requests, db_pid=db_pid, client=args.client)
            if "csv" in args.only:
                if args.pg_stat and name == "postgresql":
                    _pg_stat_reset(url)
                results["csv"] = section_csv(server, key, url, args.csv_rows, bare=not args.pg_stat)
                if args.pg_stat and name == "postgresql":
                    results["pg_stat"] = _pg_stat_top(url)
        finally:
            server.stop()
    except BaseException:
        print(f"bench: {name} failed; its database and server logs are kept in {workdir}", file=sys.stderr)
        raise
    else:  # the database (a 1,000,000-row CSV run leaves gigabytes) and logs of a run that went through
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if cluster is not None:
            cluster.stop()


def report(args, all_results: dict, started: datetime, wall: float, load_start: float) -> str:
    git = os.popen("git rev-parse --short HEAD").read().strip()
    dirty = os.popen("git status --porcelain cdp").read().strip()
    lines = [f"## Ingestion against bare baselines — {started:%Y-%m-%d %H:%M} UTC", "",
             f"- machine: nproc {os.cpu_count()}, {platform.machine()}; load average (1 min) at start "
             f"{load_start:.2f}, at end {os.getloadavg()[0]:.2f}; client, server and database share the machine",
             f"- code: {git}{' (cdp/ modified)' if dirty else ' (cdp/ clean)'}",
             f"- command: `{os.environ.get('CDP_BENCH_COMMAND', 'bench/bench_baseline.py')}`",
             f"- streaming's load client: {args.client} ("
             f"{'bench/http_load.py, a raw keep-alive socket' if args.client == 'lean' else 'an httpx.Client'} per thread)",
             f"- wall time: {wall / 60:.1f} min", ""]
    if any("stream" in r for r in all_results.values()):
        lines += ["### Streaming, 1 record per request, 8 clients, vs a trivial authenticated GET", "",
                  f"{args.requests:,} requests per run, GET and POST alternating, 2 rounds; rates are the median "
                  f"of the rounds, percentiles over all requests of a kind.", "",
                  "| backend | GET req/s | GET p50 ms | GET p99 ms | POST rec/s | POST p50 ms | POST p99 ms | "
                  "POST / GET | target ≥ 0.5 | p99 ≤ 20 ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        rows = [(name if key == "stream" else f"{name}, {key[len('stream×'):]} workers", r[key])
                for name, r in all_results.items() for key in sorted(r) if key.startswith("stream")]
        for name, s in rows:
            get_rate = sorted(args.requests / w for w, _ in s["get"])[len(s["get"]) // 2]
            post_rate = sorted(args.requests / w for w, _ in s["post"])[len(s["post"]) // 2]
            get_lat = [x for _, lat in s["get"] for x in lat]
            post_lat = [x for _, lat in s["post"] for x in lat]
            ratio = post_rate / get_rate
            lines.append(f"| {name} | {get_rate:,.0f} | {pct(get_lat, .5):.1f} | {pct(get_lat, .99):.1f} | "
                         f"{post_rate:,.0f} | {pct(post_lat, .5):.1f} | {pct(post_lat, .99):.1f} | {ratio:.2f} | "
                         f"{'PASS' if ratio >= .5 else '**MISS**'} | "
                         f"{'PASS' if pct(post_lat, .99) <= 20 else '**MISS**'} |")
        lines.append("")
        lines += ["CPU per request, ms (user + system, all rounds): the server (its worker processes included), "
                  "PostgreSQL (postmaster and backends) and the clients (this process).", "",
                  "| backend | GET server | GET database | GET clients | POST server | POST database | POST clients |",
                  "|---|---:|---:|---:|---:|---:|---:|"]

        def per_request(cpu: list[tuple], part: int) -> str:
            spent = [c[part] for c in cpu]
            if not spent or any(x is None for x in spent):
                return "–"
            return f"{1000 * sum(spent) / (args.requests * len(spent)):.2f}"

        for name, s in rows:
            if "get_cpu" in s:
                lines.append(f"| {name} | " + " | ".join(per_request(s[kind], part) for kind in ("get_cpu", "post_cpu")
                                                         for part in range(3)) + " |")
        lines.append("")

        def median_rate(runs) -> float:
            return sorted(args.requests / w for w, _ in runs)[len(runs) // 2]

        for name, r in all_results.items():
            for key in sorted(k for k in r if k.startswith("stream×")):
                one, more = r["stream"], r[key]
                lines.append(f"- {name}, scale-out, {key[len('stream×'):]} workers ÷ 1: POST "
                             f"{median_rate(more['post']) / median_rate(one['post']):.2f}×, GET "
                             f"{median_rate(more['get']) / median_rate(one['get']):.2f}× (2 cores shared by the "
                             f"clients, the servers and PostgreSQL)")
        lines.append("")
    if any("csv" in r for r in all_results.values()):
        lines += ["### Batch CSV vs the bare load of the same rows", "",
                  "| backend | rows | cdp s (upload → succeeded) | cdp rows/s | bare s | bare rows/s | cdp / bare | "
                  "target ≤ 3 | server RSS before → peak MiB |", "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for name, r in all_results.items():
            if "csv" not in r:
                continue
            c = r["csv"]
            ratio = c["ours"] / c["bare"]
            lines.append(f"| {name} | {c['rows']:,} | {c['ours']:.1f} | {c['rows'] / c['ours']:,.0f} | "
                         f"{c['bare']:.1f} | {c['rows'] / c['bare']:,.0f} | {ratio:.1f}× | "
                         f"{'PASS' if ratio <= 3 else '**MISS**'} | "
                         f"{c.get('rss_before', 0) >> 20} → {c.get('peak', 0) >> 20} |")
        lines.append("")
    for name, r in all_results.items():
        if "pg_stat" in r:
            lines += ["### PostgreSQL: statements by database time during the cdp batch (pg_stat_statements)", "",
                      "| total ms | calls | rows | statement |", "|---:|---:|---:|---|"]
            lines += [f"| {t:,.0f} | {calls:,} | {n:,} | `{q.replace('|', '¦')}` |" for t, calls, n, q in r["pg_stat"]]
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--only", default="stream,csv")
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--client", choices=["lean", "httpx"], default="lean", help="streaming's load client: "
                        "bench/http_load.py (default) or one httpx.Client a thread (the client before session 15)")
    parser.add_argument("--workers", default="1,2", help="PostgreSQL streaming: `cdp serve --workers` counts to "
                        "measure, each with its own server (default 1,2: the scale-out target); SQLite always 1")
    parser.add_argument("--pg-stat", action="store_true", help="PostgreSQL: pg_stat_statements during the cdp batch "
                        "(no bare load)")
    args = parser.parse_args()
    args.only = args.only.split(",")
    args.workers = [int(n) for n in args.workers.split(",")]
    bi.LIMIT.update(bi.LIMITS[False])
    started, t0, load_start = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    all_results: dict = {}
    with bi.one_run_at_a_time():
        for name in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
            all_results[name] = {}
            run_backend(name, args, all_results[name])
    text = report(args, all_results, started, time.perf_counter() - t0, load_start)
    print(text)
    if args.record:
        with RESULTS.open("a") as f:
            f.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
