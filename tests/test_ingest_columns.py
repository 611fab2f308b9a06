"""Property: a multi-record streaming request's events written as columns (Writer._apply_events:
one list per field, the per-profile limit checked per profile, one insert) give the same answers
and store the same as the same requests written record by record (``Writer.columns = False``: the
loop the Writer had before) — the same result per record (status, profile, errors, warnings), the
same profiles (as sets of identities), links, events, event counts, merges, memberships and outbox
— on SQLite and PostgreSQL, for generated requests over a small universe of identities (records
link, merge, repeat event ids within a request and across requests, carry two identities of a
unique namespace, are invalid), with the linking rules on or off and the per-profile limit of
events low enough to be reached."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from tests.test_batch_staging import UNIVERSE, _sandbox, _stored

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)

identity_lists = st.lists(st.sampled_from(UNIVERSE), min_size=0, max_size=3, unique=True)
records = st.lists(st.tuples(
    identity_lists,
    st.sampled_from([f"e{i}" for i in range(15)]),  # event id (repeats: duplicates)
    st.sampled_from(["pageView", "purchase"]),
    st.integers(0, 3),  # hours before NOW
), min_size=1, max_size=25)
requests = st.lists(records, min_size=1, max_size=3)


@pytest.fixture
def engine(migrated_engine):
    return migrated_engine


def _body(request) -> dict:
    return {"records": [{"identities": [{"namespace": ns, "id": value} for ns, value in identities],
                         "event": {"id": event_id, "type": event_type,
                                   "timestamp": (NOW - timedelta(hours=hours)).isoformat().replace("+00:00", "Z"),
                                   "page": {"url": f"https://x.example/{hours}"}}}
                        for identities, event_id, event_type, hours in request]}


_PROFILE_ID = re.compile(r"p-[0-9a-f]{32}")


def _answers(engine, sandbox: str, dataset: int, bodies: list[dict], columns: bool, monkeypatch) -> list:
    """Each request's answer, profile ids renamed by order of first appearance (ids are random)."""
    from cdp.ingestion.service import Writer, ingest_records
    from cdp.schema import luma_schema
    from cdp.storage.database import write_transaction

    monkeypatch.setattr(Writer, "columns", columns)
    names: dict[str, str] = {}

    def rename(text: str | None) -> str | None:
        if text is None:
            return None
        return _PROFILE_ID.sub(lambda m: names.setdefault(m.group(0), f"P{len(names)}"), text)

    answers = []
    for body in bodies:
        with write_transaction(engine) as connection:
            answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset, body=body,
                                    schema=luma_schema(), clock=lambda: NOW)
        answers.append(((answer.accepted, answer.rejected, answer.duplicates),
                        [(r.index, r.status.value, rename(r.profile_id), [(e.path, rename(e.message)) for e in r.errors],
                          [rename(w) for w in r.warnings]) for r in answer.results]))
    return answers


def _counts(engine, sandbox: str) -> list:
    """Each profile's stored event count against its events (the counter's triggers)."""
    with engine.connect() as c:
        return sorted(c.execute(sa.text(
            "SELECT p.event_count, (SELECT count(*) FROM events e WHERE e.profile_pk = p.pk) FROM profiles p "
            "WHERE p.sandbox = :s"), {"s": sandbox}).all())


def _merges(engine, sandbox: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM profile_merges WHERE sandbox = :s"), {"s": sandbox}).scalar_one()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(unique=st.booleans(), limit=st.sampled_from([3, 100_000]), bodies=requests)
def test_events_as_columns_answer_and_store_what_the_record_loop_does(engine, monkeypatch, unique, limit, bodies):
    import cdp.ingestion

    with monkeypatch.context() as patched:
        patched.setattr(cdp.ingestion, "MAX_EVENTS_PER_PROFILE", limit)
        outcomes = []
        for columns in (False, True):
            sandbox, dataset = _sandbox(engine, "event", unique)
            answers = _answers(engine, sandbox, dataset, [_body(request) for request in bodies], columns, patched)
            outcomes.append((answers, _stored(engine, sandbox), _counts(engine, sandbox), _merges(engine, sandbox)))
    assert outcomes[1][0] == outcomes[0][0]
    assert outcomes[1][1] == outcomes[0][1]
    assert outcomes[1][2] == outcomes[0][2]
    assert all(count == events for count, events in outcomes[1][2])
    assert outcomes[1][3] == outcomes[0][3]


def test_a_request_that_reaches_the_limit_is_answered_record_by_record(engine, monkeypatch):
    """Three events of one new person with a limit of 2: the third is rejected (too_many_events),
    the first two stored — whichever way the events are written."""
    import cdp.ingestion

    monkeypatch.setattr(cdp.ingestion, "MAX_EVENTS_PER_PROFILE", 2)
    request = [([("ecid", "c1")], f"e{i}", "pageView", 0) for i in range(3)]
    for columns in (True, False):
        sandbox, dataset = _sandbox(engine, "event", False)
        [(counts, results)] = _answers(engine, sandbox, dataset, [_body(request)], columns, monkeypatch)
        assert counts == (2, 1, 0)
        assert [status for _, status, _, _, _ in results] == ["accepted", "accepted", "rejected"]
        assert results[2][3][0][1].startswith("too_many_events")
        assert _counts(engine, sandbox) == [(2, 2)]
