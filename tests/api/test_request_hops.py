"""The per-request path (issue 16): the hot routes run their handler, with its connection opened,
committed and closed, in one thread-pool hop — and keep what ``ConnectionDep`` promises (commit
before the answer, rollback on error, SQLite's write lock up front), through ``single_hop``
(cdp/api/deps.py)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Query
from fastapi.testclient import TestClient

from cdp.api.deps import ConnectionDep, single_hop
from cdp.storage.database import create_engine
from tests.api.conftest import count_awaits, create_dataset


@pytest.fixture
def hops(monkeypatch):
    """Counts the thread-pool hops (anyio.to_thread.run_sync: FastAPI's and Starlette's way there)."""
    return count_awaits(monkeypatch, anyio.to_thread, "run_sync")


def test_the_hot_routes_take_one_thread_pool_hop(api, hops):
    dataset = create_dataset(api, "event")
    record = {"identities": [{"namespace": "email", "id": "hop@example.com"}],
              "event": {"id": "e-1", "type": "pageView", "timestamp": "2026-12-01T10:00:00Z"}}
    assert api.post(f"/v1/datasets/{dataset}/records", json=record).status_code == 200  # key, sandbox: remembered
    hops[0] = 0
    response = api.post(f"/v1/datasets/{dataset}/records", json={**record, "event": {**record["event"], "id": "e-2"}})
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    assert hops[0] == 1  # main: 3 (connection open, handler, connection close)
    hops[0] = 0
    assert api.get(f"/v1/datasets/{dataset}").status_code == 200
    assert hops[0] == 1  # main: 4 (open, handler, the response model's validation, close)


@pytest.fixture
def tiny(tmp_path):
    """A FastAPI app with single_hop routes writing to a table of their own, on SQLite."""
    engine = create_engine(f"sqlite:///{tmp_path / 'tiny.db'}")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE notes (text TEXT)")
    app = FastAPI()
    app.state.engine = engine
    seen: dict = {}

    @app.post("/notes")
    @single_hop
    def write(connection: ConnectionDep, text: Annotated[str, Query()], fail: bool = False) -> dict:
        seen["in_transaction"] = connection.connection.dbapi_connection.in_transaction  # before any statement
        connection.execute(sa.text("INSERT INTO notes VALUES (:t)"), {"t": text})
        if fail:
            raise HTTPException(409, "refused after writing")
        return {"ok": True}

    @app.get("/notes")
    @single_hop
    def read(connection: ConnectionDep) -> list[str]:
        return [r[0] for r in connection.execute(sa.text("SELECT text FROM notes ORDER BY text"))]

    with TestClient(app) as client:
        yield client, seen
    engine.dispose()


def test_single_hop_commits_before_the_answer_and_rolls_back_on_error(tiny):
    client, seen = tiny
    assert client.post("/notes", params={"text": "kept"}).json() == {"ok": True}
    assert seen["in_transaction"] is True  # a writer: BEGIN IMMEDIATE (SQLite's lock) before the handler's work
    assert client.post("/notes", params={"text": "dropped", "fail": True}).status_code == 409
    assert client.get("/notes").json() == ["kept"]
    assert client.get("/notes", params={"text": "x"}).status_code == 200
    assert client.post("/notes").status_code == 422  # validation still FastAPI's


def test_single_hop_keeps_the_route_as_fastapi_sees_it(tiny):
    client, _ = tiny
    operation = client.get("/openapi.json").json()["paths"]["/notes"]["post"]
    assert operation["operationId"] == "write_notes_post"
    assert [p["name"] for p in operation["parameters"]] == ["text", "fail"]
    with pytest.raises(TypeError):
        single_hop(lambda: None)  # no ConnectionDep: nothing to do in one hop
