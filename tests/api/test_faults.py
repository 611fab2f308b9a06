"""Faults under the service, and what `/healthz` says through them (cdp/api/health.py):

* the disk full — a small tmpfs holds the SQLite file: `/healthz` says `degraded` before it is
  full, a write that does not fit is refused whole (503, nothing of it stored), and once space is
  back the same write goes through and `/healthz` says `up`;
* PostgreSQL stopped under a running service (as a crash: `-m immediate`) and started again:
  `down` (503) while it is away, requests refused whole, then `up` and every write of before and
  after there;
* the job workers not running: `degraded`.

kill -9 of the server during a batch apply is tests/api/test_batch_crash.py (with merges:
test_crash_merge.py), during a segment run tests/api/test_crash_segment_run.py; a worker killed
during a job (segment runs, merges in a batch, the due re-evaluations all run as jobs) is
tests/jobs/test_jobs.py (`test_the_job_of_a_killed_worker_is_taken_back_and_run_again`).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.api.conftest import ADMIN_KEY, Api, assert_error, make_settings
from tests.components import require_component

MIB = 1024 * 1024


def _client(url: str, **settings):
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    return TestClient(create_app(make_settings(url, **settings)), raise_server_exceptions=False)


def _records(prefix: str, count: int, padding: int = 0) -> dict:
    return {"records": [{"identities": [{"namespace": "crm_id", "id": f"{prefix}-{i}"}],
                         "attributes": {"person": {"first_name": "x" * padding or "Ann"}}} for i in range(count)]}


def _stored(api: Api, prefix: str, count: int) -> int:
    found = 0
    for i in range(count):
        response = api.get("/v1/profiles/lookup", params={"namespace": "crm_id", "id": f"{prefix}-{i}"})
        found += response.status_code == 200
    return found


def test_health_is_degraded_while_the_job_workers_do_not_run(sqlite_url_factory):
    with _client(sqlite_url_factory()) as client:
        body = client.get("/healthz").json()
        assert (body["status"], body["state"], body["problems"]) == ("ok", "up", [])
        client.app.state.jobs.stop()
        body = client.get("/healthz").json()
        assert body["state"] == "degraded" and body["problems"][0].startswith("jobs: "), body


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 24 MiB tmpfs (root only: mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """A file taking the free space of ``folder`` but ``leave`` bytes."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def test_disk_full_under_sqlite(small_disk: Path):
    url = f"sqlite:///{small_disk}/cdp.db"
    with _client(url, min_free_disk_bytes=4 * MIB, max_body_bytes=8 * MIB) as client:
        api = Api(client, {"admin": ADMIN_KEY})
        assert client.get("/healthz").json()["state"] == "up"
        dataset = api.post("/v1/datasets", json={"name": "crm", "kind": "profile"}).json()["id"]
        before = api.post(f"/v1/datasets/{dataset}/records", json=_records("before", 20))
        assert before.status_code == 200, before.text
        filler = _fill(small_disk, leave=2 * MIB)
        body = client.get("/healthz").json()
        assert body["state"] == "degraded" and any(p.startswith("disk: ") for p in body["problems"]), body
        # records too large for what is left: refused whole
        prefix = f"full-{uuid.uuid4().hex[:6]}"
        refused = api.post(f"/v1/datasets/{dataset}/records", json=_records(prefix, 40, padding=60_000))
        assert refused.status_code in (503, 507), refused.text
        assert_error(refused, refused.status_code)
        filler.unlink()
        assert _stored(api, prefix, 40) == 0, "a refused write left part of itself"
        assert _stored(api, "before", 20) == 20
        again = api.post(f"/v1/datasets/{dataset}/records", json=_records(prefix, 40, padding=60_000))
        assert again.status_code == 200, again.text
        assert _stored(api, prefix, 40) == 40
        body = client.get("/healthz").json()
        assert body["state"] == "up", body


def test_postgresql_restarted_under_the_service():
    from cdp.devtools.postgres import start_cluster

    # durable, as a deployment is (the suite's shared cluster runs with fsync and synchronous commit off)
    cluster = require_component("postgres", lambda: start_cluster(
        fsync=True, extra_options="-c synchronous_commit=on -c full_page_writes=on"), hint="install the PostgreSQL server")
    try:
        url = cluster.create_database("cdp_restart")
        with _client(url) as client:
            api = Api(client, {"admin": ADMIN_KEY})
            dataset = api.post("/v1/datasets", json={"name": "crm", "kind": "profile"}).json()["id"]
            assert api.post(f"/v1/datasets/{dataset}/records", json=_records("before", 10)).status_code == 200
            cluster.halt()
            down = client.get("/healthz")
            error = assert_error(down, 503, "unavailable")
            assert error["details"]["state"] == "down", error
            refused = api.post(f"/v1/datasets/{dataset}/records", json=_records("during", 10))
            assert refused.status_code == 503, refused.text
            cluster.resume()
            deadline = time.monotonic() + 30
            while client.get("/healthz").status_code != 200:  # the pool drops its dead connections
                assert time.monotonic() < deadline, "the service did not come back after the database did"
                time.sleep(0.2)
            assert client.get("/healthz").json()["state"] == "up"
            assert api.post(f"/v1/datasets/{dataset}/records", json=_records("after", 10)).status_code == 200
            assert (_stored(api, "before", 10), _stored(api, "during", 10), _stored(api, "after", 10)) == (10, 0, 10)
            # the job workers lived through it: a segment run still completes
            created = api.post("/v1/segments", json={"key": "anns", "name": "Anns", "expression": 'person.first_name = "Ann"'})
            assert created.status_code == 201, created.text
            job = api.post("/v1/segment-jobs", json={"segments": ["anns"]}).json()
            deadline = time.monotonic() + 60
            while (status := api.get(f"/v1/segment-jobs/{job['id']}").json()["status"]) not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            assert status == "succeeded"
    finally:
        cluster.stop()
