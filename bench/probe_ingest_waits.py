"""Where concurrent 500-record requests wait on PostgreSQL (issue 16; bench/RESULTS.md, session 16, s16-par).

    .venv/bin/python bench/probe_ingest_waits.py [EVENTS] [SCRATCH_DIR]

bench_ingest's event stream (EVENTS records, default 50,000) in requests of 500, sent by 1, 8, 1 and
8 clients to one ``cdp serve`` on a throwaway cluster with ``pg_stat_statements`` and
``log_lock_waits`` on. During each run a thread samples, every ~20 ms, the busy backends' wait
events (``pg_stat_activity``) and the ungranted locks (``pg_locks``); after it, the statements by
time. A diagnostic, not a benchmark: it has no reference to compare with. The cluster's log is kept
in SCRATCH_DIR (a new temporary folder by default).
"""

from __future__ import annotations

import collections
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest  # noqa: E402

from cdp.devtools.postgres import start_cluster  # noqa: E402
from cdp.storage.database import create_engine  # noqa: E402

REQUEST = 500
SAMPLE_SECONDS = 0.02
CLUSTER_OPTIONS = (" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
                   " -c log_lock_waits=on -c deadlock_timeout=100ms -c log_line_prefix='%m [%p] '")
_BUSY_BACKENDS = sa.text(
    "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, ''), left(query, 70) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle' "
    "AND backend_type = 'client backend'")
_UNGRANTED_LOCKS = sa.text(
    "SELECT locktype, mode, coalesce(relation::regclass::text, '') FROM pg_locks JOIN pg_stat_activity USING (pid) "
    "WHERE NOT granted AND datname = current_database()")
_TOP_STATEMENTS = sa.text(
    "SELECT calls, round(total_exec_time::numeric, 0), rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) "
    "FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat%' ORDER BY total_exec_time DESC LIMIT 14")


def people_shared(records: list[dict]) -> str:
    """How much each request's people (their ecid) overlap the 7 requests before it (8 in flight)."""
    people = [{record["identities"][0]["id"] for record in records[i:i + REQUEST]}
              for i in range(0, len(records), REQUEST)]
    earlier = [set().union(*people[max(0, i - 7):i]) for i in range(1, len(people))]
    shares = [len(people[i] & before) / len(people[i]) for i, before in enumerate(earlier, start=1)]
    sharing = sum(1 for i, before in enumerate(earlier, start=1) if people[i] & before) / max(1, len(earlier))
    return (f"requests {len(people)}; people a request {sum(map(len, people)) / len(people):.0f}; share of a "
            f"request's people also in the 7 before: mean {sum(shares) / max(1, len(shares)):.2f}; requests sharing "
            f"≥ 1 person with the 7 before: {sharing:.2f}")


class WaitSampler:
    """A thread sampling the busy backends' wait events and the ungranted locks until stopped."""

    def __init__(self, url: str):
        self.url = url
        self.waits: collections.Counter = collections.Counter()
        self.locks: collections.Counter = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-sampler")

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                while not self._stop.is_set():
                    for kind, event, query in connection.execute(_BUSY_BACKENDS):
                        self.waits[(kind, event, query if kind == "Lock" else "")] += 1
                    for row in connection.execute(_UNGRANTED_LOCKS):
                        self.locks[tuple(row)] += 1
                    connection.commit()
                    self.samples += 1
                    time.sleep(SAMPLE_SECONDS)
        finally:
            engine.dispose()

    def report(self) -> None:
        per = max(1, self.samples)
        print(f"   samples {self.samples}; busy backends per sample (wait type, event, query if a lock):")
        for key, count in self.waits.most_common(12):
            print(f"   {count / per:6.2f}  {key}")
        print("   ungranted locks per sample:")
        for key, count in self.locks.most_common(8):
            print(f"   {count / per:6.2f}  {key}")


def probe(events: int, scratch: Path) -> None:
    bench_ingest.LIMIT.update(bench_ingest.LIMITS[False])
    options = " ".join(f"-c {name}={value}" for name, value in bench_ingest.PG_SETTINGS.items()) + CLUSTER_OPTIONS
    cluster = start_cluster(extra_options=options)
    print("cluster", cluster.directory, cluster.port, flush=True)
    server = None
    try:
        url = cluster.create_database("cdp_ingest")
        db_pid = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
        key = f"cdp_probekey_{secrets.token_urlsafe(24)}"
        server = bench_ingest.Server(url, scratch / "server.log", key)
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        records = bench_ingest.event_stream(events, bench_ingest.SEED)
        bodies = bench_ingest.encode_requests(records, REQUEST)
        print(people_shared(records), flush=True)
        for clients in (1, 8, 1, 8):
            sandbox = f"p-{clients}-{secrets.token_hex(3)}"
            api = bench_ingest.Api(server.base, key, sandbox)
            dataset = api.create_dataset(f"probe {sandbox}", "event")
            api.close()
            with engine.begin() as connection:
                connection.execute(sa.text("SELECT pg_stat_statements_reset()"))
            server_cpu, db_cpu = bench_ingest.cpu_seconds(server.pid), bench_ingest.tree_cpu_seconds(db_pid)
            with WaitSampler(url) as sampler:
                wall, outcome = bench_ingest.run_clients(server.base, api.headers, f"/v1/datasets/{dataset}/records",
                                                         bodies, clients)
            server_cpu = bench_ingest.cpu_seconds(server.pid) - server_cpu
            db_cpu = bench_ingest.tree_cpu_seconds(db_pid) - db_cpu
            latencies = sorted(outcome.latencies)
            print(f"\n== {clients} clients: {events / wall:,.0f} rec/s, wall {wall:.1f} s, server CPU {server_cpu:.1f} s, "
                  f"db CPU {db_cpu:.1f} s, p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
                  f"p95 {latencies[int(len(latencies) * .95)] * 1000:.0f} ms, non-200 {outcome.non_200}, "
                  f"errors {dict(outcome.errors)}", flush=True)
            sampler.report()
            with engine.connect() as connection:
                top = connection.execute(_TOP_STATEMENTS).all()
            print("   top statements (calls, total ms, rows):")
            for calls, total_ms, rows, query in top:
                print(f"   {calls:6d} {total_ms:8} {rows:8}  {query}", flush=True)
        engine.dispose()
    finally:
        if server is not None:
            server.stop()
        log = cluster.directory / "log"
        if log.exists():
            (scratch / "pg.log").write_text(log.read_text(errors="replace"))
        cluster.stop()


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    scratch = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="probe-ingest-"))
    probe(events, scratch)


if __name__ == "__main__":
    main()
