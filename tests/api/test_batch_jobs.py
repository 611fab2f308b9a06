"""Batch jobs as their own resource: retry (and when it is refused), recovery of jobs a stopped
server left behind, the liveness rule for workers, stopping at shutdown; the file-size limit
(apart from the body limit, enforced while reading) and the rows-per-file limit; custom identity
namespaces in mappings."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.api.conftest import ADMIN_KEY, assert_error, make_settings
from tests.api.test_ingestion import _dataset
from tests.api.test_ingestion_batches import _errors, _upload, _wait

SHOE = b'{"identities": [{"namespace": "crm_id", "id": "C-1"}], "attributes": {"shoe_size": 42}}\n'
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def _set_job(engine, batch_id: int, **values) -> None:
    """Put a batch in the state a worker leaves it in: the batch's status on the batch, the run
    (status, worker, attempts, heartbeat) on its job (cdp/jobs)."""
    from cdp.storage.models import ingestion_batches, jobs

    run = {k: values.pop(k) for k in ("worker", "attempts", "heartbeat_at") if k in values}
    if "status" in values:
        run["status"] = {"processing": "running"}.get(values["status"], values["status"])
    with engine.begin() as connection:
        if values:
            connection.execute(ingestion_batches.update().where(ingestion_batches.c.pk == batch_id).values(**values))
        if run:  # the batch's job is keyed by the batch's id
            connection.execute(jobs.update().where(jobs.c.kind == "ingestion.batch", jobs.c.key == str(batch_id))
                               .values(**run))


def _add_shoe_size(api) -> None:
    schema = api.get("/v1/schema").json()
    schema["profile"]["shoe_size"] = "number"
    response = api.put("/v1/schema", json={k: schema[k] for k in ("profile", "event", "event_types", "enums")})
    assert response.status_code == 200, response.text


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ---- retry -------------------------------------------------------------------------------------

def test_a_failed_job_is_retried_against_the_schema_in_force(api):
    crm = _dataset(api, "profile")
    job = _wait(api, _upload(api, crm, SHOE.decode(), "shoes.jsonl")["id"])
    assert job["status"] == "failed" and job["attempts"] == 1 and job["rejected_rows"] == 1
    assert "shoe_size" in _errors(api, job["id"])[0]["reason"]
    _add_shoe_size(api)
    retried = api.post(f"/v1/batches/{job['id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "queued" and retried.json()["total_rows"] == 0
    done = _wait(api, job["id"])
    assert (done["status"], done["accepted_rows"], done["rejected_rows"], done["attempts"]) == ("succeeded", 1, 0, 2)
    assert _errors(api, job["id"]) == []  # the errors of the failed attempt are gone
    assert done["file_sha256"] == job["file_sha256"]
    error = assert_error(api.post(f"/v1/batches/{job['id']}/retry"), 409, "batch_not_retryable")
    assert error["details"] == {"batch_id": job["id"], "status": "succeeded"} and "succeeded" in error["message"]
    assert_error(api.post("/v1/batches/999999999/retry"), 404, "not_found")


def test_retry_is_refused_while_queued_or_live_and_allowed_once_the_worker_is_gone(api, engine, monkeypatch):
    from cdp.jobs import queue

    crm = _dataset(api, "profile")
    _add_shoe_size(api)
    monkeypatch.setattr(queue, "claim_next", lambda *args, **kwargs: None)  # the upload leaves the job queued
    job = _upload(api, crm, SHOE.decode(), "shoes.jsonl")
    assert api.get(f"/v1/batches/{job['id']}").json()["status"] == "queued"
    error = assert_error(api.post(f"/v1/batches/{job['id']}/retry"), 409, "batch_not_retryable")
    assert "queued" in error["message"]

    # processing on another host, heartbeat 5 s ago: alive
    now = datetime.now(timezone.utc)
    _set_job(engine, job["id"], status="processing", worker="elsewhere:4242:0badcafe", attempts=1,
             heartbeat_at=now - timedelta(seconds=5))
    error = assert_error(api.post(f"/v1/batches/{job['id']}/retry"), 409, "batch_not_retryable")
    assert "is being processed (attempt 1, last heartbeat" in error["message"] and "30 s" in error["message"]
    assert error["details"]["status"] == "processing" and error["details"]["attempts"] == 1
    # …silent for a minute: gone, the retry takes the job over and runs it
    _set_job(engine, job["id"], heartbeat_at=now - timedelta(seconds=60))
    monkeypatch.undo()
    retried = api.post(f"/v1/batches/{job['id']}/retry")
    assert retried.status_code == 202, retried.text
    done = _wait(api, job["id"])
    assert (done["status"], done["accepted_rows"], done["attempts"]) == ("succeeded", 1, 2)


def test_worker_liveness_rule():
    from cdp.jobs.liveness import running as _running
    from cdp.jobs.liveness import running_lock as _running_lock
    from cdp.jobs.liveness import worker_gone, worker_id

    host = socket.gethostname()
    me = worker_id()
    assert me.startswith(f"{host}:") and me.split(":")[1].isdigit() and worker_id() == me

    def gone(worker, heartbeat_at=NOW, batch_id=1):
        return worker_gone(database="db", job_id=batch_id, worker=worker, heartbeat_at=heartbeat_at, now=NOW)

    recent, old = NOW - timedelta(seconds=5), NOW - timedelta(seconds=31)
    # 1. this process: alive exactly while a thread of it runs the job
    assert "does not run the job" in gone(me)
    with _running_lock:
        _running[("db", 1)] = object()
    try:
        assert gone(me, old) is None
        assert gone(me, batch_id=2) is not None
    finally:
        with _running_lock:
            del _running[("db", 1)]
    # 2. this host: a process that no longer exists, or an earlier process with this pid
    assert "no longer runs" in gone(f"{host}:{_dead_pid()}:0badcafe", recent)
    assert "earlier server process" in gone(f"{host}:{me.split(':')[1]}:0badcafe", recent)
    assert gone(f"{host}:1:0badcafe", recent) is None  # pid 1 exists: the heartbeat decides
    assert "no heartbeat" in gone(f"{host}:1:0badcafe", old)
    # 3. another host: the heartbeat
    assert gone("elsewhere:77:0badcafe", recent) is None
    assert "no heartbeat from worker elsewhere:77:0badcafe for 31 s" in gone("elsewhere:77:0badcafe", old)
    assert "never sent a heartbeat" in gone("elsewhere:77:0badcafe", None)
    assert gone(None) == "no worker recorded"


# ---- recovery on start, stopping on shutdown ---------------------------------------------------

@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_start_fails_jobs_of_gone_workers_and_starts_queued_ones(backend, request, sqlite_url_factory,
                                                                 monkeypatch):
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from cdp.jobs import queue

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    monkeypatch.setattr(queue, "claim_next", lambda *args, **kwargs: None)  # uploads leave their jobs queued
    with TestClient(create_app(make_settings(url))) as client:
        schema = client.get("/v1/schema", headers=headers).json()
        schema["profile"]["shoe_size"] = "number"
        client.put("/v1/schema", headers=headers, json={k: schema[k] for k in ("profile", "event", "event_types",
                                                                               "enums")})
        crm = client.post("/v1/datasets", headers=headers, json={"name": "CRM", "kind": "profile"}).json()["id"]
        ids = [client.post(f"/v1/datasets/{crm}/batches", headers=headers,
                           files={"file": ("shoes.jsonl", SHOE.replace(b"C-1", f"C-{n}".encode()))}).json()["id"]
               for n in range(4)]
        engine = client.app.state.engine
        now = datetime.now(timezone.utc)
        host = socket.gethostname()
        dead_here, silent_elsewhere, alive_elsewhere, queued = ids
        _set_job(engine, dead_here, status="processing", worker=f"{host}:{_dead_pid()}:0badcafe", attempts=1,
                 heartbeat_at=now)
        _set_job(engine, silent_elsewhere, status="processing", worker="elsewhere:77:0badcafe", attempts=1,
                 heartbeat_at=now - timedelta(minutes=5))
        _set_job(engine, alive_elsewhere, status="processing", worker="elsewhere:78:0badcafe", attempts=1,
                 heartbeat_at=now + timedelta(minutes=5))  # beats on for the length of the test
    monkeypatch.undo()
    with TestClient(create_app(make_settings(url))) as client:
        read = {pk: client.get(f"/v1/batches/{pk}", headers=headers).json() for pk in ids}
        for pk, reason in [(dead_here, "no longer runs"), (silent_elsewhere, "no heartbeat from worker")]:
            assert read[pk]["status"] == "failed", read[pk]
            assert read[pk]["message"].startswith("the server stopped while processing this batch (")
            assert reason in read[pk]["message"] and f"POST /v1/batches/{pk}/retry runs it again" in read[pk]["message"]
        assert read[alive_elsewhere]["status"] == "processing"
        deadline = time.monotonic() + 30
        while (job := client.get(f"/v1/batches/{queued}", headers=headers).json())["status"] != "succeeded":
            assert time.monotonic() < deadline and job["status"] != "failed", job
            time.sleep(0.05)
        assert job["accepted_rows"] == 1
        assert client.post(f"/v1/batches/{alive_elsewhere}/retry", headers=headers).status_code == 409
        assert client.post(f"/v1/batches/{dead_here}/retry", headers=headers).status_code == 202
        deadline = time.monotonic() + 30
        while (job := client.get(f"/v1/batches/{dead_here}", headers=headers).json())["status"] != "succeeded":
            assert time.monotonic() < deadline and job["status"] != "failed", job
            time.sleep(0.05)


def test_shutdown_stops_a_running_job_and_applies_nothing(sqlite_url_factory):
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from cdp.storage.models import events

    url = sqlite_url_factory()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    lines = ["cookie,event_id,kind,at"] + [f"c-{i % 50},e-{i},productView,2026-11-27T18:00:00Z" for i in range(3000)]
    mapping = {"cookie": "identity.ecid", "event_id": "id", "kind": "type", "at": "timestamp"}
    with TestClient(create_app(make_settings(url))) as client:
        web = client.post("/v1/datasets", headers=headers, json={"name": "Web", "kind": "event"}).json()["id"]
        job = client.post(f"/v1/datasets/{web}/batches", headers=headers, data={"mapping": json.dumps(mapping)},
                          files={"file": ("web.csv", "\n".join(lines).encode())}).json()
        deadline = time.monotonic() + 30
        while client.get(f"/v1/batches/{job['id']}", headers=headers).json()["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    from cdp.storage.database import create_engine

    engine = create_engine(url)
    try:
        from cdp.storage.models import ingestion_batches

        with engine.connect() as connection:
            row = connection.execute(sa.select(ingestion_batches).where(ingestion_batches.c.pk == job["id"])).one()
            stored = connection.execute(sa.select(sa.func.count()).select_from(events)
                                        .where(events.c.dataset_pk == web)).scalar_one()
    finally:
        engine.dispose()
    assert row.status == "failed" and "the server was shut down" in row.message, row.message
    assert stored == 0


# ---- limits ------------------------------------------------------------------------------------

def test_file_limit_apart_from_the_body_limit(api):
    limit = api.app.state.settings.max_body_bytes
    crm = _dataset(api, "profile")
    lines = [json.dumps({"id": f"C-{n}", "tier": "gold", "pad": "x" * 60_000}) for n in range(limit // 60_000 + 2)]
    big = "\n".join(lines) + "\n"  # over the body limit, far under the file limit (the padding is not mapped)
    assert len(big) > limit
    job = _wait(api, _upload(api, crm, big, "big.jsonl", mapping={"id": "identity.crm_id", "tier": "loyalty.tier"})
                ["id"])
    assert job["status"] == "succeeded" and job["accepted_rows"] == len(lines), job
    # the body limit still holds everywhere else
    assert_error(api.post(f"/v1/datasets/{crm}/records", content=b" " * (limit + 1),
                          headers={"Content-Type": "application/json"}), 413, "payload_too_large")


def _multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "cdpboundary7c1f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_file_limit_is_enforced_while_reading(sqlite_url_factory):
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    app = create_app(make_settings(sqlite_url_factory(), max_file_bytes=4096, max_body_bytes=1024))
    with TestClient(app) as client:
        crm = client.post("/v1/datasets", headers=headers, json={"name": "CRM", "kind": "profile"}).json()["id"]
        path = f"/v1/datasets/{crm}/batches"
        line = b'{"identities": [{"namespace": "crm_id", "id": "C-1"}], "attributes": {}}\n'
        exactly = (line * (4096 // len(line) + 1))[:4095] + b"\n"
        assert len(exactly) == 4096
        response = client.post(path, headers=headers, files={"file": ("ok.jsonl", exactly)})
        assert response.status_code == 202, response.text
        # over the file limit, within file + form: the endpoint refuses it as it reads
        error = assert_error(client.post(path, headers=headers, files={"file": ("big.jsonl", exactly + b"\n")}),
                             413, "file_too_large")
        assert error["details"] == {"limit_bytes": 4096, "limit": "CDP_MAX_FILE_BYTES"}
        assert "larger than 4096 bytes" in error["message"]
        # a Content-Length over file + form: refused before anything is read
        body, content_type = _multipart("big.jsonl", line * 100)
        error = assert_error(client.post(path, headers={**headers, "Content-Type": content_type}, content=body),
                             413, "file_too_large")
        assert error["details"] == {"limit_bytes": 4096, "request_limit_bytes": 4096 + 1024}

        def chunks():  # no Content-Length: cut while streaming
            for start in range(0, len(body), 1000):
                yield body[start:start + 1000]

        error = assert_error(client.post(path, headers={**headers, "Content-Type": content_type}, content=chunks()),
                             413, "file_too_large")
        assert error["details"]["request_limit_bytes"] == 5120
        assert_error(client.post(path, files={"file": ("ok.jsonl", exactly)}), 401, "missing_api_key")
        assert client.get(path, headers=headers).json()["total"] == 1


def test_file_limit_is_capped_by_what_the_database_stores():
    from cdp.ingestion.uploads import POSTGRESQL_MAX_VALUE_BYTES, file_limit

    assert file_limit("sqlite", 4096) == (4096, "CDP_MAX_FILE_BYTES")
    limit, reason = file_limit("sqlite", 2**30)
    assert limit == 1_000_000_000 and reason == ("the most the SQLite database stores in one value; "
                                                 "CDP_MAX_FILE_BYTES is 1073741824")
    assert file_limit("postgresql", 2**30)[0] == POSTGRESQL_MAX_VALUE_BYTES < 2**30


def test_rows_per_file_limit_fails_the_batch(api, monkeypatch):
    import cdp.ingestion

    monkeypatch.setattr(cdp.ingestion, "MAX_BATCH_ROWS", 3)
    crm = _dataset(api, "profile")
    _add_shoe_size(api)
    job = _wait(api, _upload(api, crm, SHOE.decode() * 4, "shoes.jsonl")["id"])
    assert job["status"] == "failed" and job["accepted_rows"] == 0
    assert job["message"] == "more than 3 rows; at most 3 per file (split it into several batches); nothing was applied"
    assert _wait(api, _upload(api, crm, SHOE.decode() * 3, "shoes.jsonl")["id"])["status"] == "succeeded"


def test_a_csv_error_fails_the_batch_with_its_line(api):
    crm = _dataset(api, "profile")
    text = 'Id,Tier\nC-1,gold\n"C-2,' + "x" * 200_000 + "\n"  # an unterminated quote swallows the rest
    job = _wait(api, _upload(api, crm, text, mapping={"Id": "identity.crm_id", "Tier": "loyalty.tier"},
                             error_threshold=1)["id"])
    assert job["status"] == "failed" and "the CSV file cannot be read past line" in job["message"], job
    assert "nothing was applied" in job["message"]


# ---- namespaces --------------------------------------------------------------------------------

def test_mappings_accept_the_sandbox_custom_namespaces(api):
    from tests.api.conftest import new_sandbox

    created = api.post("/v1/identity/namespaces", json={"code": "loyalty_card", "name": "Loyalty card",
                                                        "kind": "person"})
    assert created.status_code == 201, created.text
    crm = _dataset(api, "profile")
    text = "Card,Tier\nLC-1,gold\n"
    mapping = {"Card": "identity.loyalty_card", "Tier": "loyalty.tier"}
    job = _wait(api, _upload(api, crm, text, mapping=mapping)["id"])
    assert job["status"] == "succeeded" and job["accepted_rows"] == 1, job
    other = new_sandbox(api)
    theirs = _dataset(api, "profile", sandbox=other)
    response = api.post(f"/v1/datasets/{theirs}/batches", sandbox=other, files={"file": ("crm.csv", text.encode())},
                        data={"mapping": json.dumps(mapping)})
    error = assert_error(response, 422, "invalid_mapping")
    assert "unknown identity namespace in 'identity.loyalty_card'" in error["message"]
