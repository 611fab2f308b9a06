"""Migration 0005 on a database that holds batches (SQLite and PostgreSQL): each batch gets a
job with the run state it had, its file moves to ingestion_batch_files intact, its errors keep
their rows and learn their length; a batch a stopped server left processing is then taken back
by the job runner like any other."""

from __future__ import annotations

import socket
import subprocess
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
FILE = b'{"identities": [{"namespace": "crm_id", "id": "C-1"}], "attributes": {}}\n' * 3


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_batches_of_revision_0004_become_jobs(backend, request, sqlite_url_factory):
    from cdp.ingestion.batch_job import batch_job_kind
    from cdp.ingestion.batches import batch_errors, get_batch
    from cdp.ingestion.readers import open_stored_file
    from cdp.jobs import Registry, sweep
    from cdp.storage.models import Document, UtcDateTime

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    try:
        upgrade(engine, "0004")
        # the tables as revision 0004 left them
        datasets = sa.table("datasets", *(sa.column(n) for n in ("pk", "sandbox", "name", "kind", "created_at",
                                                                 "updated_at")),
                            sa.column("labels", Document), sa.column("field_labels", Document))
        batches = sa.table("ingestion_batches", *(sa.column(n) for n in (
            "pk", "sandbox", "dataset_pk", "status", "format", "filename", "file_sha256", "content", "mapping",
            "error_threshold", "total_rows", "accepted_rows", "rejected_rows", "duplicate_rows", "message",
            "created_at", "started_at", "finished_at", "attempts", "worker")),
            sa.column("heartbeat_at", UtcDateTime()), sa.column("content", sa.LargeBinary()))
        errors = sa.table("ingestion_errors", *(sa.column(n) for n in ("batch_pk", "row_number", "column", "reason",
                                                                       "raw")))
        dead_worker = f"{socket.gethostname()}:{_dead_pid()}:0badcafe"
        common = {"sandbox": "prod", "dataset_pk": 1, "format": "jsonl", "filename": "crm.jsonl",
                  "file_sha256": "0" * 64, "content": FILE, "error_threshold": 0.05, "total_rows": 0,
                  "accepted_rows": 0, "rejected_rows": 0, "duplicate_rows": 0}
        with engine.begin() as connection:
            connection.execute(sa.insert(datasets).values(pk=1, sandbox="prod", name="CRM", kind="profile",
                                                          labels=[], field_labels={},
                                                          created_at=NOW, updated_at=NOW))
            connection.execute(sa.insert(batches), [
                {**common, "pk": 1, "status": "failed", "message": "1 of 3 rows rejected", "created_at": NOW,
                 "started_at": NOW, "finished_at": NOW, "attempts": 1, "worker": "old:1:x", "heartbeat_at": NOW,
                 "rejected_rows": 1, "total_rows": 3},
                {**common, "pk": 2, "status": "processing", "message": "applying", "created_at": NOW,
                 "started_at": NOW, "finished_at": None, "attempts": 2, "worker": dead_worker, "heartbeat_at": NOW},
                {**common, "pk": 3, "status": "queued", "message": None, "created_at": NOW, "started_at": None,
                 "finished_at": None, "attempts": 0, "worker": None, "heartbeat_at": None},
            ])
            connection.execute(sa.insert(errors).values(batch_pk=1, row_number=2, column=None, reason="bad",
                                                        raw="é" * 5000))
        upgrade(engine)

        with engine.connect() as connection:
            failed, processing, queued = (get_batch(connection=connection, sandbox="prod", batch_id=pk)
                                          for pk in (1, 2, 3))
            assert (failed.status, failed.attempts, failed.heartbeat_at) == ("failed", 1, NOW)
            assert (processing.status, processing.attempts) == ("processing", 2)
            assert (queued.status, queued.attempts, queued.heartbeat_at) == ("queued", 0, None)
            jobs = {row.key: row for row in connection.execute(sa.text(
                "SELECT key, kind, status, attempts, max_attempts, worker FROM jobs"))}
            assert {key: (row.kind, row.status, row.attempts, row.max_attempts, row.worker)
                    for key, row in jobs.items()} == {
                "1": ("ingestion.batch", "failed", 1, 1, "old:1:x"),
                "2": ("ingestion.batch", "running", 2, 1, dead_worker),
                "3": ("ingestion.batch", "queued", 0, 1, None)}
            items, total, following = batch_errors(connection=connection, sandbox="prod", batch_id=1, limit=10,
                                                   offset=0)
            assert total == 1 and following is None
            assert (items[0].raw_bytes, items[0].raw_truncated, len(items[0].raw.encode())) == (10_000, True, 2048)
            stored = connection.execute(sa.text("SELECT raw FROM ingestion_errors")).scalar_one()
            assert stored == "é" * 2048  # the whole row stored before the cap gave its space back
        for pk in (1, 2, 3):
            with open_stored_file(engine, pk) as stream:
                assert stream.read() == FILE

        # the batch its server left processing is taken back like any job of a gone worker
        taken = sweep(engine, registry=Registry([batch_job_kind(None)]))
        assert list(taken.values()) == ["failed"]
        with engine.connect() as connection:
            batch = get_batch(connection=connection, sandbox="prod", batch_id=2)
        assert batch.status == "failed" and "the server stopped while processing this batch" in batch.message
    finally:
        engine.dispose()
