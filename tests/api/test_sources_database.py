"""A database source against a real PostgreSQL holding a CRM table (the service itself on SQLite
and on PostgreSQL): the first run loads it, rows changed afterwards arrive on the next run and no
others, a bad row is reported; credentials are never returned; test-connection and preview."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.api.conftest import assert_error, create_dataset

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
MAPPING = {"email": {"to": "identity.email", "transforms": ["trim", "lower"]}, "crm_id": "identity.crm_id",
           "first_name": "person.first_name", "tier": "loyalty.tier", "points": "loyalty.points"}


@pytest.fixture
def crm(postgres_url_factory):
    """A CRM database with a contacts table of 40 rows; row C-0013 holds a tier the schema refuses."""
    url = postgres_url_factory()
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE contacts (crm_id text PRIMARY KEY, email text, first_name text, "
                                   "tier text, points integer, updated_at timestamptz NOT NULL)")
        for n in range(40):
            connection.execute(sa.text("INSERT INTO contacts VALUES (:id, :email, :name, :tier, :points, :at)"), {
                "id": f"C-{n:04d}", "email": f" Person{n}@Example.com", "name": f"Name {n}",
                "tier": "diamond" if n == 13 else "bronze", "points": n * 10, "at": T0 + timedelta(minutes=n)})
    yield url, engine
    engine.dispose()


def _with_password(url: str, password: str) -> str:
    made = sa.engine.make_url(url)
    return made.set(password=password).render_as_string(hide_password=False)


def wait_for_run(api, source_id: int, run_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/v1/sources/{source_id}/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "skipped"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.2)


def run_now(api, source_id: int) -> dict:
    response = api.post(f"/v1/sources/{source_id}/run")
    assert response.status_code == 202, response.text
    return wait_for_run(api, source_id, response.json()["id"])


def test_incremental_runs_of_a_crm_table(api, crm):
    url, crm_engine = crm
    profile = create_dataset(api, "profile", "CRM contacts")
    response = api.post("/v1/sources", json={
        "name": "CRM", "type": "database", "datasets": {"profile": profile},
        "config": {"url": _with_password(url, "s3cret-pw"), "table": "contacts", "cursor_column": "updated_at"},
        "mapping": MAPPING})
    assert response.status_code == 201, response.text
    source = response.json()
    assert "s3cret-pw" not in response.text and source["config"]["password_set"] is True
    assert source["write_key"] is None and source["endpoint"] is None
    assert "s3cret-pw" not in api.get(f"/v1/sources/{source['id']}").text
    assert "s3cret-pw" not in api.get("/v1/sources").text

    test = api.post(f"/v1/sources/{source['id']}/test").json()
    assert test["ok"] is True and {"crm_id", "updated_at"} <= set(test["columns"]), test
    preview = api.get(f"/v1/sources/{source['id']}/preview", params={"limit": 15}).json()
    assert [r["row_number"] for r in preview["rows"]] == list(range(1, 16))
    assert preview["rows"][0]["record"]["identities"][0] == {"namespace": "email", "id": "person0@example.com"}
    assert preview["rows"][13]["record"] is None and "diamond" in preview["rows"][13]["errors"][0]["reason"]

    # 1. the first run loads the table; the bad row is reported with its content
    first = run_now(api, source["id"])
    assert first["status"] == "succeeded", first
    assert first["rows_read"] == 40
    assert first["counts"] == {"total_rows": 40, "accepted_rows": 39, "rejected_rows": 1, "duplicate_rows": 0}
    errors = api.get(f"/v1/batches/{first['batch_id']}/errors").json()["items"]
    assert len(errors) == 1 and errors[0]["row_number"] == 14 and "diamond" in errors[0]["reason"]
    assert "C-0013" in errors[0]["raw"] and errors[0]["column"] == "tier"
    found = api.get("/v1/profiles/lookup", params={"namespace": "crm_id", "id": "C-0005"}).json()
    assert found["attributes"]["loyalty"] == {"tier": "bronze", "points": 50}
    assert api.get("/v1/profiles/lookup", params={"namespace": "crm_id", "id": "C-0013"}).status_code == 404

    # 2. rows changed afterwards arrive on the next run, and no others
    with crm_engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET tier = 'gold', points = 999, updated_at = :at "
                                   "WHERE crm_id IN ('C-0005', 'C-0013')"), {"at": T0 + timedelta(days=1)})
        connection.execute(sa.text("UPDATE contacts SET first_name = 'Changed', updated_at = :at "
                                   "WHERE crm_id = 'C-0020'"), {"at": T0 + timedelta(days=1, minutes=1)})
    second = run_now(api, source["id"])
    assert second["status"] == "succeeded", second
    assert second["rows_read"] == 3 and second["counts"]["total_rows"] == 3 and second["counts"]["accepted_rows"] == 3
    assert second["cursor_from"]["value"].startswith("2026-12-01T09:39")
    found = api.get("/v1/profiles/lookup", params={"namespace": "crm_id", "id": "C-0005"}).json()
    assert found["attributes"]["loyalty"] == {"tier": "gold", "points": 999}
    assert api.get("/v1/profiles/lookup", params={"namespace": "crm_id", "id": "C-0013"}).status_code == 200

    # 3. nothing changed: nothing read
    third = run_now(api, source["id"])
    assert (third["status"], third["rows_read"], third["batch_id"]) == ("succeeded", 0, None)
    runs = api.get(f"/v1/sources/{source['id']}/runs").json()
    assert [r["id"] for r in runs["items"]] == [third["id"], second["id"], first["id"]]
    assert api.get(f"/v1/sources/{source['id']}").json()["last_run"]["id"] == third["id"]


def test_a_failed_run_moves_nothing_forward_and_errors_are_structured(api, crm):
    url, crm_engine = crm
    profile = create_dataset(api, "profile", "CRM")
    response = api.post("/v1/sources", json={
        "name": "CRM strict", "type": "database", "datasets": {"profile": profile},
        "config": {"url": url, "table": "contacts", "cursor_column": "updated_at", "error_threshold": 0},
        "mapping": MAPPING})
    source = response.json()
    failed = run_now(api, source["id"])
    assert failed["status"] == "failed" and "over the error threshold" in failed["message"]
    with crm_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE contacts SET tier = 'silver' WHERE crm_id = 'C-0013'")
    again = run_now(api, source["id"])
    assert again["status"] == "succeeded" and again["rows_read"] == 40 and again["cursor_from"] is None

    # what is refused at creation, with every problem named
    error = assert_error(api.post("/v1/sources", json={
        "name": "bad", "type": "database", "datasets": {"profile": profile},
        "config": {"url": url, "table": "contacts; drop table contacts", "query": "delete from contacts"},
        "mapping": MAPPING}), 422, "invalid_source")
    assert len(error["details"]["errors"]) == 3  # both given, a table name that is not one, a query that writes
    assert_error(api.post("/v1/sources", json={
        "name": "bad", "type": "database", "datasets": {"profile": profile},
        "config": {"url": url, "table": "contacts"}, "mapping": {"email": "identity.nope"}}), 422, "invalid_mapping")
    # an unreachable database: the test says why, a run fails saying why
    response = api.post("/v1/sources", json={
        "name": "down", "type": "database", "datasets": {"profile": profile},
        "config": {"url": "postgresql://nobody@127.0.0.1:1/none", "table": "contacts"}, "mapping": MAPPING})
    down = response.json()
    test = api.post(f"/v1/sources/{down['id']}/test").json()
    assert test["ok"] is False and test["error"]["code"] == "source_unavailable"
    run = run_now(api, down["id"])
    assert run["status"] == "failed" and "cannot connect" in run["message"]
    # a query cannot write: the transaction is read-only (nextval writes the sequence)
    with crm_engine.begin() as connection:
        connection.exec_driver_sql("CREATE SEQUENCE reads")
    response = api.post("/v1/sources", json={
        "name": "writer", "type": "database", "datasets": {"profile": profile},
        "config": {"url": url, "query": "SELECT *, nextval('reads') AS n FROM contacts"},
        "mapping": MAPPING})
    run = run_now(api, response.json()["id"])
    assert run["status"] == "failed" and "read-only" in run["message"]
    with crm_engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM contacts").scalar() == 40
        assert connection.exec_driver_sql("SELECT last_value, is_called FROM reads").one() == (1, False)


def test_roles(api):
    profile = create_dataset(api, "profile")
    spec = {"name": "x", "type": "database", "datasets": {"profile": profile},
            "config": {"url": "sqlite:////nonexistent.db", "table": "t"}, "mapping": {"a": "email"}}
    assert_error(api.post("/v1/sources", json=spec, role="marketer"), 403, "forbidden")
    assert api.get("/v1/source-types", role="reader").status_code == 200
    types = {t["type"]: t for t in api.get("/v1/source-types").json()}
    assert set(types) == {"tracking_api", "database", "file_drop"}
    assert "cursor_column" in types["database"]["config_schema"]["properties"]
