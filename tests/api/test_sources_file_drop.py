"""A file drop: files appear in a folder, are ingested once as batch jobs with the source's
mapping, and land in done/ or failed/ named with their job's id."""

from __future__ import annotations

import time

from tests.api.conftest import assert_error, create_dataset
from tests.api.test_sources_database import run_now


def wait_settled(api, source_id: int, run_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/v1/sources/{source_id}/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed") and all(f["status"] != "ingesting" for f in run["files"]):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.2)


def test_files_are_ingested_once_and_moved(api, tmp_path):
    profile = create_dataset(api, "profile", "drops")
    drop = tmp_path / "drop"
    drop.mkdir()
    response = api.post("/v1/sources", json={
        "name": "CRM drop", "type": "file_drop", "datasets": {"profile": profile},
        "config": {"directory": str(drop), "min_age_seconds": 0},
        "mapping": {"Email": {"to": "identity.email", "transforms": ["trim", "lower"]}, "Tier": "loyalty.tier"},
        "schedule": {"every_minutes": 60}})
    assert response.status_code == 201, response.text
    source = response.json()
    assert source["next_run_at"] is not None
    (drop / "contacts.csv").write_text("Email,Tier\nann@example.com,gold\nbob@example.com,silver\n")
    (drop / "broken.csv").write_text("Email,Tier\n" + "".join(f"p{n}@example.com,diamond\n" for n in range(5)))
    (drop / "notes.txt").write_text("not a data file")
    (drop / "latin1.csv").write_bytes("Email,Tier\ncafé@example.com,gold\n".encode("latin-1"))
    preview = api.get(f"/v1/sources/{source['id']}/preview").json()
    assert preview["source"] == "broken.csv" and preview["rows"][0]["record"] is None

    run = run_now(api, source["id"])
    run = wait_settled(api, source["id"], run["id"])
    files = {f["name"]: f for f in run["files"]}
    assert set(files) == {"contacts.csv", "broken.csv", "latin1.csv"}
    good, bad, latin = files["contacts.csv"], files["broken.csv"], files["latin1.csv"]
    assert good["status"] == "done" and good["moved_to"] == str(drop / "done" / f"{good['job_id']}-contacts.csv")
    assert bad["status"] == "failed" and bad["moved_to"] == str(drop / "failed" / f"{bad['job_id']}-broken.csv")
    assert "over the error threshold" in bad["message"]
    assert latin["status"] == "failed" and latin["job_id"] is None and "UTF-8" in latin["message"]
    assert (drop / "failed" / "nojob-latin1.csv").exists()
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == ["notes.txt"]
    assert run["status"] == "failed" and run["counts"]["accepted_rows"] == 2
    assert api.get(f"/v1/batches/{good['batch_id']}").json()["status"] == "succeeded"
    ann = api.get("/v1/profiles/lookup", params={"namespace": "email", "id": "ann@example.com"}).json()
    assert ann["attributes"]["loyalty"]["tier"] == "gold"

    # ingested once: the next run finds nothing new; the same file dropped again is skipped, said so
    second = run_now(api, source["id"])
    assert (second["status"], second["files"]) == ("succeeded", [])
    (drop / "contacts.csv").write_text("Email,Tier\nann@example.com,gold\nbob@example.com,silver\n")
    third = run_now(api, source["id"])
    assert third["status"] == "succeeded" and "already picked up" in third["message"]
    assert len(api.get(f"/v1/datasets/{profile}/batches").json()["items"]) == 2

    # pause keeps the schedule from running; a folder that is not there is refused
    assert api.post(f"/v1/sources/{source['id']}/pause").json()["next_run_at"] is None
    assert_error(api.post("/v1/sources", json={"name": "nowhere", "type": "file_drop", "datasets": {
        "profile": profile}, "config": {"directory": str(tmp_path / "missing")}}), 422, "invalid_source")


def test_a_scheduled_file_drop_runs_when_due(tmp_path, sqlite_url_factory):
    """The recurring job, driven by an injected clock (docs/jobs.md): due → a run; paused → none."""
    from datetime import datetime, timedelta, timezone

    import sqlalchemy as sa

    from cdp.datasets.models import DatasetCreate, DatasetKind
    from cdp.datasets.service import create_dataset as make_dataset
    from cdp.ingestion.batch_job import batch_job_kind
    from cdp.jobs import Registry, Runner
    from cdp.schema import luma_schema
    from cdp.settings import Settings
    from cdp.sources.jobs import KINDS
    from cdp.sources.models import SourceCreate
    from cdp.sources.service import create_source, list_runs
    from cdp.storage.database import create_engine, write_transaction
    from cdp.storage.migrate import upgrade

    engine = create_engine(sqlite_url_factory())
    upgrade(engine)
    drop = tmp_path / "scheduled"
    drop.mkdir()
    now = datetime.now(timezone.utc)
    with write_transaction(engine) as connection:
        dataset = make_dataset(connection=connection, sandbox="prod", spec=DatasetCreate(
            name="d", kind=DatasetKind.profile), schema=luma_schema())
        source = create_source(connection=connection, sandbox="prod", settings=Settings(), now=now,
                               schema=luma_schema(), spec=SourceCreate.model_validate({
                                   "name": "s", "type": "file_drop", "datasets": {"profile": dataset.id},
                                   "config": {"directory": str(drop), "min_age_seconds": 0},
                                   "mapping": {"Email": "identity.email"}, "schedule": {"every_minutes": 10}}))
    (drop / "a.csv").write_text("Email\nx@example.com\n")
    clock = [now]
    runner = Runner(engine, Registry([batch_job_kind(None), *KINDS]), clock=lambda: clock[0])
    assert runner.run_once() is None  # not due for ten minutes
    clock[0] += timedelta(minutes=10)
    assert runner.run_once() is not None  # the schedule: a run, which submits a.csv
    while runner.run_once() is not None:  # the batch
        pass
    clock[0] += timedelta(minutes=1)
    while runner.run_once() is not None:  # the settle job moves the file
        pass
    with engine.connect() as connection:
        runs, total = list_runs(connection=connection, sandbox="prod", source_id=source.id, limit=10, offset=0)
    assert total == 1 and runs[0].trigger == "schedule" and runs[0].files[0].status == "done"
    assert (drop / "done").is_dir() and not (drop / "a.csv").exists()
    engine.dispose()
