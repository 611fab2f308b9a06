"""Members computed elsewhere (an analytic engine over a snapshot) written back by
``batch.write_members``, on SQLite and PostgreSQL: the same statuses, counts and outbox rows as a
database run, across several segments' runs on one connection (as a job makes them), a profile
gone since the snapshot left out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from cdp.engine.sql.loading import load_documents
from cdp.schema import luma_schema
from cdp.segments import batch, service
from cdp.segments.batch import Counts
from cdp.segments.models import SegmentCreate, SegmentStatus
from cdp.storage.models import membership_changes, memberships, profiles, segments

AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
SANDBOX = "write-back"


def _setup(engine) -> tuple[dict[str, int], dict[str, int]]:
    """Four profiles and two segments; (external id → pk, segment key → pk)."""
    with engine.begin() as connection:
        load_documents(connection, [{"id": f"p{i}", "attributes": {"loyalty": {"points": i}}, "events": []}
                                    for i in range(1, 5)], sandbox=SANDBOX)
        for key in ("a", "b"):
            service.create_segment(connection=connection, sandbox=SANDBOX, schema=luma_schema(), spec=SegmentCreate(
                key=key, name=key, expression="loyalty.points > 0", status=SegmentStatus.draft))
        people = dict(connection.execute(sa.select(profiles.c.external_id, profiles.c.pk)
                                         .where(profiles.c.sandbox == SANDBOX)).all())
        keys = dict(connection.execute(sa.select(segments.c.key, segments.c.pk)
                                       .where(segments.c.sandbox == SANDBOX)).all())
    return people, keys


def _statuses(connection, segment_pk: int, people: dict[str, int]) -> dict[str, str]:
    by_pk = {pk: name for name, pk in people.items()}
    return {by_pk[pk]: status for pk, status in connection.execute(
        sa.select(memberships.c.profile_pk, memberships.c.status).where(memberships.c.segment_pk == segment_pk))}


def test_write_back_gives_a_runs_statuses_counts_and_outbox(migrated_engine):
    people, keys = _setup(migrated_engine)
    gone = max(people.values()) + 1_000  # in the snapshot, deleted from the database since
    runs = [  # (segment, members found elsewhere, counts expected, statuses after)
        ("a", ["p1", "p2"], Counts(2, 0, 0), {"p1": "realized", "p2": "realized"}),
        ("b", ["p3"], Counts(1, 0, 0), {"p3": "realized"}),  # another segment, same connection
        ("a", ["p2", "p3"], Counts(1, 1, 1), {"p1": "exited", "p2": "existing", "p3": "realized"}),
        ("a", ["p1"], Counts(1, 0, 2), {"p1": "realized", "p2": "exited", "p3": "exited"}),  # a re-entry
        ("a", ["p1"], Counts(0, 1, 0), {"p1": "existing", "p2": "exited", "p3": "exited"}),
        ("b", [], Counts(0, 0, 1), {"p3": "exited"}),
    ]
    with migrated_engine.connect() as connection:  # one connection, a transaction per segment: a job's
        for number, (key, found, expected, statuses) in enumerate(runs):
            at = AS_OF + timedelta(days=number)
            with connection.begin():
                counts = batch.write_members(connection, sandbox=SANDBOX, segment_pk=keys[key], segment_key=key,
                                             profile_pks=[people[name] for name in found] + [gone], as_of=at)
                assert counts == expected, (number, key)
                assert _statuses(connection, keys[key], people) == statuses, (number, key)
                changes = connection.execute(sa.select(membership_changes.c.profile_id, membership_changes.c.status)
                                             .where(membership_changes.c.segment_pk == keys[key],
                                                    membership_changes.c.at == at)).all()
                assert len(changes) == expected.realized + expected.exited
                assert {name for name, status in changes if status == "entered"} == {
                    name for name in found if statuses[name] == "realized"}


def test_a_first_run_on_an_empty_vacuumed_table_does_not_reread_it_per_row(postgres_url_factory):
    """PostgreSQL, a new database's first run: memberships empty and vacuumed (statistics say 0
    rows). The INSERT of the new members must not read memberships per inserted row (a nested loop
    over the table being filled: quadratic; a 272,659-member segment stalled at 1,000,000 profiles):
    its plan, taken in the run's own transaction with its statement and values, scans no
    memberships at all."""
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    try:
        people, keys = _setup(engine)
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE memberships")
        inserts: list[tuple[str, object]] = []

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _seen(_conn, _cursor, statement, parameters, _context, _executemany):
            if statement.startswith("INSERT INTO memberships"):
                inserts.append((statement, parameters))

        with engine.connect() as connection, connection.begin():
            counts = batch.write_members(connection, sandbox=SANDBOX, segment_pk=keys["a"], segment_key="a",
                                         profile_pks=list(people.values()), as_of=AS_OF)
            assert counts == Counts(4, 0, 0)
            [(statement, parameters)] = inserts
            plan = "\n".join(connection.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
            connection.rollback()
        assert "Scan on memberships" not in plan and "memberships_pkey" not in plan, plan
    finally:
        engine.dispose()
