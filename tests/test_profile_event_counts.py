"""``profiles.event_count`` (migration 0017) equals the number of the profile's events after
anything that writes events — streaming ingestion, merges (set-wise: several profiles into one,
several survivors in one request), linking-rule splits, privacy deletion, plain deletes and
updates — on SQLite and PostgreSQL; the migration counts the events already stored; and the
set-wise owners lookup (cdp/identity/owners.py) answers what a Core query answers."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.identity.owners import find_owners, mark_seen
from cdp.identity.settings import MergePolicy, put_identity_settings
from cdp.ingestion.service import ingest_records
from cdp.profiles.lookup import delete_profile
from cdp.schema import luma_schema
from cdp.storage.database import create_engine, write_transaction
from cdp.storage.migrate import upgrade
from cdp.storage.models import datasets, events, identities, profile_merges, profiles

UNIVERSE = [("ecid", f"c{i}") for i in range(6)] + [("email", f"p{i}@example.com") for i in range(4)] + [
    ("crm_id", f"K{i}") for i in range(3)]
streams = st.lists(st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=3, unique=True), min_size=1, max_size=30)


def _sandbox(engine, unique_namespaces: list[str] | None = None) -> tuple[str, int]:
    sandbox = f"ec-{uuid.uuid4().hex[:12]}"
    with write_transaction(engine) as connection:
        dataset = connection.execute(datasets.insert().values(
            sandbox=sandbox, name="Web", kind="event", labels=[], field_labels={},
            created_at=sa.func.now(), updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()
        put_identity_settings(connection=connection, sandbox=sandbox, merge_policy=MergePolicy.timestamp_ordered,
                              dataset_precedence=[], graph_limit=50, unique_namespaces=unique_namespaces or [],
                              namespaces=frozenset(namespace for namespace, _ in UNIVERSE))
    return sandbox, dataset


def _ingest(engine, sandbox: str, dataset: int, stream, per_request: int, first: int = 0) -> None:
    records = [{"identities": [{"namespace": ns, "id": value} for ns, value in pairs],
                "event": {"id": f"e{first + index}", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}
               for index, pairs in enumerate(stream)]
    for start in range(0, len(records), per_request):
        with write_transaction(engine) as connection:
            answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset,
                                    body={"records": records[start:start + per_request]}, schema=luma_schema())
        assert answer.accepted == len(records[start:start + per_request]), answer


def _counted_and_stored(engine, sandbox: str) -> tuple[dict[int, int], dict[int, int]]:
    with engine.connect() as connection:
        counted = dict(connection.execute(sa.select(profiles.c.pk, profiles.c.event_count)
                                          .where(profiles.c.sandbox == sandbox)).all())
        stored = dict(connection.execute(sa.select(events.c.profile_pk, sa.func.count())
            .join(profiles, profiles.c.pk == events.c.profile_pk)
                                         .where(profiles.c.sandbox == sandbox).group_by(events.c.profile_pk)).all())
    return counted, {pk: stored.get(pk, 0) for pk in counted}


def _assert_exact(engine, sandbox: str) -> dict[int, int]:
    counted, stored = _counted_and_stored(engine, sandbox)
    assert counted == stored
    return counted


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(stream=streams, per_request=st.sampled_from([1, 4, 30]))
def test_the_count_is_exact_after_ingestion_and_merges(migrated_engine, stream, per_request):
    sandbox, dataset = _sandbox(migrated_engine)
    _ingest(migrated_engine, sandbox, dataset, stream, per_request)
    counted = _assert_exact(migrated_engine, sandbox)
    assert sum(counted.values()) == len(stream)


def test_a_request_merging_several_profiles_into_several_survivors(migrated_engine):
    """Four profiles of two people, two events each; one request links each person's two profiles
    and a third person's profile made in the same request: the counts and the merge records
    (events and identities moved)."""
    sandbox, dataset = _sandbox(migrated_engine)
    people = [[("ecid", "a1"), ("email", "a@example.com")], [("ecid", "b1"), ("email", "b@example.com")]]
    alone = [[pair] for person in people for pair in person]
    _ingest(migrated_engine, sandbox, dataset, alone + alone, per_request=8)
    assert sorted(_assert_exact(migrated_engine, sandbox).values()) == [2, 2, 2, 2]
    _ingest(migrated_engine, sandbox, dataset, [[("ecid", "c1")], [("ecid", "c1"), ("email", "c@example.com")],
                                                people[0], people[1], [("email", "c@example.com"), ("ecid", "a1")]],
            per_request=5, first=100)
    counted = _assert_exact(migrated_engine, sandbox)
    assert sorted(counted.values()) == [5, 8]  # b: 4 + 1; a: 4 + 1, and c (2, made by the request) + the link
    with migrated_engine.connect() as connection:
        merges = connection.execute(sa.select(profile_merges.c.identities_moved, profile_merges.c.events_moved)
                                    .where(profile_merges.c.sandbox == sandbox)).all()
    # the two profiles made before the request were merged away (c's, made by the request, is not recorded)
    assert sorted(map(tuple, merges)) == [(1, 2), (1, 2)]


def test_the_count_follows_splits_deletions_and_updates(migrated_engine):
    sandbox, dataset = _sandbox(migrated_engine, unique_namespaces=["crm_id"])
    # two CRM ids reach one graph through a shared cookie: the linking rules split it
    _ingest(migrated_engine, sandbox, dataset, [[("crm_id", "K1"), ("ecid", "c1")], [("crm_id", "K1")],
                                                [("crm_id", "K2"), ("email", "x@example.com")],
                                                [("ecid", "c1"), ("email", "x@example.com")]], per_request=1)
    counted = _assert_exact(migrated_engine, sandbox)
    assert sum(counted.values()) == 4
    with write_transaction(migrated_engine) as connection:
        some, other = sorted(counted)[:2]
        connection.execute(events.update().where(events.c.profile_pk == some).values(profile_pk=other))
        connection.execute(events.update().values(type="renamed"))  # not a move: counts unchanged
    _assert_exact(migrated_engine, sandbox)
    with write_transaction(migrated_engine) as connection:
        first = connection.execute(sa.select(events.c.pk).where(events.c.profile_pk == other)
                                   .order_by(events.c.pk).limit(1)).scalar_one()
        connection.execute(events.delete().where(events.c.pk == first))
    _assert_exact(migrated_engine, sandbox)
    with write_transaction(migrated_engine) as connection:
        delete_profile(connection=connection, sandbox=sandbox, profile_pk=other, requested_by="test")
    counted = _assert_exact(migrated_engine, sandbox)
    assert other not in counted


def test_the_per_profile_limit_reads_the_count(migrated_engine, monkeypatch):
    import cdp.ingestion

    monkeypatch.setattr(cdp.ingestion, "MAX_EVENTS_PER_PROFILE", 3)
    sandbox, dataset = _sandbox(migrated_engine)
    records = [{"identities": [{"namespace": "ecid", "id": "full"}],
                "event": {"id": f"l{n}", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}} for n in range(5)]
    with write_transaction(migrated_engine) as connection:
        first = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset,
                               body={"records": records[:2]}, schema=luma_schema())
    with write_transaction(migrated_engine) as connection:
        second = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset,
                                body={"records": records[2:]}, schema=luma_schema())
    assert first.accepted == 2 and second.accepted == 1 and second.rejected == 2
    assert "too_many_events" in second.results[1].errors[0].message
    assert list(_assert_exact(migrated_engine, sandbox).values()) == [3]


def test_the_migration_counts_the_events_already_stored(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/before.db")
    try:
        upgrade(engine, "0016")
        now = datetime(2026, 12, 6, tzinfo=timezone.utc)
        with engine.begin() as connection:
            pks = [connection.execute(sa.text(
                "INSERT INTO profiles (sandbox, external_id, attributes, created_at, updated_at) "
                "VALUES ('s', :id, '{}', :now, :now) RETURNING pk"), {"id": f"p-{n}", "now": now}).scalar_one()
                for n in range(3)]
            for n, pk in enumerate(pks):
                for k in range(n * 2):
                    connection.execute(sa.text(
                        "INSERT INTO events (profile_pk, event_id, type, ts, fields) "
                        "VALUES (:pk, :id, 't', :ts, '{}')"), {"pk": pk, "id": f"{pk}-{k}", "ts": now + timedelta(k)})
        upgrade(engine)
        with engine.connect() as connection:
            assert dict(connection.execute(sa.select(profiles.c.pk, profiles.c.event_count)).all()) == {
                pks[0]: 0, pks[1]: 2, pks[2]: 4}
    finally:
        engine.dispose()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(stored=st.lists(st.sampled_from(UNIVERSE), unique=True), asked=st.lists(st.sampled_from(
    UNIVERSE + [("email", "c0"), ("ecid", "p0@example.com")]), unique=True))
def test_the_owners_lookup_answers_what_a_core_query_answers(migrated_engine, stored, asked):
    """find_owners (one JSON or two array parameters) against the plain Core query; on PostgreSQL
    also the locking form; mark_seen against the identities' last_seen."""
    sandbox, _ = _sandbox(migrated_engine)
    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    with write_transaction(migrated_engine) as connection:
        for n, (namespace, value) in enumerate(stored):
            pk = connection.execute(profiles.insert().values(
                sandbox=sandbox, external_id=f"p-{n}", attributes={}, created_at=now, updated_at=now)
                .returning(profiles.c.pk)).scalar_one()
            connection.execute(identities.insert().values(sandbox=sandbox, profile_pk=pk, namespace=namespace,
                                                          value=value, first_seen=now, last_seen=None))
    with write_transaction(migrated_engine) as connection:
        expected = sorted(tuple(row) for row in connection.execute(
            sa.select(identities.c.namespace, identities.c.value, identities.c.profile_pk, identities.c.pk,
                      profiles.c.external_id, profiles.c.event_count).join(profiles, profiles.c.pk == identities.c.profile_pk)
            .where(identities.c.sandbox == sandbox)).all()
            if (row[0], row[1]) in set(asked))
        assert sorted(find_owners(connection, sandbox, asked)) == expected
        if connection.dialect.name == "postgresql":
            assert sorted(find_owners(connection, sandbox, asked, lock=True)) == expected
        mark_seen(connection, [row[3] for row in expected], now + timedelta(hours=1))
        seen = {(row.namespace, row.value) for row in connection.execute(
            sa.select(identities.c.namespace, identities.c.value).where(
                identities.c.sandbox == sandbox, identities.c.last_seen == now + timedelta(hours=1)))}
        assert seen == {(row[0], row[1]) for row in expected}
