"""Property: for any stream of records carrying linked identities, in any arrival order, the
profiles are exactly the connected components of the graph of identities seen together —
networkx computes them independently — and every event sits on the profile of its identities.
On SQLite and PostgreSQL, through the ingestion service (identity normalisation, the graph,
merges), one record per request and several per request (set-wise resolution)."""

from __future__ import annotations

import uuid

import networkx as nx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)

# a small universe, so that streams link and merge a lot
UNIVERSE = [("ecid", f"c{i}") for i in range(6)] + [("email", f"p{i}@example.com") for i in range(4)] + [
    ("crm_id", f"K{i}") for i in range(3)]

records = st.lists(st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=3, unique=True), min_size=1, max_size=25)


@pytest.fixture
def engine(migrated_engine):
    return migrated_engine


def _ingest_stream(engine, stream: list[list[tuple[str, str]]], per_request: int) -> str:
    """Ingest with the linking rules off (no unique namespace): identities seen together are one
    profile (tests/test_identity_linking_rules.py tests the rules)."""
    from cdp.identity.settings import MergePolicy, put_identity_settings
    from cdp.ingestion.service import ingest_records
    from cdp.schema import luma_schema
    from cdp.storage.database import write_transaction
    from cdp.storage.models import datasets

    sandbox = f"g-{uuid.uuid4().hex[:12]}"
    with write_transaction(engine) as connection:
        dataset = connection.execute(datasets.insert().values(
            sandbox=sandbox, name="Web", kind="event", labels=[], field_labels={},
            created_at=sa.func.now(), updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()
        put_identity_settings(connection=connection, sandbox=sandbox, merge_policy=MergePolicy.timestamp_ordered,
                              dataset_precedence=[], graph_limit=50, unique_namespaces=[])
    records = [{"identities": [{"namespace": ns, "id": value} for ns, value in identities],
                "event": {"id": f"e{index}", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}
               for index, identities in enumerate(stream)]
    for start in range(0, len(records), per_request):
        chunk = records[start:start + per_request]
        with write_transaction(engine) as connection:
            answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset,
                                    body={"records": chunk}, schema=luma_schema())
        assert answer.accepted == len(chunk), answer
    return sandbox


def _stored(engine, sandbox: str) -> tuple[dict, dict]:
    from cdp.storage.models import events, identities, profiles

    with engine.connect() as connection:
        owner = {(r.namespace, r.value): r.profile_pk for r in connection.execute(
            sa.select(identities).where(identities.c.sandbox == sandbox))}
        event_owner = {r.event_id: r.profile_pk for r in connection.execute(
            sa.select(events.c.event_id, events.c.profile_pk)
                .join(profiles, profiles.c.pk == events.c.profile_pk).where(profiles.c.sandbox == sandbox))}
    return owner, event_owner


def _components(stream) -> list[frozenset]:
    graph = nx.Graph()
    for identities in stream:
        graph.add_nodes_from(identities)
        graph.add_edges_from(zip(identities, identities[1:]))
    return sorted((frozenset(c) for c in nx.connected_components(graph)), key=sorted)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(stream=records, order=st.randoms(use_true_random=False))
def test_profiles_are_the_connected_components_whatever_the_order(engine, stream, order):
    shuffled = list(stream)
    order.shuffle(shuffled)
    expected = _components(stream)
    # one record per request (resolved one by one), then shuffled in requests of 7 (resolved set-wise)
    for arrival, per_request in ((stream, 1), (shuffled, 7)):
        sandbox = _ingest_stream(engine, arrival, per_request)
        owner, event_owner = _stored(engine, sandbox)
        by_profile: dict[int, set] = {}
        for identity, profile in owner.items():
            by_profile.setdefault(profile, set()).add(identity)
        assert sorted((frozenset(c) for c in by_profile.values()), key=sorted) == expected
        # every event kept, on the profile of its identities
        assert len(event_owner) == len(arrival)
        for index, identities in enumerate(arrival):
            assert event_owner[f"e{index}"] == owner[identities[0]]


def test_a_record_that_loses_a_race_for_an_identity_links_to_the_winner(postgres_url_factory):
    """PostgreSQL, two real transactions: one has claimed an identity and not committed; a second
    record carrying it waits on the unique index, finds it claimed when the first commits, is
    rolled back and tried again — and lands on the winner's profile, with nothing lost."""
    import threading
    import time

    from cdp.ingestion.service import ingest_records
    from cdp.schema import luma_schema
    from cdp.storage.database import create_engine, write_transaction
    from cdp.storage.migrate import upgrade
    from cdp.storage.models import datasets, events, identities

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    sandbox = "race"
    with write_transaction(engine) as connection:
        dataset = connection.execute(datasets.insert().values(
            sandbox=sandbox, name="Web", kind="event", labels=[], field_labels={}, created_at=sa.func.now(),
            updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()

    def record(event_id: str, *identities_: tuple[str, str]) -> dict:
        return {"identities": [{"namespace": ns, "id": value} for ns, value in identities_],
                "event": {"id": event_id, "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}

    answers = {}
    first = engine.connect()
    first_transaction = first.begin()
    answers["first"] = ingest_records(connection=first, sandbox=sandbox, dataset_id=dataset,
                                      body=record("e-1", ("email", "shared@example.com")), schema=luma_schema())

    def second() -> None:
        with write_transaction(engine) as connection:
            answers["second"] = ingest_records(
                connection=connection, sandbox=sandbox, dataset_id=dataset,
                body=record("e-2", ("ecid", "c-9"), ("email", "shared@example.com")), schema=luma_schema())

    thread = threading.Thread(target=second)
    thread.start()
    with engine.connect() as watcher:  # wait until the second writer waits for the first
        deadline = time.monotonic() + 30
        while True:
            waiting = watcher.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                              "AND datname = current_database()")).scalar_one()
            watcher.rollback()  # pg_stat_activity is a snapshot per transaction
            if waiting:
                break
            assert time.monotonic() < deadline, "the second writer never waited for the first"
            time.sleep(0.05)
    first_transaction.commit()
    first.close()
    thread.join(60)
    assert answers["second"].accepted == 1, answers["second"]
    assert answers["second"].results[0].profile_id == answers["first"].results[0].profile_id
    with engine.connect() as connection:
        owners = connection.execute(sa.select(identities.c.profile_pk).where(identities.c.sandbox == sandbox)
                                    ).scalars().all()
        stored = connection.execute(sa.select(events.c.event_id, events.c.profile_pk).where(
            events.c.dataset_pk == dataset)).all()
    assert len(owners) == 2 and len(set(owners)) == 1
    assert sorted(e.event_id for e in stored) == ["e-1", "e-2"] and {e.profile_pk for e in stored} == set(owners)
    engine.dispose()
