"""Every request gives its database connection back clean, whatever its outcome.

A request that fails half-way through reading a result used to leave its pooled SQLite
connection holding the result's read snapshot (the cursor, kept alive by the traceback, was
never reset): whoever got that connection next read stale data and could not write (503 within
milliseconds) until the garbage collector happened to free the cursor. Here requests fail in each
layer — authentication, authorization, request validation, the service, reading a stored value —
and after each one another connection writes, and the service must both see that write (a fresh
read, on every pooled connection) and accept a write of its own.

The garbage collector is off during the test, as it may well be for tens of seconds in an idle
server: nothing may depend on it.
"""

from __future__ import annotations

import gc
import itertools
import uuid

import pytest
import sqlalchemy as sa

from tests.api.conftest import SARAH, assert_error, create_dataset, store_profiles

_names = itertools.count()


@pytest.fixture
def gc_off():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@pytest.fixture
def other_engine(engine):
    """A second engine on the same database: another process or server writing."""
    from cdp.storage.database import create_engine

    other = create_engine(engine.url.render_as_string(hide_password=False))
    yield other
    other.dispose()


def _corrupt_newest_event(engine, sandbox: str, profile_id: str) -> None:
    """A stored timestamp that cannot be read back (damaged outside the service): it sorts first,
    so reading the profile's events fails on the first row, with the others still pending."""
    from cdp.storage.models import events, profiles

    with engine.begin() as connection:
        pk = connection.execute(sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox,
                                                               profiles.c.external_id == profile_id)).scalar_one()
        newest = connection.execute(sa.select(events.c.pk).where(events.c.profile_pk == pk)
                                    .order_by(events.c.ts.desc()).limit(1)).scalar_one()
        connection.exec_driver_sql("UPDATE events SET ts = 'damaged' WHERE pk = ?", (newest,))


def _assert_clean(api, engine, other_engine) -> None:
    """Another connection writes a profile: every pooled connection of the service reads it, and
    the service writes."""
    name = f"seen-{next(_names)}-{uuid.uuid4().hex[:6]}"
    store_profiles(other_engine, api.sandbox, [{"id": name, "identities": [], "attributes": {}}])
    for _ in range(engine.pool.checkedin() + 1):
        response = api.get(f"/v1/profiles/{name}")
        assert response.status_code == 200, f"a pooled connection reads an old snapshot: {response.text}"
    response = api.post("/v1/datasets", json={"name": f"written {name}", "kind": "profile"})
    assert response.status_code == 201, response.text


def test_failed_requests_leave_no_connection_dirty(api, engine, other_engine, gc_off):
    events_ds = create_dataset(api, "event")
    sarah = {**SARAH, "events": [{**SARAH["events"][0], "id": f"e-{i}", "timestamp": f"2026-11-2{i}T10:00:00Z"}
                                 for i in range(1, 6)]}
    store_profiles(engine, api.sandbox, [sarah])
    failures = [
        ("no key", lambda: api.get("/v1/profiles/sarah", role=None), 401),
        ("role", lambda: api.post("/v1/datasets", json={"name": "x", "kind": "event"}, role="reader"), 403),
        ("request validation", lambda: api.post("/v1/profiles/evaluate", json={"expression": 1}), 422),
        ("service, read", lambda: api.get("/v1/profiles/nobody"), 404),
        ("service, write", lambda: api.post(f"/v1/datasets/{events_ds + 1000}/records", json={"identities": []}), 404),
        ("invalid expression", lambda: api.post("/v1/expressions/check", json={"expression": "loyalty.tier ="}), 422),
        ("records all rejected", lambda: api.post(f"/v1/datasets/{events_ds}/records",
                                                  json={"identities": [{"namespace": "email", "id": "a@x.com"}]}), 200),
    ]
    if engine.dialect.name == "sqlite":  # only SQLite can hold a timestamp that does not read back
        _corrupt_newest_event(engine, api.sandbox, "sarah")
        failures += [
            ("reading a stored value: profile", lambda: api.get("/v1/profiles/sarah"), 500),
            ("reading a stored value: events", lambda: api.get("/v1/profiles/sarah/events"), 500),
        ]
    _assert_clean(api, engine, other_engine)
    for what, request, status in failures:
        response = request()
        if status == 200:
            assert response.status_code == 200 and response.json()["rejected"] == 1, (what, response.text)
        else:
            assert_error(response, status)
        _assert_clean(api, engine, other_engine)


def test_a_cursor_left_open_is_closed_when_its_connection_returns(tmp_path):
    """The mechanism itself, on a real SQLite file: a half-read result kept alive past the end of
    its transaction holds no snapshot once the connection is back in the pool."""
    from cdp.storage.database import create_engine

    engine = create_engine(f"sqlite:///{tmp_path}/x.db", pool_size=1, max_overflow=0)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1), (2), (3)")
    with engine.connect() as connection:
        with connection.begin():
            half_read = connection.exec_driver_sql("SELECT x FROM t")
            half_read.fetchone()
    other = create_engine(f"sqlite:///{tmp_path}/x.db")
    with other.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (4)")
    with engine.connect() as connection:  # the same (only) pooled connection
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 4
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (5)")
    assert half_read is not None
    engine.dispose()
    other.dispose()


# ---- /healthz notices a database that cannot be written --------------------------------------


def test_healthz_tries_a_write(api):
    body = api.client.get("/healthz").json()
    assert body["status"] == "ok" and body["writes"] == "ok"


def test_healthz_says_busy_while_another_writer_holds_the_lock(api, other_engine):
    import time

    with other_engine.connect() as connection:
        connection.execution_options(sqlite_begin="IMMEDIATE")  # SQLite: the write lock at BEGIN
        connection.begin()
        if other_engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT version_num FROM alembic_version FOR UPDATE")
        started = time.monotonic()
        response = api.client.get("/healthz")
        elapsed = time.monotonic() - started
        connection.rollback()
    assert response.status_code == 200 and response.json()["writes"] == "busy", response.text
    assert 1.5 < elapsed < 10
    assert api.client.get("/healthz").json()["writes"] == "ok"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_healthz_is_503_on_a_database_that_refuses_writes(backend, request, sqlite_url_factory):
    from fastapi.testclient import TestClient

    from cdp.api import create_app
    from tests.api.conftest import make_settings

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    with TestClient(create_app(make_settings(url)), raise_server_exceptions=False) as client:
        assert client.get("/healthz").json()["writes"] == "ok"
    if backend == "sqlite":  # the file opened read-only (a read-only mount, a file the server may not write)
        url = "sqlite:///file:" + url.removeprefix("sqlite:///") + "?mode=ro&uri=true"
    else:  # a database that takes no writes (as a hot standby)
        from cdp.storage.database import create_engine

        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            name = connection.exec_driver_sql("SELECT current_database()").scalar()
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        engine.dispose()
    with TestClient(create_app(make_settings(url, migrate_on_start=False)), raise_server_exceptions=False) as client:
        response = client.get("/healthz")
        error = assert_error(response, 503, "unavailable")
        assert "not writable" in error["message"] and "read" in error["details"]["reason"].lower(), error


def test_a_request_failing_in_the_database_layer_leaves_its_connection_clean(monkeypatch, sqlite_url_factory,
                                                                             gc_off):
    """503 database_unavailable (SQLite's lock not obtained in time), then a write and a fresh read."""
    from fastapi.testclient import TestClient

    import cdp.storage.database as database
    from cdp.api import create_app
    from cdp.storage.database import create_engine
    from tests.api.conftest import ADMIN_KEY, make_settings

    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 200)  # read when each connection opens
    url = sqlite_url_factory()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(create_app(make_settings(url)), raise_server_exceptions=False) as client:
        other = create_engine(url)
        dataset = client.post("/v1/datasets", json={"name": "web", "kind": "event"}, headers=headers).json()["id"]
        record = {"identities": [{"namespace": "ecid", "id": "A"}],
                  "event": {"id": "e-1", "type": "login", "timestamp": "2026-11-27T10:00:00Z"}}
        with other.connect() as writer:
            writer.execution_options(sqlite_begin="IMMEDIATE")
            with writer.begin():
                busy = client.post(f"/v1/datasets/{dataset}/records", json=record, headers=headers)
                assert_error(busy, 503, "database_unavailable")
                assert busy.headers["retry-after"] == "1"
        store_profiles(other, "prod", [{"id": "after-503", "identities": [], "attributes": {}}])
        engine = client.app.state.engine
        for _ in range(engine.pool.checkedin() + 1):
            assert client.get("/v1/profiles/after-503", headers=headers).status_code == 200
        written = client.post(f"/v1/datasets/{dataset}/records", json=record, headers=headers)
        assert written.status_code == 200 and written.json()["accepted"] == 1, written.text
        other.dispose()
