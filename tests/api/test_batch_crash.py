"""The server is killed (SIGKILL) in the middle of applying a batch file, on SQLite and on
PostgreSQL: afterwards nothing of the batch is in the database, the restarted server reports the
job as interrupted (failed), a retry applies every row exactly once, and uploading the file again
adds nothing.

The kill lands inside the applying transaction, and the test proves it before killing: the job
says it is applying, and the database shows a write transaction open for a while (SQLite: the
write lock is held; PostgreSQL: a backend with a transaction id, open for over 100 ms). Every wait
polls with a deadline; none sleeps a guessed time.
"""

from __future__ import annotations

import json
import sqlite3
import time

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tests.api.test_server import KEY, Server

# Rows per backend, so that the apply takes a few seconds with today's writer (measured 2026-12-06 for
# these event rows: about 0.2 ms a row on SQLite, 0.5 ms on PostgreSQL, on a loaded 2-core machine)
# and the whole test stays well under 30 s per backend. At 2,500 / 1,000 rows the apply could end
# before the probe below saw its transaction held.
ROWS = {"sqlite": 15000, "postgresql": 6000}
MAPPING = {"cookie": "identity.ecid", "event_id": "id", "kind": "type", "at": "timestamp", "sku": "product.sku",
           "price": "product.price"}


def _csv(rows: int) -> bytes:
    lines = ["cookie,event_id,kind,at,sku,price"]
    lines += [f"c-{i % 200},e-{i},productView,2026-11-27T18:{i % 60:02d}:00Z,SKU-{i % 50},{i % 100}.5"
              for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def _until(what: str, check, timeout: float = 60, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def _apply_in_progress(backend: str, url: str, engine: sa.Engine):
    """A probe: True while a write transaction is open and has been for a moment."""
    if backend == "sqlite":
        path = url.removeprefix("sqlite:///")

        def locked() -> bool:
            probe = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc), exc
                return True
            finally:
                probe.close()

        def held() -> bool:  # three times in a row, 20 ms apart: not a heartbeat's short transaction
            for attempt in range(3):
                if not locked():
                    return False
                if attempt < 2:
                    time.sleep(0.02)
            return True
        return held

    def writing() -> bool:
        with engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_xid IS NOT NULL AND xact_start < now() - interval '100 milliseconds'")).scalar_one() > 0
    return writing


def _stored(engine: sa.Engine, dataset_id: int) -> dict:
    from cdp.storage.models import events, identities, ingestion_batches, profiles

    with engine.connect() as connection:
        def count(query) -> int:
            return connection.execute(query).scalar_one()

        return {
            "events": count(sa.select(sa.func.count()).select_from(events).where(events.c.dataset_pk == dataset_id)),
            "event_ids": count(sa.select(sa.func.count(sa.distinct(events.c.event_id)))
                               .where(events.c.dataset_pk == dataset_id)),
            "profiles": count(sa.select(sa.func.count()).select_from(profiles).where(profiles.c.sandbox == "prod")),
            "identities": count(sa.select(sa.func.count()).select_from(identities)
                                .where(identities.c.sandbox == "prod")),
            "jobs": {row.pk: row.status for row in connection.execute(
                sa.select(ingestion_batches.c.pk, ingestion_batches.c.status))},
        }


def kill_while_applying(backend: str, url: str, tmp_path, *, dataset: dict, file: tuple[str, bytes],
                        mapping: dict) -> tuple[dict, int, int]:
    """Start a server, upload ``file`` into a new dataset and SIGKILL the server once the batch's
    apply transaction is open: (headers, dataset id, batch id)."""
    from cdp.storage.database import create_engine

    first = Server(url, tmp_path / "first.log")
    try:
        [key] = KEY.findall(first.stderr)
        headers = {"Authorization": f"Bearer {key}"}
        dataset_id = httpx.post(first.base + "/v1/datasets", headers=headers, json=dataset).json()["id"]
        uploaded = httpx.post(first.base + f"/v1/datasets/{dataset_id}/batches", headers=headers,
                              files={"file": file}, data={"mapping": json.dumps(mapping)})
        assert uploaded.status_code == 202, uploaded.text
        batch_id = uploaded.json()["id"]

        def applying():
            job = httpx.get(first.base + f"/v1/batches/{batch_id}", headers=headers).json()
            assert job["status"] in ("queued", "processing"), f"the job ended before the kill: {job}"
            return job["status"] == "processing" and (job["message"] or "").startswith("applying")

        _until("the job to start applying", applying)
        engine = create_engine(url)
        try:
            _until("the apply transaction to be open", _apply_in_progress(backend, url, engine), every=0.01)
        finally:
            engine.dispose()
    except BaseException:
        first.stop()
        raise
    first.kill()
    return headers, dataset_id, batch_id


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_during_apply_then_retry(backend, request, sqlite_url_factory, tmp_path):
    from cdp.storage.database import create_engine

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    rows = ROWS[backend]
    content = _csv(rows)
    headers, dataset, batch_id = kill_while_applying(backend, url, tmp_path, dataset={"name": "Web events", "kind": "event"},
                                                     file=("web.csv", content), mapping=MAPPING)

    engine = create_engine(url)
    try:
        # all or nothing: the job was still processing, and nothing of it is stored
        after_kill = _stored(engine, dataset)
        assert after_kill == {"events": 0, "event_ids": 0, "profiles": 0, "identities": 0,
                              "jobs": {batch_id: "processing"}}

        second = Server(url, tmp_path / "second.log")
        try:
            job = httpx.get(second.base + f"/v1/batches/{batch_id}", headers=headers).json()
            assert job["status"] == "failed" and job["attempts"] == 1, job
            assert "server stopped while processing" in job["message"], job
            assert "nothing of it was applied" in job["message"]
            assert f"POST /v1/batches/{batch_id}/retry" in job["message"]
            assert _stored(engine, dataset)["events"] == 0

            retried = httpx.post(second.base + f"/v1/batches/{batch_id}/retry", headers=headers)
            assert retried.status_code == 202, retried.text
            assert retried.json()["status"] == "queued" and retried.json()["message"] is None

            def finished():
                job = httpx.get(second.base + f"/v1/batches/{batch_id}", headers=headers).json()
                return job if job["status"] in ("succeeded", "failed") else None

            job = _until("the retry to finish", finished, timeout=120, every=0.1)
            assert job["status"] == "succeeded", job
            assert (job["total_rows"], job["accepted_rows"], job["duplicate_rows"], job["rejected_rows"],
                    job["attempts"]) == (rows, rows, 0, 0, 2)
            stored = _stored(engine, dataset)
            assert (stored["events"], stored["event_ids"], stored["profiles"], stored["identities"]) == \
                (rows, rows, 200, 200)

            # the same file again: every row is a duplicate, nothing is added
            again = httpx.post(second.base + f"/v1/datasets/{dataset}/batches", headers=headers,
                               files={"file": ("web.csv", content)}, data={"mapping": json.dumps(MAPPING)}).json()

            def again_finished():
                job = httpx.get(second.base + f"/v1/batches/{again['id']}", headers=headers).json()
                return job if job["status"] in ("succeeded", "failed") else None

            job = _until("the re-upload to finish", again_finished, timeout=120, every=0.1)
            assert (job["status"], job["accepted_rows"], job["duplicate_rows"]) == ("succeeded", 0, rows), job
            assert job["file_sha256"] == retried.json()["file_sha256"]
            assert _stored(engine, dataset) == {**stored, "jobs": {batch_id: "succeeded", again["id"]: "succeeded"}}
        finally:
            second.stop()
    finally:
        engine.dispose()
