"""A batch file's CPU a row, in process: one CRM CSV (bench_ingest.py's) through the real job handler.

    .venv/bin/python bench/bench_ingest_batch.py ROWS [sqlite | POSTGRESQL_URL] [--statements] [--eqp] [--profile]
    (put another checkout's ``cdp/`` first on PYTHONPATH to measure it with the same script)

The batch is stored as an upload stores it (``create_batch``) and its job run by a job runner's
``run_once`` on this thread — the validate pass, then the apply (``apply_staged``) in one
transaction — with no HTTP server. Printed: this process's CPU a row (``time.process_time``; on
SQLite the database's work is in it), split into the validate pass (everything before
``apply_staged``) and the apply; ``--statements``: each statement's time (SQLite: this thread's CPU;
PostgreSQL: the wall clock of the round trip — the server's work), ``--eqp``: SQLite's EXPLAIN QUERY
PLAN of the apply's ``INSERT/UPDATE … SELECT`` statements; ``--profile``: cProfile (CPU timer) of
the run. SQLite databases go to a temporary directory and are deleted; for PostgreSQL give a URL of
an empty database (the cluster's CPU is not measured here). ``CACHE_KIB=N``: the apply's
connection runs with ``PRAGMA cache_size = -N`` (main and temp), an experiment.
"""
import sys, os, time, io, hashlib, cProfile, pstats, collections, uuid, json, resource, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cdp.dsl  # noqa
import cdp
import sqlalchemy as sa
from bench_ingest import crm_csv, CSV_MAPPING
from datetime import datetime, timezone
from cdp.datasets.models import DatasetCreate, DatasetKind
from cdp.datasets.service import create_dataset as make_dataset
from cdp.ingestion.batch_job import batch_job_kind
from cdp.ingestion.batches import create_batch
from cdp.ingestion.uploads import Upload
from cdp.jobs import Registry, Runner
from cdp.schema import luma_schema
from cdp.storage.database import create_engine, write_transaction
from cdp.storage.migrate import upgrade
from cdp.api.process import tune_gc

rows = int(sys.argv[1]); target = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
flags = set(sys.argv[3:])
TIMER = time.thread_time if target == "sqlite" else time.perf_counter
path = crm_csv(rows, 42)
folder = tempfile.mkdtemp(prefix="ingest-batch-")
url = f"sqlite:///{folder}/bench.db" if target == "sqlite" else target
engine = create_engine(url); upgrade(engine)
sandbox = "csv" + uuid.uuid4().hex[:6]
with write_transaction(engine) as c:
    ds = make_dataset(connection=c, sandbox=sandbox, spec=DatasetCreate(name="crm", kind=DatasetKind.profile), schema=luma_schema())
    data = path.read_bytes()
    up = Upload(file=io.BytesIO(data), size=len(data), sha256=hashlib.sha256(data).hexdigest(), filename="crm.csv")
    bid = create_batch(connection=c, sandbox=sandbox, dataset_id=ds.id, upload=up, format_="csv",
                       mapping=json.dumps(CSV_MAPPING), error_threshold=0.0, schema=luma_schema())
del data
times = collections.Counter(); counts = collections.Counter()
if "--statements" in flags:
    @sa.event.listens_for(engine, "before_cursor_execute")
    def b(conn, cursor, statement, params, context, executemany):
        if "--eqp" in flags and not executemany and statement.lstrip().split()[0] in ("INSERT", "UPDATE") and "SELECT" in statement:
            print("EQP", " ".join(statement.split())[:150])
            for r in cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, params or ()).fetchall():
                print("     ", r)
        conn.info["t0"] = TIMER()
    @sa.event.listens_for(engine, "after_cursor_execute")
    def a(conn, cursor, statement, params, context, executemany):
        key = " ".join(statement.split())[:120]
        times[key] += TIMER() - conn.info["t0"]; counts[key] += 1
tune_gc()
import cdp.ingestion.batch_job as bj
phase = {}
_orig_apply = bj.apply_staged
def timed_apply(*a, **k):
    t = time.process_time(); phase["validate"] = t - c0
    if os.environ.get("CACHE_KIB"):
        a[0].exec_driver_sql(f"PRAGMA main.cache_size = -{os.environ['CACHE_KIB']}")
        a[0].exec_driver_sql(f"PRAGMA temp.cache_size = -{os.environ['CACHE_KIB']}")
    try:
        return _orig_apply(*a, **k)
    finally:
        phase["apply_staged"] = time.process_time() - t
bj.apply_staged = timed_apply
runner = Runner(engine, Registry([batch_job_kind(None)]))
prof = cProfile.Profile(time.process_time) if "--profile" in flags else None
load = os.getloadavg()[0]
t0 = time.perf_counter(); c0 = time.process_time()
if prof: prof.enable()
assert runner.run_once() is not None
if prof: prof.disable()
wall = time.perf_counter() - t0; cpu = time.process_time() - c0
with engine.connect() as c:
    st = c.execute(sa.text("SELECT status, accepted_rows, message FROM ingestion_batches WHERE pk = :b"), {"b": bid}).one()
    np = c.execute(sa.text("SELECT count(*) FROM profiles WHERE sandbox = :s"), {"s": sandbox}).scalar_one()
print(f"cdp={os.path.dirname(cdp.__file__)} rows={rows} {target[:10]} status={st[0]} accepted={st[1]} profiles={np} "
      f"wall={wall:.2f}s cpu={cpu:.2f}s cpu_us_row={cpu/rows*1e6:.1f} rows/s={rows/wall:.0f} load={load:.2f}->{os.getloadavg()[0]:.2f} "
      f"maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss//1024}MiB")
print("phases cpu us/row:", {k: round(v/rows*1e6,1) for k, v in phase.items()}, "statements cpu us/row:", round(sum(times.values())/rows*1e6,1))
if times:
    for k, v in times.most_common(16):
        print(f"{v:8.3f}s {counts[k]:7d}  {k}")
if prof:
    s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(35); print(s.getvalue()[:9000])
    s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40); print(s.getvalue()[:9000])
engine.dispose()
import shutil  # noqa: E402
shutil.rmtree(folder, ignore_errors=True)
