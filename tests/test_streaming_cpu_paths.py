"""Streaming's CPU per record (issue 15, session 15): the shorter paths keep what the longer ones
guaranteed.

- Streaming's read and membership writes go to the DBAPI cursor (cdp.storage.driver.driver),
  past SQLAlchemy's execution context: still seen by ``before_cursor_execute`` /
  ``after_cursor_execute`` listeners (the tests' and benches' statement counts), in the
  connection's transaction, and failing with SQLAlchemy's exceptions (a lost race stays an
  IntegrityError) — on SQLite and PostgreSQL.
- A stored profile's events are built once per row (memoised by everything the row holds).
- ``within last N <fixed unit>`` compiles to as_of minus a timedelta made once, with the same
  answers as runtime.window_start (months and years keep it).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - before cdp.schema
from cdp.dsl import runtime
from cdp.engine import load_profile
from cdp.engine.memory.api import compile_segment
from cdp.engine.sql.loading import load_documents
from cdp.profiles.documents import stored_profile
from cdp.schema import luma_schema
from cdp.storage.models import profiles, segment_due

T0 = datetime(2026, 12, 6, 9, 15, tzinfo=timezone.utc)
_SANDBOXES = (f"cpu-paths-{i}" for i in itertools.count())


def _profile(connection, sandbox: str) -> int:
    return connection.execute(profiles.insert().values(
        sandbox=sandbox, external_id="p", attributes={}, created_at=T0, updated_at=T0)
        .returning(profiles.c.pk)).scalar_one()


def test_driver_statements_are_seen_transactional_and_fail_as_sqlalchemy_does(migrated_engine):
    from cdp.storage.driver import driver

    sandbox = next(_SANDBOXES)
    dialect = migrated_engine.dialect.name
    insert = ("INSERT INTO segment_due (profile_pk, sandbox, due_at) VALUES (?, ?, ?)" if dialect == "sqlite" else
              "INSERT INTO segment_due (profile_pk, sandbox, due_at) VALUES (%(p)s, %(s)s, %(d)s)")
    seen: list[tuple[str, str, object]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append(("before", statement, context))

    def after(conn, cursor, statement, parameters, context, executemany):
        seen.append(("after", statement, context))

    with migrated_engine.connect() as connection:
        with connection.begin():
            pk = _profile(connection, sandbox)
        parameters = (pk, sandbox, "2026-12-07 00:00:00.000000") if dialect == "sqlite" else \
            {"p": pk, "s": sandbox, "d": T0}
        sa.event.listen(connection, "before_cursor_execute", before)
        sa.event.listen(connection, "after_cursor_execute", after)
        transaction = connection.begin()  # on SQLite: BEGIN, through SQLAlchemy (seen too)
        del seen[:]
        assert driver(connection, insert, parameters) == 1
        # past SQLAlchemy's execution context (none is made), yet the listeners saw the statement
        assert seen == [("before", insert, None), ("after", insert, None)]
        with pytest.raises(sa.exc.IntegrityError):  # the same row again: SQLAlchemy's exception
            driver(connection, insert, parameters)
        transaction.rollback()  # the insert was in the connection's transaction
        sa.event.remove(connection, "before_cursor_execute", before)
        sa.event.remove(connection, "after_cursor_execute", after)
        with connection.begin():
            assert connection.execute(sa.select(sa.func.count()).select_from(segment_due)
                                      .where(segment_due.c.profile_pk == pk)).scalar_one() == 0
            # outside a transaction it begins one, as exec_driver_sql does
        select = "SELECT count(*) FROM segment_due WHERE profile_pk = " + ("?" if dialect == "sqlite" else "%(p)s")
        assert driver(connection, select, (pk,) if dialect == "sqlite" else {"p": pk}, rows=True) == [(0,)]
        connection.rollback()


def test_stored_events_are_built_once_per_row(migrated_engine):
    schema = luma_schema()
    sandbox = next(_SANDBOXES)
    document = {"id": "p1", "attributes": {"loyalty": {"tier": "gold"}}, "events": [
        {"id": "e1", "type": "purchase", "timestamp": "2026-12-01T10:00:00Z", "order": {"total": 12.5}},
        {"id": "e2", "type": "pageView", "timestamp": "2026-12-01T09:00:00Z"}]}
    with migrated_engine.begin() as connection:
        load_documents(connection, [load_profile(document, allowed_values=False)], sandbox=sandbox)
    with migrated_engine.connect() as connection:
        pk = connection.execute(sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox)).scalar_one()
        first = stored_profile(connection, pk, schema=schema)
        again = stored_profile(connection, pk, schema=schema)
    assert [e["id"] for e in first.events] == ["e2", "e1"]  # by time
    assert all(a is b for a, b in zip(first.events, again.events, strict=True))  # the same dicts
    assert first.events == load_profile(document, schema, allowed_values=False).events


_UNITS = ("second", "minute", "hour", "day", "week")


@settings(max_examples=300, deadline=None)
@given(amount=st.integers(0, 400), unit=st.sampled_from(_UNITS), back=st.integers(-3, 3),
       scale=st.sampled_from(_UNITS))
def test_a_fixed_unit_window_answers_as_window_start_says(amount, unit, back, scale):
    """An event at ``window_start(as_of, N, unit) + back × scale``: inside the window exactly when
    it is after that bound (and not after as_of)."""
    compiled = compile_segment(f'exists event where type = "purchase" within last {amount} {unit}s',
                               luma_schema())
    assert "window_start_by(" in compiled.source and "window_start(as_of" not in compiled.source
    as_of = T0
    bound = runtime.window_start(as_of, amount, unit)
    at = bound + back * runtime.timedelta_of(1, scale)
    profile = load_profile({"id": "p", "events": [{"id": "e", "type": "purchase",
                                                   "timestamp": at.isoformat()}]}, luma_schema())
    assert compiled.predicate(profile, as_of) is (bound < at <= as_of)


def test_calendar_windows_keep_window_start_and_overlong_ones_reach_the_earliest_instant():
    schema = luma_schema()
    months = compile_segment('exists event where type = "purchase" within last 3 months', schema)
    assert "window_start(as_of, 3, 'month')" in months.source
    # the longest duration the language allows (1,000,000 units) reaches before year 1: the bound
    # is then the earliest instant, as window_start gives
    overlong = compile_segment('exists event where type = "purchase" within last 1000000 weeks', schema)
    assert "window_start_by(" in overlong.source
    profile = load_profile({"id": "p", "events": [{"id": "e", "type": "purchase",
                                                   "timestamp": "0001-01-02T00:00:00Z"}]}, schema)
    assert overlong.predicate(profile, T0) is True  # the window reaches back to the earliest instant
    assert overlong.predicate(profile, datetime(9999, 12, 31, tzinfo=timezone.utc)) is True
    assert timedelta(days=1) == runtime.timedelta_of(1, "day")
