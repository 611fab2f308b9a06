"""The ingest hot path's fixed statements run on the DBAPI cursor (cdp/storage/driver.py), past
SQLAlchemy's per-statement work, and still do what SQLAlchemy's execution did: the engine's
listeners see them (statement counts), they run in the request's transaction, and a statement's
error is SQLAlchemy's (an IntegrityError stays one: lost races and key checks are told by it)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.api.conftest import create_dataset


def _event(number: int, *identities: tuple[str, str]) -> dict:
    return {"identities": [{"namespace": ns, "id": value} for ns, value in identities],
            "event": {"id": f"d-{number}", "type": "pageView", "timestamp": "2026-12-01T10:00:00Z"}}


def _sent(api, send) -> list[tuple[str, bool]]:
    """(statement, whether SQLAlchemy made an execution context for it) from request threads."""
    engine = api.app.state.engine
    seen: list[tuple[str, bool]] = []

    def before(_conn, _cursor, statement, _parameters, context, _many) -> None:  # noqa: ANN001
        if not threading.current_thread().name.startswith("cdp"):
            seen.append((" ".join(statement.split())[:400], context is not None))
    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        send()
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
    return seen


def _post(api, dataset: int, record: dict) -> None:
    response = api.post(f"/v1/datasets/{dataset}/records", json=record)
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text


# the one statement a single event runs through SQLAlchemy's execution: PostgreSQL's savepoint with its
# settings (SQLite's BEGIN IMMEDIATE runs on the cursor too: cdp/storage/database.py)
_THROUGH_SQLALCHEMY = ("SAVEPOINT",)


@pytest.mark.parametrize("known", [False, True], ids=["new person", "returning person"])
def test_a_single_events_statements_run_on_the_cursor_and_are_seen(api, known):
    dataset = create_dataset(api, "event")
    _post(api, dataset, _event(1, ("ecid", "dr-1"), ("email", "dr1@example.com")))
    pairs = (("ecid", "dr-1"), ("email", "dr1@example.com")) if known else (("ecid", "dr-2"),)
    seen = _sent(api, lambda: _post(api, dataset, _event(2, *pairs)))
    hot = [statement for statement, _ in seen if not statement.startswith(_THROUGH_SQLALCHEMY)]
    # the versions, the events seen, the owners, the event (and the touch; a new person's profile,
    # identity and link): every one seen by the listeners
    assert len(hot) >= 4 and any("INSERT INTO events" in statement for statement in hot), seen
    assert [statement for statement, context in seen
            if context and not statement.startswith(_THROUGH_SQLALCHEMY)] == [], seen


def test_a_driver_statements_error_is_sqlalchemys_and_the_transaction_is_the_callers(engine, api):
    from cdp.storage.driver import driver

    dataset = create_dataset(api, "event")
    _post(api, dataset, _event(1, ("ecid", "dr-3")))
    marker = "?" if engine.dialect.name == "sqlite" else "%s"
    seen: list[str] = []
    listener = (lambda _c, _cu, statement, *_rest: seen.append(statement))
    sa.event.listen(engine, "after_cursor_execute", listener)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            [(count,)] = driver(connection, f"SELECT count(*) FROM events WHERE dataset_pk = {marker}",
                                (dataset,), rows=True)
            assert count == 1
            # the same event id again: the unique index refuses it, as SQLAlchemy's IntegrityError
            with pytest.raises(sa.exc.IntegrityError):
                driver(connection, "INSERT INTO events (profile_pk, event_id, type, ts, fields, dataset_pk) "
                       f"SELECT profile_pk, event_id, type, ts, fields, dataset_pk FROM events "
                       f"WHERE dataset_pk = {marker}", (dataset,))
            assert connection.in_transaction()
            transaction.rollback()
            # outside a transaction: through SQLAlchemy, which begins one
            assert driver(connection, f"SELECT count(*) FROM events WHERE dataset_pk = {marker}", (dataset,),
                          rows=True) == [(1,)]
            connection.rollback()
    finally:
        sa.event.remove(engine, "after_cursor_execute", listener)
    assert any(statement.startswith("SELECT count(*) FROM events") for statement in seen)


def test_sqlites_begin_on_the_cursor_is_seen_and_a_busy_database_is_sqlalchemys_error(tmp_path):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path}/busy.db"
    first, second = create_engine(url), create_engine(url)
    upgrade(first)
    seen: list[tuple[str, bool]] = []
    sa.event.listen(second, "before_cursor_execute",
                    lambda _c, _cu, statement, _p, context, _m: seen.append((statement, context is not None)))
    try:
        with first.connect() as holder:
            holder.execution_options(sqlite_begin="IMMEDIATE")
            with holder.begin():  # the write lock, held
                with second.connect() as waiter:
                    waiter.exec_driver_sql("PRAGMA busy_timeout = 0")
                    waiter.commit()
                    waiter.execution_options(sqlite_begin="IMMEDIATE")
                    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
                        waiter.begin()
                    assert not waiter.in_transaction()
        with second.connect() as waiter, waiter.begin():
            assert waiter.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        first.dispose()
        second.dispose()
    assert ("BEGIN IMMEDIATE", False) in seen and ("BEGIN DEFERRED", False) in seen, seen
