"""PostgreSQL: a multi-record request's check of its event ids against the dataset reads one entry
of the unique index on (dataset, event id) per id, whatever plan PostgreSQL caches for it — not
the dataset's whole range of the index with the ids as a filter (``event_id = ANY($2)`` under a
generic plan, on tables grown since their last ANALYZE: 64.6 µs a record of a 500-record request at
10,000 events, 80 % of the database's CPU; bench/RESULTS.md, session 16)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.ingestion.writer import Writer
from cdp.storage.database import create_engine, write_transaction
from cdp.storage.migrate import upgrade
from cdp.storage.models import datasets

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
STORED = 3000


def _rows_read(plan: dict) -> int:
    """Rows the plan's nodes on ``events`` read (returned or filtered out, in all loops)."""
    read = 0
    if plan.get("Relation Name") == "events" or plan.get("Index Name", "").startswith("uq_events"):
        read += (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
                 + plan.get("Rows Removed by Index Recheck", 0)) * plan["Actual Loops"]
    return read + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.fixture(scope="module")
def stored(postgres_url_factory):
    engine = create_engine(postgres_url_factory(), pool_size=1, max_overflow=0)
    upgrade(engine)
    sandbox = f"es-{uuid.uuid4().hex[:8]}"
    with write_transaction(engine) as connection:
        dataset = connection.execute(datasets.insert().values(
            sandbox=sandbox, name="Web", kind="event", labels=[], field_labels={},
            created_at=sa.func.now(), updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()
        # the tables' statistics as a new database has them: analyzed while nearly empty
        connection.exec_driver_sql("ANALYZE events")
    from cdp.ingestion.validation import ValidRecord

    for start in range(0, STORED, 500):  # requests of 500 new people's events
        with write_transaction(engine) as connection:
            Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind="event", clock=lambda: NOW).apply_many([
                (n, ValidRecord(identities=[("ecid", f"c{n}")], event_id=f"e{n:06d}", event_type="pageView",
                                ts=NOW, event_fields={}, normalized=True))
                for n in range(start, start + 500)])
    yield engine, dataset
    engine.dispose()


@pytest.mark.parametrize("statement", ["probed", "any"])
def test_the_event_id_check_probes_the_index_once_per_id(stored, statement):
    from cdp.identity import listed
    from cdp.ingestion import writer

    engine, dataset = stored
    ids = [f"e{n:06d}" for n in range(0, 100, 2)] + [f"new{n}" for n in range(50)]  # 50 stored, 50 new
    with engine.connect() as connection:
        if statement == "probed":
            sql, parameters = writer._EVENTS_SEEN_PROBED, (listed.array_literal(ids), dataset)
            types = ("varchar[]", "bigint")
        else:  # main's statement, as the Writer sent it for several ids
            sql = writer._EVENTS_SEEN.replace("?", "%s").replace("{list}", "= ANY(%s::varchar[])")
            parameters, types = (dataset, listed.array_literal(ids)), ("bigint", "varchar[]")
        numbered = sql.replace("%s", "{}").format(*(f"${i}" for i in range(1, sql.count("%s") + 1)))
        connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")  # the plan a pooled connection caches
        connection.exec_driver_sql(f"PREPARE seen ({', '.join(types)}) AS {numbered}")
        # a utility statement takes no parameters: the values as literals (ids and a key: no quote in them)
        execute = "EXECUTE seen (" + ", ".join(f"'{value}'::{t}" for value, t in zip(parameters, types)) + ")"
        found = len(connection.exec_driver_sql(execute).all())
        [[plan]] = connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + execute).one()
        connection.rollback()
    assert found == 50
    read = _rows_read(plan["Plan"])
    if statement == "probed":
        assert read <= 50, plan
    else:  # what it read instead (documents the cause; not a guarantee)
        print(f"event_id = ANY(…) under a generic plan read {read} rows of events for {len(ids)} ids")


def test_a_request_of_several_events_checks_them_by_probes(stored):
    """The Writer sends the probing statement for a request of several events (and the plain one
    for one event: ``event_id = %s``, one probe whatever the plan)."""
    from cdp.ingestion.validation import ValidRecord

    engine, dataset = stored
    sent: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if "FROM events" in statement and "event_id" in statement and statement.lstrip().startswith("SELECT"):
            sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        for count in (3, 1):
            with write_transaction(engine) as connection:
                answers = Writer(connection, sandbox="es-other", dataset_pk=dataset, kind="event",
                                 clock=lambda: NOW).apply_many([
                    (n, ValidRecord(identities=[("ecid", f"c{n}")], event_id=f"e{n:06d}", event_type="pageView",
                                    ts=NOW, event_fields={}, normalized=True)) for n in range(count)])
                connection.rollback()
            assert [a.status.value for a in answers] == ["duplicate"] * count
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert len(sent) == 2
    assert "unnest" in sent[0] and "e.event_id = w.id" in sent[0]
    assert "event_id = %s" in sent[1]
