"""bench/bench_batch_lock_hold.py [ROWS]: on SQLite, how long a batch file (200,000 rows by
default) that ends over its error threshold holds the write lock. A probe thread tries
BEGIN IMMEDIATE (timeout 0) every 10 ms while the job runs; the lock's hold is the span of
failed probes. Rows: contacts, every 100th invalid (1%), threshold 0."""
import hashlib, io, json, os, sqlite3, sys, tempfile, threading, time

import cdp.dsl  # noqa
from cdp.storage.database import create_engine, write_transaction
from cdp.storage.migrate import upgrade
from cdp.datasets.models import DatasetCreate, DatasetKind
from cdp.datasets.service import create_dataset
from cdp.ingestion.batch_job import batch_job_kind
from cdp.ingestion.batches import create_batch
from cdp.ingestion.uploads import Upload
from cdp.jobs import Registry, Runner
from cdp.schema import luma_schema

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
path = os.path.join(tempfile.mkdtemp(), "lock.db")
engine = create_engine(f"sqlite:///{path}")
upgrade(engine)
MAPPING = {"crm_id": "identity.crm_id", "email": {"to": "identity.email", "transforms": ["trim", "lower"]},
           "first_name": "person.first_name", "loyalty_points": "loyalty.points"}
lines = ["crm_id,email,first_name,loyalty_points"] + [
    f"K{i},p{i}@example.com,n{i},{'many' if i % 100 == 99 else i}" for i in range(N)]
data = ("\n".join(lines) + "\n").encode()
with write_transaction(engine) as c:
    ds = create_dataset(connection=c, sandbox="prod", schema=luma_schema(), spec=DatasetCreate(name="crm", kind=DatasetKind.profile))
    batch = create_batch(connection=c, sandbox="prod", dataset_id=ds.id,
                         upload=Upload(file=io.BytesIO(data), size=len(data), sha256=hashlib.sha256(data).hexdigest(), filename="crm.csv"),
                         format_="csv", mapping=json.dumps(MAPPING), error_threshold=0.0, schema=luma_schema())
held, stop = [], threading.Event()
def probe():
    while not stop.is_set():
        p = sqlite3.connect(path, timeout=0, isolation_level=None)
        t = time.monotonic()
        try:
            p.execute("BEGIN IMMEDIATE"); p.execute("ROLLBACK")
        except sqlite3.OperationalError:
            held.append(t)
        p.close()
        time.sleep(0.01)
threading.Thread(target=probe, daemon=True).start()
t0, c0 = time.monotonic(), time.process_time()
Runner(engine, Registry([batch_job_kind(None)])).run_once()
t1, c1 = time.monotonic(), time.process_time()
stop.set()
with engine.connect() as c:
    status, msg = c.exec_driver_sql(f"SELECT status, message FROM ingestion_batches WHERE pk = {batch}").one()
span = (max(held) - min(held)) if held else 0.0
print(f"rows {N}: job {t1 - t0:.2f} s wall, {c1 - c0:.2f} s CPU; write lock seen held over {span:.2f} s "
      f"({len(held)} probes); {status}: {msg[:60]}; load {os.getloadavg()[0]:.1f}")
engine.dispose(); os.remove(path)
