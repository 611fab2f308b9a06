"""File destinations over HTTP, on SQLite and PostgreSQL: full and incremental exports, CSV and
JSON Lines, consent applied and counted, each file renamed into place with its manifest (no
temporary file left), each export in the delivery log; the schedule as a recurring job."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.storage.models import jobs
from tests.api.conftest import assert_error
from tests.api.conftest import create_dataset as _dataset


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CDP_ACTIVATION_EXPORT_ROOT", str(tmp_path))
    return tmp_path


def _people(api, crm: int, people: dict[int, tuple[str, str | None]]) -> None:
    records = []
    for n, (tier, consent) in people.items():
        attributes = {"loyalty": {"tier": tier}, "email": f"p{n}@example.com", "person": {"first_name": f"P{n}"}}
        if consent:
            attributes["consents"] = {"email": consent}
        records.append({"identities": [{"namespace": "crm_id", "id": f"C-{n}"}], "attributes": attributes})
    response = api.post(f"/v1/datasets/{crm}/records", json={"records": records})
    assert response.status_code == 200, response.text


def _file_destination(api, mode: str, fmt: str, **config) -> int:
    response = api.post("/v1/destinations", json={
        "name": f"{mode} {fmt}", "type": "file", "marketing_actions": ["email_targeting"], "consent": "consents.email",
        "config": {"directory": f"luma/{mode}-{fmt}", "format": fmt, "mode": mode, **config}})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _export(api, destination: int, count: int) -> list[dict]:
    """Ask for an export and wait for the delivery log to hold ``count`` files; the log, newest first."""
    response = api.post(f"/v1/destinations/{destination}/export", json={})
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 30
    while True:
        items = api.get(f"/v1/destinations/{destination}/deliveries").json()["items"]
        if len(items) >= count:
            return items
        assert time.monotonic() < deadline, items
        time.sleep(0.05)


def _manifest(path: str) -> dict:
    manifest = json.loads(Path(path + ".manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return manifest


def _setup(api) -> int:
    crm = _dataset(api, "profile", "CRM")
    assert api.post("/v1/segments", json={"key": "gold", "name": "Gold", "expression": 'loyalty.tier = "gold"',
                                          "evaluation": "streaming"}).status_code == 201
    _people(api, crm, {1: ("gold", "y"), 2: ("gold", "y"), 3: ("gold", "n"), 4: ("gold", None), 5: ("silver", "y")})
    return crm


def _activate(api, destination: int) -> int:
    response = api.post("/v1/activations", json={"segment": "gold", "destination": destination,
                                                 "attributes": ["email", "person"], "identities": ["crm_id"]})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_full_csv_export(api, root):
    crm = _setup(api)
    destination = _file_destination(api, "full", "csv")
    activation = _activate(api, destination)
    [first] = _export(api, destination, 1)
    assert first["status"] == "delivered" and (first["changes"], first["excluded_no_consent"]) == (2, 2)
    path = first["file"]
    assert Path(path).parent == root / "luma" / "full-csv" and path.endswith(".csv")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["identity.crm_id"] for r in rows] == ["C-1", "C-2"]
    assert set(rows[0]) == {"profile_id", "identity.crm_id", "email", "person.birth_date", "person.first_name",
                            "person.gender", "person.last_name"}
    assert (rows[0]["email"], rows[0]["person.first_name"], rows[0]["person.last_name"]) == ("p1@example.com", "P1", "")
    manifest = _manifest(path)
    assert (manifest["rows"], manifest["excluded_no_consent"], manifest["mode"]) == (2, 2, "full")
    assert manifest["delivery_id"] == first["id"] and manifest["activation"] == activation
    read = api.get(f"/v1/activations/{activation}").json()
    assert (read["members_exported"], read["excluded_no_consent"]) == (2, 2)
    # P3 gives consent, P1 leaves: the next full file is the whole audience again
    _people(api, crm, {3: ("gold", "y"), 1: ("silver", "y")})
    second = _export(api, destination, 2)[0]
    with open(second["file"], newline="") as file:
        assert [r["identity.crm_id"] for r in csv.DictReader(file)] == ["C-2", "C-3"]
    assert not [p for p in (root / "luma" / "full-csv").iterdir() if p.name.startswith(".")]  # no temporary file


def test_incremental_jsonl_export(api, root):
    crm = _setup(api)
    destination = _file_destination(api, "incremental", "jsonl")
    activation = _activate(api, destination)
    [first] = _export(api, destination, 1)
    lines = [json.loads(line) for line in Path(first["file"]).read_text().splitlines()]
    assert [(c["identities"]["crm_id"], c["status"]) for c in lines] == [(["C-1"], "entered"), (["C-2"], "entered")]
    assert lines[0]["attributes"]["person.first_name"] == "P1" and first["excluded_no_consent"] == 2
    # since then: P1 leaves, P5 joins, P2 withdraws consent, P4 (never sent) leaves
    _people(api, crm, {1: ("silver", "y"), 5: ("gold", "y"), 2: ("gold", "n"), 4: ("bronze", None)})
    second = _export(api, destination, 2)[0]
    lines = [json.loads(line) for line in Path(second["file"]).read_text().splitlines()]
    assert sorted((c["identities"]["crm_id"][0], c["status"]) for c in lines) == [
        ("C-1", "exited"), ("C-2", "exited"), ("C-5", "entered")]
    assert _manifest(second["file"])["rows"] == 3
    read = api.get(f"/v1/activations/{activation}").json()
    assert (read["members_exported"], read["excluded_no_consent"]) == (1, 2)  # P5; P2 and P3
    # nothing new: an empty file (and its manifest) says so
    third = _export(api, destination, 3)[0]
    assert third["changes"] == 0 and Path(third["file"]).read_text() == ""


def test_schedule_is_a_recurring_job(api, engine, root):
    _setup(api)
    destination = _file_destination(api, "full", "csv", every_minutes=60)
    with engine.connect() as connection:
        job = connection.execute(sa.select(jobs).where(jobs.c.key == f"schedule:{destination}")).one()
    assert job.interval_seconds == 3600 and job.kind == "activation.export"
    api.patch(f"/v1/destinations/{destination}", json={"config": {"directory": "luma/x", "every_minutes": 5}})
    with engine.connect() as connection:
        assert connection.execute(sa.select(jobs.c.interval_seconds).where(
            jobs.c.key == f"schedule:{destination}")).scalar_one() == 300
    api.patch(f"/v1/destinations/{destination}", json={"config": {"directory": "luma/x"}})
    with engine.connect() as connection:
        assert connection.execute(sa.select(jobs.c.pk).where(jobs.c.key == f"schedule:{destination}")).first() is None


def test_export_errors(api, root):
    _setup(api)
    hook = api.post("/v1/destinations", json={"name": "hook", "type": "webhook",
                                              "marketing_actions": ["email_targeting"],
                                              "config": {"url": "http://127.0.0.1:9/x", "secret": "x" * 20}}).json()
    assert_error(api.post(f"/v1/destinations/{hook['id']}/export", json={}), 409, "not_exportable")
    files = _file_destination(api, "full", "csv")
    assert_error(api.post(f"/v1/destinations/{files}/redeliver", json={}), 409, "not_redeliverable")
    assert_error(api.patch(f"/v1/destinations/{files}", json={"config": {"url": "http://x/y", "secret": "y" * 20}}),
                 422, "invalid_destination")
