"""Issue 16 probe: 500-record requests of bench_ingest's event stream, 1, 8, 1, 8 clients on a throwaway
PostgreSQL cluster with pg_stat_statements and log_lock_waits; samples pg_stat_activity's wait events and
ungranted pg_locks during each run and prints the statements by time (bench/RESULTS.md, session 16, s16-par).
Usage: PYTHONPATH=<cdp> python bench/probe_ingest_waits.py [EVENTS] [SCRATCH_DIR]"""
import collections, secrets, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest as B
import sqlalchemy as sa
from cdp.devtools.postgres import start_cluster
from cdp.storage.database import create_engine

B.LIMIT.update(B.LIMITS[False])
W = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="probe-ingest-"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
opts = " ".join(f"-c {k}={v}" for k, v in B.PG_SETTINGS.items())
opts += (" -c shared_preload_libraries=pg_stat_statements -c log_lock_waits=on -c deadlock_timeout=100ms"
         " -c pg_stat_statements.track=all -c log_line_prefix='%m [%p] '")
cluster = start_cluster(extra_options=opts)
print("cluster", cluster.directory, cluster.port, flush=True)
server = None
try:
    url = cluster.create_database("cdp_ingest")
    db_pid = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    key = f"cdp_probekey_{secrets.token_urlsafe(24)}"
    server = B.Server(url, W / "server.log", key)
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    records = B.event_stream(N, B.SEED)
    bodies = B.encode_requests(records, 500)
    # share of people: request i vs the 7 requests before it
    ecids = [set(r["identities"][0]["id"] for r in records[i:i+500]) for i in range(0, len(records), 500)]
    shared = [len(ecids[i] & set().union(*ecids[max(0,i-7):i])) / len(ecids[i]) for i in range(1, len(ecids))]
    anyshared = sum(1 for i in range(1, len(ecids)) if ecids[i] & set().union(*ecids[max(0,i-7):i])) / (len(ecids)-1)
    print(f"requests {len(bodies)}; people a request {sum(map(len,ecids))/len(ecids):.0f}; "
          f"share of a request's people also in the 7 before: mean {sum(shared)/len(shared):.2f}; "
          f"requests sharing >=1 person with the 7 before {anyshared:.2f}", flush=True)
    for clients in (1, 8, 1, 8):
        sandbox = f"p-{clients}-{secrets.token_hex(3)}"
        api = B.Api(server.base, key, sandbox)
        ds = api.create_dataset(f"probe {sandbox}", "event"); api.close()
        with eng.begin() as c:
            c.execute(sa.text("SELECT pg_stat_statements_reset()"))
        samples = collections.Counter(); locks = collections.Counter(); nsamp = [0]; stop = threading.Event()
        def sampler():
            se = create_engine(url)
            with se.connect() as c:
                while not stop.is_set():
                    rows = c.execute(sa.text(
                        "SELECT state, coalesce(wait_event_type,'CPU'), coalesce(wait_event,''), left(query,70) FROM pg_stat_activity "
                        "WHERE datname=current_database() AND pid<>pg_backend_pid() AND state<>'idle' AND backend_type='client backend'")).all()
                    for r in rows:
                        samples[(r[1], r[2], r[3] if r[1] == 'Lock' else '')] += 1
                    lr = c.execute(sa.text(
                        "SELECT locktype, mode, coalesce(relation::regclass::text,'') FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                        "WHERE NOT granted AND a.datname=current_database()")).all()
                    for r in lr:
                        locks[tuple(r)] += 1
                    c.commit(); nsamp[0] += 1
                    time.sleep(0.02)
            se.dispose()
        t = threading.Thread(target=sampler); t.start()
        cpu0, db0 = B.cpu_seconds(server.pid), B.tree_cpu_seconds(db_pid)
        wall, out = B.run_clients(server.base, api.headers, f"/v1/datasets/{ds}/records", bodies, clients)
        cpu1, db1 = B.cpu_seconds(server.pid), B.tree_cpu_seconds(db_pid)
        stop.set(); t.join()
        lat = sorted(out.latencies)
        print(f"\n== {clients} clients: {N/wall:,.0f} rec/s wall {wall:.1f}s server CPU {cpu1-cpu0:.1f}s db CPU {db1-db0:.1f}s "
              f"p50 {lat[len(lat)//2]*1000:.0f} ms p95 {lat[int(len(lat)*.95)]*1000:.0f} ms non200 {out.non_200} errors {dict(out.errors)}", flush=True)
        print(f"   samples {nsamp[0]}; backend-states per sample:")
        for k, v in samples.most_common(12):
            print(f"   {v/nsamp[0]:6.2f}  {k}")
        print("   ungranted locks per sample:")
        for k, v in locks.most_common(8):
            print(f"   {v/nsamp[0]:6.2f}  {k}")
        with eng.connect() as c:
            rows = c.execute(sa.text(
                "SELECT calls, round(total_exec_time::numeric,0) ms, rows, left(regexp_replace(query,'\\s+',' ','g'),110) q "
                "FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat%' ORDER BY total_exec_time DESC LIMIT 14")).all()
        print("   top statements (calls, total ms, rows):")
        for r in rows:
            print(f"   {r[0]:6d} {r[1]:8} {r[2]:8}  {r[3]}")
        sys.stdout.flush()
finally:
    if server: server.stop()
    log = (cluster.directory / "log")
    if log.exists():
        (W / "pg.log").write_text(log.read_text(errors="replace"))
    cluster.stop()
