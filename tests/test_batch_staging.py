"""Property: a batch applied through the staging tables (cdp/ingestion/staging.py: fresh rows
set-wise from staging, the rest through the Writer) stores exactly what the Writer stores when it
applies the same rows in arrival order — the same profiles (as sets of identities), the same
attributes, the same attribute sources, the same identity links (with their record and state),
the same events, and the same outcome per row (accepted, duplicate, rejected) — on SQLite and
PostgreSQL, for generated batches over a small universe of identities (so rows link, merge, share
identities, repeat event ids, carry two identities of a unique namespace), on top of a generated
stored graph, with the linking rules on or off."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)

# a small universe of identities, so that rows link, merge and share identities …
UNIVERSE = ([("ecid", f"c{i}") for i in range(8)] + [("email", f"P{i}@Example.com ") for i in range(5)]
            + [("crm_id", f"K{i}") for i in range(4)] + [("email", "not an email")])
# values of every JSON kind, each where the schema takes it (streaming segments load the profiles);
# None: the path removed
VALUES = {"person.first_name": ["a", "é\"\\x", None], "loyalty.tier": ["a", "b", None], "loyalty.points": [7, None],
          "lifetime_value": [2.5, 1e16, None], "email_opt_in": [True, None], "interests": [("x", "y"), None]}
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)

# … and a large one, so that many rows are a person of their own (fresh: the set-wise path)
LARGE = [("ecid", f"x{i}") for i in range(150)] + [("crm_id", f"Q{i}") for i in range(100)] + [
    ("email", f"q{i}@example.com") for i in range(100)]
identity_lists = st.lists(st.one_of(st.sampled_from(UNIVERSE), st.sampled_from(LARGE)), min_size=1, max_size=3,
                          unique=True)
rows = st.lists(st.tuples(
    identity_lists,
    st.fixed_dictionaries({}, optional={path: st.sampled_from(values) for path, values in VALUES.items()}),
    st.sampled_from([None, NOW - timedelta(days=1), NOW + timedelta(days=1)]),  # observed at
    st.sampled_from([f"e{i}" for i in range(12)]),  # event id (repeats: duplicates)
), min_size=1, max_size=30)


@pytest.fixture
def engine(migrated_engine):
    return migrated_engine


def _records(kind: str, batch) -> list:
    from cdp.ingestion.validation import ValidRecord

    out = []
    for identities, values, observed_at, event_id in batch:
        if kind == "profile":
            out.append(ValidRecord(identities=list(identities),
                                   set_attributes={k: v for k, v in values.items() if v is not None},
                                   removed=[k for k, v in values.items() if v is None], observed_at=observed_at))
        else:
            out.append(ValidRecord(identities=list(identities), event_id=event_id, event_type="pageView",
                                   ts=NOW - timedelta(hours=1), event_fields={"web.url": "https://x.example"}))
    return out


def _sandbox(engine, kind: str, unique: bool) -> tuple[str, int]:
    from cdp.identity.namespaces import sandbox_namespaces
    from cdp.identity.settings import MergePolicy, put_identity_settings
    from cdp.schema import luma_schema
    from cdp.segments.models import SegmentCreate
    from cdp.segments.service import create_segment
    from cdp.storage.database import write_transaction
    from cdp.storage.models import datasets

    sandbox = f"s-{uuid.uuid4().hex[:12]}"
    with write_transaction(engine) as connection:
        dataset = connection.execute(datasets.insert().values(
            sandbox=sandbox, name="CRM", kind=kind, labels=[], field_labels={},
            created_at=sa.func.now(), updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()
        put_identity_settings(connection=connection, sandbox=sandbox, merge_policy=MergePolicy.timestamp_ordered,
                              dataset_precedence=[], graph_limit=50,
                              unique_namespaces=["crm_id"] if unique else [],
                              namespaces=frozenset(sandbox_namespaces(connection=connection, sandbox=sandbox)))
        # a streaming segment: the profiles a batch makes or changes are evaluated in its transaction
        expression = 'loyalty.tier = "a"' if kind == "profile" else 'exists event where type = "pageView"'
        create_segment(connection=connection, sandbox=sandbox, schema=luma_schema(), spec=SegmentCreate(
            key="watched", name="watched", expression=expression, evaluation="streaming"))
    return sandbox, dataset


def _apply(engine, sandbox: str, dataset: int, kind: str, prelude, batch, staged: bool, batch_pk: int):
    from cdp.ingestion.writer import Writer
    from cdp.ingestion.staging import Spool, apply_staged
    from cdp.storage.database import write_transaction

    with write_transaction(engine) as connection:  # what was stored before, the same way for both
        writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind=kind, clock=lambda: NOW)
        writer.apply_many(list(enumerate(_records(kind, prelude), start=1000)))
    records = list(enumerate(_records(kind, batch), start=1))
    with write_transaction(engine) as connection:
        writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind=kind, batch_pk=batch_pk,
                        clock=lambda: NOW)
        if not staged:
            return {number: r.status.value for (number, _), r in zip(records, writer.apply_many(records))}
        spool = Spool()
        for number, record in records:
            spool.add(number, record)
        outcome = apply_staged(connection, writer, spool, kind=kind, dataset_pk=dataset, batch_pk=batch_pk, now=NOW)
        spool.close()
        statuses = {number: r.status.value for number, r in outcome.results}
        fresh = [number for number, _ in records if number not in statuses]
        assert len(fresh) == outcome.fresh
        return {**statuses, **{number: "accepted" for number in fresh}}


def _stored(engine, sandbox: str) -> dict:
    from cdp.storage.models import (attribute_sources, events, identities, identity_links, membership_changes,
                                    memberships, profiles, segments)

    with engine.connect() as c:
        owned: dict[int, set] = {}
        pair_of: dict[int, tuple] = {}
        for r in c.execute(sa.select(identities).where(identities.c.sandbox == sandbox)):
            owned.setdefault(r.profile_pk, set()).add((r.namespace, r.value))
            pair_of[r.pk] = (r.namespace, r.value)
        name = {pk: frozenset(pairs) for pk, pairs in owned.items()}
        stored = {"profiles": {}, "sources": set(), "links": set(), "events": set(), "members": set()}
        # profiles owning no identity have no name: compared as a sorted list (keyed by one empty
        # name they would overwrite one another in the SELECT's unspecified order)
        nameless = []
        for r in c.execute(sa.select(profiles).where(profiles.c.sandbox == sandbox)):
            if r.pk in name:
                stored["profiles"][name[r.pk]] = (r.attributes, r.created_at, r.updated_at)
            else:
                nameless.append((r.attributes, r.created_at, r.updated_at))
        stored["nameless profiles"] = sorted(nameless, key=repr)
        for r in c.execute(sa.select(attribute_sources).join(profiles, profiles.c.pk == attribute_sources.c.profile_pk).where(profiles.c.sandbox == sandbox)):
            stored["sources"].add((name.get(r.profile_pk), r.path, str(r.value), r.removed, r.observed_at,
                                   r.record_index, r.batch_pk, str(r.identities)))
        for r in c.execute(sa.select(identity_links).where(identity_links.c.sandbox == sandbox)):
            stored["links"].add((pair_of.get(r.a_pk), pair_of.get(r.b_pk), name.get(r.profile_pk), r.seen_order,
                                 r.record_index, r.batch_pk, r.removed_reason, r.last_seen))
        for r in c.execute(sa.select(events)
            .join(profiles, profiles.c.pk == events.c.profile_pk).where(profiles.c.sandbox == sandbox)):
            stored["events"].add((r.event_id, name.get(r.profile_pk), str(r.fields), str(r.identities), r.ts))
        for r in c.execute(sa.select(memberships).join(segments).where(segments.c.sandbox == sandbox)):
            stored["members"].add((name.get(r.profile_pk), r.status, r.entered_at, r.exited_at, r.updated_at))
        # the outbox: what activations read (a profile merged away has no identities left: None)
        stored["outbox"] = sorted(((name.get(r.profile_pk), r.segment_key, r.status, r.at) for r in c.execute(
            sa.select(membership_changes).where(membership_changes.c.sandbox == sandbox))), key=repr)
    return stored


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(kind=st.sampled_from(["profile", "event"]), unique=st.booleans(), prelude=rows, batch=rows)
def test_staged_batches_store_what_the_writer_stores(engine, kind, unique, prelude, batch):
    outcomes, stored = [], []
    for staged in (False, True):
        sandbox, dataset = _sandbox(engine, kind, unique)
        outcomes.append(_apply(engine, sandbox, dataset, kind, prelude, batch, staged, batch_pk=None))
        stored.append(_stored(engine, sandbox))
    assert outcomes[1] == outcomes[0]
    assert stored[1] == stored[0]


def test_fresh_rows_take_the_set_wise_path(engine):
    """The rows of a CRM export (each its own person) are all fresh: no row through the Writer."""
    sandbox, dataset = _sandbox(engine, "profile", unique=True)
    batch = [([("crm_id", f"K{i}"), ("email", f"p{i}@example.com")], {"person.first_name": f"n{i}"}, None, "")
             for i in range(50)]
    batch.append(([("crm_id", "K1")], {"loyalty.tier": "gold"}, None, ""))  # shares K1: both through the Writer
    from cdp.ingestion.writer import Writer
    from cdp.ingestion.staging import Spool, apply_staged
    from cdp.storage.database import write_transaction

    with write_transaction(engine) as connection:
        writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind="profile", clock=lambda: NOW)
        spool = Spool()
        for number, record in enumerate(_records("profile", batch), start=1):
            spool.add(number, record)
        outcome = apply_staged(connection, writer, spool, kind="profile", dataset_pk=dataset, batch_pk=None, now=NOW)
    assert outcome.fresh == 49
    assert sorted(number for number, _ in outcome.results) == [2, 51]
    stored = _stored(engine, sandbox)
    assert stored["profiles"][frozenset({("crm_id", "K1"), ("email", "p1@example.com")})][0] == {
        "person.first_name": "n1", "loyalty.tier": "gold"}
    assert len(stored["profiles"]) == 50 and len(stored["links"]) == 50


def test_a_fresh_row_that_loses_an_identity_to_a_concurrent_writer_links_to_it(postgres_url_factory):
    """PostgreSQL, two real transactions: a streaming writer has claimed crm_id K7 and not
    committed; a batch stages a row carrying K7 (fresh: the claim is invisible to it), waits on the
    unique index when it writes the fresh rows, finds K7 claimed when the writer commits, rolls
    its savepoint back and splits again — the row goes through the Writer and lands on the
    writer's profile; the other fresh rows are written as before; nothing lost or doubled."""
    import threading
    import time

    from cdp.ingestion.writer import Writer
    from cdp.ingestion.staging import Spool, apply_staged
    from cdp.ingestion.validation import ValidRecord
    from cdp.storage.database import create_engine, write_transaction
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    sandbox, dataset = _sandbox(engine, "profile", unique=True)
    first = engine.connect()
    first_transaction = first.begin()
    [claimed] = Writer(first, sandbox=sandbox, dataset_pk=dataset, kind="profile", clock=lambda: NOW).apply_many(
        [(0, ValidRecord(identities=[("crm_id", "K7")], set_attributes={"loyalty.tier": "gold"}))])
    outcome = {}

    def batch() -> None:
        with write_transaction(engine) as connection:
            writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind="profile", clock=lambda: NOW)
            spool = Spool()
            for number in range(1, 11):
                spool.add(number, ValidRecord(identities=[("crm_id", f"K{number}"), ("email", f"p{number}@x.org")],
                                              set_attributes={"person.first_name": f"n{number}"}))
            outcome["staged"] = apply_staged(connection, writer, spool, kind="profile", dataset_pk=dataset,
                                             batch_pk=None, now=NOW)

    thread = threading.Thread(target=batch)
    thread.start()
    with engine.connect() as watcher:  # until the batch waits for the writer
        deadline = time.monotonic() + 30
        while not watcher.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                          "AND datname = current_database()")).scalar_one():
            watcher.rollback()  # pg_stat_activity is a snapshot per transaction
            assert time.monotonic() < deadline, "the batch never waited for the writer"
            time.sleep(0.05)
    first_transaction.commit()
    first.close()
    thread.join(60)
    staged = outcome["staged"]
    assert staged.fresh == 9 and [(n, r.status.value) for n, r in staged.results] == [(7, "accepted")]
    assert staged.results[0][1].profile_id == claimed.profile_id
    stored = _stored(engine, sandbox)
    assert len(stored["profiles"]) == 10
    assert stored["profiles"][frozenset({("crm_id", "K7"), ("email", "p7@x.org")})][0] == {
        "loyalty.tier": "gold", "person.first_name": "n7"}
    engine.dispose()


def test_sqlite_splits_by_probing_the_staged_identities(sqlite_url_factory):
    """SQLite: the split looks each staged identity up in the identities' unique index — the
    batch's cost does not grow with the sandbox. (Its planner, left to itself, walked every identity
    of the sandbox and probed the staged ones.)"""
    from cdp.ingestion.writer import Writer
    from cdp.ingestion.staging import Spool, apply_staged
    from cdp.storage.database import create_engine, write_transaction
    from cdp.storage.migrate import upgrade

    engine = create_engine(sqlite_url_factory())
    upgrade(engine)
    sandbox, dataset = _sandbox(engine, "profile", unique=True)
    plans = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def explain(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE cdp_stage_rows SET fresh") and " identities i " in statement:
            plans.append([row[3] for row in cursor.connection.execute("EXPLAIN QUERY PLAN " + statement,
                                                                      parameters)])

    batch = [([("crm_id", f"K{i}"), ("email", f"p{i}@example.com")], {"person.first_name": f"n{i}"}, None, "")
             for i in range(2000)]
    with write_transaction(engine) as connection:
        writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind="profile", clock=lambda: NOW)
        spool = Spool()
        for number, record in enumerate(_records("profile", batch), start=1):
            spool.add(number, record)
        assert apply_staged(connection, writer, spool, kind="profile", dataset_pk=dataset, batch_pk=None,
                            now=NOW).fresh == 2000
    engine.dispose()
    [plan] = plans
    assert any(step == "SCAN s" or step.startswith("SCAN s ") for step in plan), plan
    assert any(step.startswith("SEARCH i USING") and "(sandbox=? AND namespace=? AND value=?)" in step
               for step in plan), plan


def test_new_external_ids_are_random_version_4_uuids():
    import uuid

    from cdp.ingestion.staging import _new_external_ids

    ids = _new_external_ids(2000)
    assert len(set(ids)) == 2000
    for external in ids:
        assert external.startswith("p-") and len(external) == 34
        parsed = uuid.UUID(hex=external[2:])
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.hex == external[2:]
