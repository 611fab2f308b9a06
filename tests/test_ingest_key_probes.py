"""A single-record request's statements find their rows by key, whatever plan PostgreSQL caches
for them (PostgreSQL only).

Ingest requests run with ``plan_cache_mode = auto`` (cdp/ingestion/writer.py), so a connection
may keep a generic plan of a statement — one made without the parameters' values and, in a new
database, without statistics. Such plans of ``… = ANY($1)`` read every event of the dataset for one
event id, every identity of the sandbox for one identity, and all of ``profiles`` in the event
counter's trigger (bench/RESULTS.md, session 11). Here every statement is prepared and planned
generically on tables never analyzed, and each step may read only a few rows of each table.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.identity import listed
from cdp.identity import owners
from cdp.identity.owners import find_owners, mark_seen
from cdp.ingestion.writer import _EVENTS_SEEN
from cdp.storage.bulk import insert_events

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)
PEOPLE = 1500
TABLES = ("profiles", "identities", "events", "datasets")


@pytest.fixture(scope="module")
def seeded(postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    sandbox = f"kp-{uuid.uuid4().hex[:8]}"
    with engine.begin() as c:
        for table in TABLES:  # no ANALYZE during the test: the plans of a new database
            c.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        dataset = c.exec_driver_sql(
            "INSERT INTO datasets (sandbox, name, kind, labels, field_labels, created_at, updated_at) "
            "VALUES (%s, 'Web', 'event', '[]', '{}', now(), now()) RETURNING pk", (sandbox,)).scalar_one()
        c.exec_driver_sql(
            "INSERT INTO profiles (sandbox, external_id, attributes, created_at, updated_at) "
            "SELECT %s, 'p' || n, '{}', now(), now() FROM generate_series(1, %s) AS n", (sandbox, PEOPLE))
        c.exec_driver_sql(
            "INSERT INTO identities (sandbox, profile_pk, namespace, value, first_seen, last_seen) "
            "SELECT %s, pk, 'email', external_id || '@example.com', now(), now() FROM profiles WHERE sandbox = %s",
            (sandbox, sandbox))
        c.exec_driver_sql(
            "INSERT INTO events (profile_pk, event_id, type, ts, fields, dataset_pk) "
            "SELECT pk, 'e-' || external_id, 'pageView', now(), '{}', %s FROM profiles WHERE sandbox = %s",
            (dataset, sandbox))
        people = c.exec_driver_sql("SELECT i.pk, i.profile_pk, i.value FROM identities i WHERE i.sandbox = %s "
                                   "ORDER BY i.pk LIMIT 2", (sandbox,)).all()
    yield engine, sandbox, dataset, people
    engine.dispose()


def _rows_read(connection) -> dict[str, int]:
    """Rows this transaction has read of each table so far — sequential-scan rows, index entries
    and heap rows fetched through an index (PostgreSQL counts those on the index) — from
    PostgreSQL's own counters."""
    return dict(connection.exec_driver_sql(
        "SELECT t.relname, sum(pg_stat_get_xact_tuples_returned(r.oid) + pg_stat_get_xact_tuples_fetched(r.oid)) "
        "FROM pg_class AS t JOIN pg_class AS r ON r.oid = t.oid "
        "OR r.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = t.oid) "
        "WHERE t.relname = ANY(%s) AND t.relkind = 'r' GROUP BY t.relname", (list(TABLES),)).all())


def _generic(connection) -> None:
    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    connection.connection.dbapi_connection.prepare_threshold = 0  # every statement prepared: its cached plan


def _reads_of(connection, step) -> dict[str, int]:
    before = _rows_read(connection)
    step()
    after = _rows_read(connection)
    return {table: after.get(table, 0) - before.get(table, 0) for table in TABLES}


def _few(read: dict[str, int]) -> None:
    assert max(read.values()) <= 12, f"rows read per table, of {PEOPLE} stored: {read}"


def test_the_owners_of_one_or_two_identities_are_probed_by_key(seeded):
    engine, sandbox, _, people = seeded
    one = [("email", people[0][2])]
    two = [("email", people[0][2]), ("email", people[1][2])]
    with engine.connect() as connection, connection.begin():
        _generic(connection)
        for _ in range(2):
            found: list = []
            _few(_reads_of(connection, lambda: found.append(find_owners(connection, sandbox, one, lock=True))))
            assert [o.profile_pk for o in found[0]] == [people[0][1]]
            _few(_reads_of(connection, lambda: found.append(find_owners(connection, sandbox, two, lock=True))))
            assert sorted(o.profile_pk for o in found[1]) == sorted([people[0][1], people[1][1]])


def test_an_event_id_is_checked_by_key(seeded):
    engine, _, dataset, people = seeded
    with engine.connect() as connection, connection.begin():
        _generic(connection)
        for _ in range(2):
            seen: list = []
            _few(_reads_of(connection, lambda: seen.append(listed.run(
                connection, _EVENTS_SEEN, dataset, listed.Many(["e-p1"], "varchar")).scalars().all())))
            assert seen == [["e-p1"]]


def test_one_event_touches_and_counts_into_its_profile_by_key(seeded):
    engine, _, dataset, people = seeded
    identity_pk, profile_pk, _ = people[0]
    with engine.connect() as connection, connection.begin():
        _generic(connection)
        for n in range(2):
            touch = mark_seen(connection, [identity_pk], NOW, defer=True)
            row = {"profile_pk": profile_pk, "event_id": f"new-{n}", "type": "pageView", "ts": NOW, "fields": {},
                   "dataset_pk": dataset, "identities": [["email", people[0][2]]]}
            cte = getattr(touch, "cte", owners.TOUCH_CTE)  # what the service sends before the insert
            _few(_reads_of(connection, lambda: insert_events(
                connection, [row], first=(cte, owners.TOUCH_DONE, touch.parameters))))
        count = connection.exec_driver_sql("SELECT event_count FROM profiles WHERE pk = %s", (profile_pk,)).scalar()
        assert count == 3  # the seeded event and the two inserted here
        connection.rollback()
