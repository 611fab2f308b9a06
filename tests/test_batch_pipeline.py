"""A batch file's reader and applier work at once (cdp/ingestion/batch_job.py, staging.py's Feed).

The job's reader (its own thread) reads, maps, validates and prepares the rows while the applier
(the job's thread) applies the rows read before, a round at a time, in the one transaction. Shown
without timing: the order of what the two threads did, recorded as they do it, on SQLite and
PostgreSQL —

* the applier applies its first round before the reader has read the file's last row (main's code
  read every row before applying any), and the reader is never more than the queue's chunks ahead
  of the applier (memory stays bounded);
* rows rejected after rounds were applied still fail the batch over its error threshold, and then
  nothing of it is stored (the transaction is rolled back), with the per-row errors kept;
* a round's split sees the rounds before as stored: a row sharing an identity with a row of an
  earlier round joins its profile (the staged ≡ Writer property in many rounds is
  tests/test_batch_staging.py's).
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


def _small_rounds(monkeypatch, *, chunk: int = 5, round_rows: int = 10, depth: int = 1) -> list[tuple]:
    """Rounds of ``round_rows`` rows in chunks of ``chunk``, a queue of ``depth`` chunks; the two
    threads' steps, in the order they happen: ("read", rows read so far, every ``chunk`` rows) and
    ("applied", new people written so far). The steps are recorded by functions main's code has too
    (the reader's checkpoint, the fresh rows' writes), so the tests run — and fail — on it."""
    from cdp.ingestion import batch_job, staging

    monkeypatch.setattr(staging, "SPOOL_CHUNK_ROWS", chunk)
    monkeypatch.setattr(staging, "ROUND_ROWS", round_rows, raising=False)
    monkeypatch.setattr(staging, "FEED_CHUNKS", depth, raising=False)
    monkeypatch.setattr(batch_job, "_CHECK_EVERY_ROWS", chunk)
    steps: list[tuple] = []  # list.append is atomic: the two threads' steps in one order
    checkpoint, apply_fresh = batch_job._BatchRun._checkpoint, staging._apply_fresh

    def read(run, outcome):
        steps.append(("read", outcome.total))
        return checkpoint(run, outcome)

    applied = [0]

    def apply(*args, **kwargs):
        fresh = apply_fresh(*args, **kwargs)
        applied[0] += fresh
        steps.append(("applied", applied[0]))
        return fresh

    monkeypatch.setattr(batch_job._BatchRun, "_checkpoint", read)
    monkeypatch.setattr(staging, "_apply_fresh", apply)
    return steps


def _batch(engine, batch: int):
    from cdp.storage.models import ingestion_batches

    with engine.connect() as connection:
        return connection.execute(sa.select(ingestion_batches).where(ingestion_batches.c.pk == batch)).one()


def _count(engine, sandbox: str, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE sandbox = :s"), {"s": sandbox}).scalar_one()


def test_the_applier_applies_while_the_reader_reads(engine, monkeypatch):
    steps = _small_rounds(monkeypatch)
    rows = [(f"K{i}", f"p{i}@example.com", f"n{i}", str(i)) for i in range(200)]
    sandbox, batch = _run(engine, _csv(rows))
    assert _batch(engine, batch).status == "succeeded"
    assert (_count(engine, sandbox, "profiles"), _count(engine, sandbox, "identities")) == (200, 400)
    last_read = steps.index(("read", 200))
    first_applied = next(i for i, step in enumerate(steps) if step[0] == "applied")
    assert first_applied < last_read, "the first round was applied after the reader had read every row"
    # bounded: the reader is at most the round being applied, the queue's chunk and the chunk it
    # is filling ahead of the rows applied (5-row chunks, 10-row rounds, a queue of one chunk)
    read = applied = 0
    for kind, count in steps:
        if kind == "read":
            read = count
        else:
            applied = count
        assert read - applied <= 10 + 5 + 5 + 5, (read, applied)
    assert steps[-1] == ("applied", 200)



def test_the_applier_stages_while_the_reader_reads_when_the_batch_is_one_round(engine, monkeypatch):
    """As it runs by default (the whole batch one round: split and written when the last row is
    read): the rows are copied into the staging tables while the reader reads the next ones, and
    the reader is at most the queue's chunk, the one it fills and the one it hands on ahead."""
    from cdp.ingestion import batch_job, staging

    monkeypatch.setattr(staging, "SPOOL_CHUNK_ROWS", 5)
    monkeypatch.setattr(staging, "FEED_CHUNKS", 1, raising=False)
    monkeypatch.setattr(batch_job, "_CHECK_EVERY_ROWS", 5)
    steps: list[tuple] = []
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
    rows = [(f"K{i}", f"p{i}@example.com", f"n{i}", str(i)) for i in range(200)]
    sandbox, batch = _run(engine, _csv(rows))
    assert _batch(engine, batch).status == "succeeded"
    assert _count(engine, sandbox, "profiles") == 200
    assert steps.index(("staged", 5)) < steps.index(("read", 200)), "nothing was staged before every row was read"
    read_rows = staged_rows = 0
    for kind, count in steps:
        if kind == "read":
            read_rows = count
        else:
            staged_rows = count
        assert read_rows - staged_rows <= 5 + 5 + 5, (read_rows, staged_rows)

def test_rows_rejected_after_rounds_were_applied_still_fail_the_batch_and_store_nothing(engine, monkeypatch):
    steps = _small_rounds(monkeypatch)
    rows = [(f"K{i}", f"p{i}@example.com", f"n{i}", str(i)) for i in range(100)]
    rows += [(f"K{i}", f"p{i}@example.com", f"n{i}", "many") for i in range(100, 110)]  # points: not a number
    sandbox, batch = _run(engine, _csv(rows), threshold=0.05)
    assert ("applied", 100) in steps  # the valid rows' rounds were applied before the last rows were read
    stored = _batch(engine, batch)
    assert stored.status == "failed", stored.message
    assert "10 of 110 rows rejected" in stored.message and "nothing of the batch was applied" in stored.message
    assert (stored.total_rows, stored.rejected_rows, stored.accepted_rows) == (110, 10, 0)
    assert (_count(engine, sandbox, "profiles"), _count(engine, sandbox, "identities")) == (0, 0)
    with engine.connect() as connection:
        errors = connection.execute(sa.text("SELECT row_number FROM ingestion_errors WHERE batch_pk = :b "
                                            "ORDER BY row_number"), {"b": batch}).scalars().all()
    assert errors == list(range(102, 112))  # the header is line 1


def test_a_row_sharing_an_identity_with_an_earlier_round_joins_its_profile(engine, monkeypatch):
    steps = _small_rounds(monkeypatch)
    rows = [(f"K{i}", f"p{i}@example.com", f"n{i}", str(i)) for i in range(30)]
    rows.append(("K3", "other@example.com", "late", "7"))  # K3 was applied two rounds before, fresh
    sandbox, batch = _run(engine, _csv(rows))
    assert _batch(engine, batch).status == "succeeded"
    assert ("applied", 10) in steps and steps[-1] == ("applied", 30)  # the last row through the Writer
    assert (_count(engine, sandbox, "profiles"), _count(engine, sandbox, "identities")) == (30, 61)
    with engine.connect() as connection:
        owned = connection.execute(sa.text(
            "SELECT i.namespace, i.value FROM identities i JOIN identities k ON k.profile_pk = i.profile_pk "
            "WHERE k.sandbox = :s AND k.namespace = 'crm_id' AND k.value = 'K3' ORDER BY i.namespace, i.value"),
            {"s": sandbox}).all()
    assert [tuple(row) for row in owned] == [("crm_id", "K3"), ("email", "other@example.com"),
                                             ("email", "p3@example.com")]
