"""A batch file's reader and applier work at once (cdp/ingestion/batch_job.py, staging.py's Feed).

The job's reader (its own thread) reads, maps, validates and prepares the rows while the applier
(the job's thread) stages the rows read before, chunk by chunk, in the one transaction; once the
last row is read, the applier splits and writes them. Shown without timing: the order of what the
two threads did, recorded as they do it, on SQLite and PostgreSQL —

* the applier stages chunks before the reader has read the file's last row (main's code read every
  row before staging any), and the reader is never more than the queue's chunks ahead of it
  (memory stays bounded);
* rows rejected after chunks were staged still fail the batch over its error threshold, and then
  nothing of it is stored (the transaction is rolled back), with the per-row errors kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import pytest
import sqlalchemy as sa

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)

MAPPING = {"crm_id": "identity.crm_id", "email": {"to": "identity.email", "transforms": ["trim", "lower"]},
           "first_name": "person.first_name", "loyalty_points": "loyalty.points"}


@pytest.fixture
def engine(migrated_engine):
    return migrated_engine


def _csv(rows: list[tuple[str, str, str, str]]) -> bytes:
    lines = ["crm_id,email,first_name,loyalty_points"] + [",".join(row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _run(engine, data: bytes, threshold: float = 0.0) -> tuple[str, int]:
    """Upload ``data`` into a new sandbox's profile dataset and run its job here: (sandbox, batch id)."""
    from cdp.datasets.models import DatasetCreate, DatasetKind
    from cdp.datasets.service import create_dataset
    from cdp.ingestion.batch_job import batch_job_kind
    from cdp.ingestion.batches import create_batch
    from cdp.ingestion.uploads import Upload
    from cdp.jobs import Registry, Runner
    from cdp.schema import luma_schema
    from cdp.storage.database import write_transaction

    sandbox = "pipe" + uuid.uuid4().hex[:8]
    with write_transaction(engine) as connection:
        dataset = create_dataset(connection=connection, sandbox=sandbox, schema=luma_schema(),
                                 spec=DatasetCreate(name="crm", kind=DatasetKind.profile))
        upload = Upload(file=io.BytesIO(data), size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                        filename="crm.csv")
        batch = create_batch(connection=connection, sandbox=sandbox, dataset_id=dataset.id, upload=upload,
                             format_="csv", mapping=json.dumps(MAPPING), error_threshold=threshold,
                             schema=luma_schema())
    assert Runner(engine, Registry([batch_job_kind(None)])).run_once() is not None
    return sandbox, batch


def _batch(engine, batch: int):
    from cdp.storage.models import ingestion_batches

    with engine.connect() as connection:
        return connection.execute(sa.select(ingestion_batches).where(ingestion_batches.c.pk == batch)).one()


def _count(engine, sandbox: str, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE sandbox = :s"), {"s": sandbox}).scalar_one()


def _steps(monkeypatch) -> list[tuple]:
    """Chunks of 5 rows, a queue of one chunk; the two threads' steps, in the order they happen:
    ("read", rows read so far, every 5 rows) and ("staged", rows staged so far). Recorded by
    functions main's code has too (the reader's checkpoint, the staging of a chunk), so the tests
    run — and fail — on it."""
    from cdp.ingestion import batch_job, staging

    monkeypatch.setattr(staging, "SPOOL_CHUNK_ROWS", 5)
    monkeypatch.setattr(staging, "FEED_CHUNKS", 1, raising=False)
    monkeypatch.setattr(batch_job, "_CHECK_EVERY_ROWS", 5)
    steps: list[tuple] = []  # list.append is atomic: the two threads' steps in one order
    checkpoint = batch_job._BatchRun._checkpoint
    name = "write" if hasattr(staging._Stager, "write") else "load"  # main's code stages in `load`
    stage = getattr(staging._Stager, name)
    staged = [0]

    def read(run, outcome):
        steps.append(("read", outcome.total))
        return checkpoint(run, outcome)

    def write(stager, chunk):
        stage(stager, chunk)
        staged[0] += len(chunk.rows if hasattr(chunk, "rows") else chunk)
        steps.append(("staged", staged[0]))

    monkeypatch.setattr(batch_job._BatchRun, "_checkpoint", read)
    monkeypatch.setattr(staging._Stager, name, write)
    return steps


def test_the_applier_stages_while_the_reader_reads(engine, monkeypatch):
    """The rows are copied into the staging tables while the reader reads the next ones, and the
    reader is at most the queue's chunk, the one it fills and the one it hands on ahead."""
    steps = _steps(monkeypatch)
    rows = [(f"K{i}", f"p{i}@example.com", f"n{i}", str(i)) for i in range(200)]
    sandbox, batch = _run(engine, _csv(rows))
    assert _batch(engine, batch).status == "succeeded"
    assert (_count(engine, sandbox, "profiles"), _count(engine, sandbox, "identities")) == (200, 400)
    assert steps.index(("staged", 5)) < steps.index(("read", 200)), "nothing was staged before every row was read"
    read_rows = staged_rows = 0
    for kind, count in steps:
        if kind == "read":
            read_rows = count
        else:
            staged_rows = count
        assert read_rows - staged_rows <= 5 + 5 + 5, (read_rows, staged_rows)
    assert steps[-1] == ("staged", 200)


def test_rows_rejected_after_rows_were_staged_still_fail_the_batch_and_store_nothing(engine, monkeypatch):
    """Over the threshold once the last row is read: rolled back before the split and writes (they
    would be undone; on SQLite they would hold the write lock longer for nothing)."""
    from cdp.ingestion import staging

    steps = _steps(monkeypatch)
    apply_fresh = staging._apply_fresh

    def written(*args, **kwargs):
        steps.append(("written",))
        return apply_fresh(*args, **kwargs)

    monkeypatch.setattr(staging, "_apply_fresh", written)
    rows = [(f"K{i}", f"p{i}@example.com", f"n{i}", str(i)) for i in range(100)]
    rows += [(f"K{i}", f"p{i}@example.com", f"n{i}", "many") for i in range(100, 110)]  # points: not a number
    sandbox, batch = _run(engine, _csv(rows), threshold=0.05)
    assert steps.index(("staged", 50)) < steps.index(("read", 110))  # staged before the last rows were read
    assert ("written",) not in steps, "the rows were split and written, then rolled back"
    stored = _batch(engine, batch)
    assert stored.status == "failed", stored.message
    assert "10 of 110 rows rejected" in stored.message and "nothing of the batch was applied" in stored.message
    assert (stored.total_rows, stored.rejected_rows, stored.accepted_rows) == (110, 10, 0)
    assert (_count(engine, sandbox, "profiles"), _count(engine, sandbox, "identities")) == (0, 0)
    with engine.connect() as connection:
        errors = connection.execute(sa.text("SELECT row_number FROM ingestion_errors WHERE batch_pk = :b "
                                            "ORDER BY row_number"), {"b": batch}).scalars().all()
    assert errors == list(range(102, 112))  # the header is line 1
