"""The bulk writes of ingestion (cdp/storage/bulk.py) store exactly what the Core statements they
replace store — read back through the same SQLAlchemy types — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)


@pytest.fixture
def engine(migrated_engine):
    return migrated_engine


NOW = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=timezone.utc)


def _core_statements(dialect: str) -> dict:
    """The same writes as SQLAlchemy Core statements: the reference the bulk writes must match."""
    from sqlalchemy.dialects import postgresql, sqlite

    from cdp.storage.models import attribute_sources, events, identities

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = insert(attribute_sources)
    upsert = upsert.on_conflict_do_update(
        index_elements=["profile_pk", "path", "dataset_pk"],
        set_={name: upsert.excluded[name] for name in ("value", "removed", "observed_at", "batch_pk", "request_id",
                                                       "record_index")},
        where=upsert.excluded.observed_at >= attribute_sources.c.observed_at)
    claim = insert(identities).on_conflict_do_nothing(index_elements=["sandbox", "namespace", "value"]
                                                      ).returning(identities.c.pk)
    return {"upsert": upsert, "claim": claim, "events": events.insert()}


def _profiles(connection, count: int) -> list[int]:
    from cdp.storage.models import datasets, profiles

    import uuid

    pks = [connection.execute(profiles.insert().values(sandbox="bulk", external_id=f"p-{uuid.uuid4().hex}",
                                                       attributes={}, created_at=NOW, updated_at=NOW)
                              .returning(profiles.c.pk)).scalar_one() for _ in range(count)]
    dataset = connection.execute(datasets.insert().values(sandbox="bulk", name=f"d-{uuid.uuid4().hex}", kind="event",
                                                          labels=[], field_labels={}, created_at=NOW, updated_at=NOW)
                                 .returning(datasets.c.pk)).scalar_one()
    return pks + [dataset]


def _read(connection, table, where) -> list[tuple]:
    rows = connection.execute(sa.select(table).where(where)).mappings().all()
    return sorted(tuple(sorted((k, repr(v)) for k, v in row.items() if k not in ("pk", "profile_pk"))) for row in rows)


def test_attribute_sources_as_core_would_write_them(engine):
    from cdp.storage.bulk import upsert_attribute_sources
    from cdp.storage.models import attribute_sources

    with engine.begin() as connection:
        a, b, dataset = _profiles(connection, 2)

        def rows(profile_pk: int, at: datetime, tier: str) -> list[dict]:
            base = {"profile_pk": profile_pk, "dataset_pk": dataset, "observed_at": at, "batch_pk": None,
                    "request_id": "r-1", "record_index": 3}
            return [{**base, "path": "loyalty.tier", "value": tier, "removed": False},
                    {**base, "path": "interests", "value": ["running", "é"], "removed": False},
                    {**base, "path": "loyalty.points", "value": 1.5, "removed": False},
                    {**base, "path": "email", "value": None, "removed": True}]

        core = _core_statements(engine.dialect.name)["upsert"]
        connection.execute(core, rows(a, NOW, "gold"))
        upsert_attribute_sources(connection, rows(b, NOW, "gold"))
        assert _read(connection, attribute_sources, attribute_sources.c.profile_pk == a) == \
            _read(connection, attribute_sources, attribute_sources.c.profile_pk == b)
        # a newer word replaces, an older one does not — both ways alike
        for write in (lambda r: connection.execute(core, r), lambda r:
                      upsert_attribute_sources(connection, r)):
            write(rows(a, NOW + timedelta(hours=1), "silver") + rows(b, NOW - timedelta(hours=1), "bronze"))
            write(rows(b, NOW + timedelta(hours=1), "silver"))
        tiers = dict(connection.execute(sa.select(attribute_sources.c.profile_pk, attribute_sources.c.value).where(
            attribute_sources.c.path == "loyalty.tier", attribute_sources.c.profile_pk.in_([a, b]))).all())
        assert tiers == {a: "silver", b: "silver"}


def test_identities_and_events_as_core_would_write_them(engine):
    from cdp.storage.bulk import claim_identities, insert_events
    from cdp.storage.models import events, identities

    with engine.begin() as connection:
        a, b, dataset = _profiles(connection, 2)

        def identity_rows(profile_pk: int, prefix: str) -> list[dict]:
            return [{"sandbox": "bulk", "profile_pk": profile_pk, "namespace": "email", "value": f"{prefix}{i}@x.com",
                     "first_seen": NOW, "last_seen": NOW} for i in range(3)]

        core = _core_statements(engine.dialect.name)
        assert len(connection.execute(core["claim"], identity_rows(a, "a")).all()) == 3
        assert claim_identities(connection, identity_rows(b, "b")) == 3
        # already claimed: nothing inserted, and the count says so
        assert claim_identities(connection, identity_rows(b, "a") + identity_rows(b, "c")) == 3
        def stored(where) -> list[tuple]:
            return sorted((r.namespace, r.value[1:], r.first_seen, r.last_seen, r.sandbox)
                          for r in connection.execute(sa.select(identities).where(where)))

        assert stored(identities.c.profile_pk == a) == stored(identities.c.value.like("b%"))
        assert stored(identities.c.profile_pk == a)[0][2] == NOW

        def event_rows(profile_pk: int, prefix: str) -> list[dict]:
            return [{"profile_pk": profile_pk, "event_id": f"{prefix}-{i}", "type": "pageView",
                     "ts": NOW + timedelta(minutes=i), "dataset_pk": dataset,
                     "fields": {"product.price": 52.5, "page.url": "https://luma.example/é"}} for i in range(3)]

        connection.execute(core["events"], event_rows(a, "x"))
        insert_events(connection, event_rows(b, "y"))
        read = {pk: [(r.type, r.ts, r.fields, r.dataset_pk) for r in connection.execute(
            sa.select(events).where(events.c.profile_pk == pk).order_by(events.c.ts))] for pk in (a, b)}
        assert read[a] == read[b] and read[a][0][1] == NOW


def test_profiles_and_their_attributes_as_core_would_write_them(engine):
    import uuid

    from cdp.storage.bulk import insert_profiles, set_profile_attributes
    from cdp.storage.models import profiles

    def rows(count: int) -> list[dict]:
        return [{"sandbox": "bulk", "external_id": f"p-{uuid.uuid4().hex}", "attributes": {"n": i, "é": [1.5]},
                 "created_at": NOW, "updated_at": NOW + timedelta(seconds=i)} for i in range(count)]

    def read(pks: list[int]) -> list[tuple]:
        found = {r.pk: r for r in connection.execute(sa.select(profiles).where(profiles.c.pk.in_(pks)))}
        return [(found[pk].sandbox, found[pk].attributes, found[pk].created_at, found[pk].updated_at) for pk in pks]

    with engine.begin() as connection:
        core_rows, bulk_rows = rows(3), rows(3)
        core = connection.execute(profiles.insert().returning(profiles.c.pk, sort_by_parameter_order=True),
                                  core_rows).scalars().all()
        # keys come back in the rows' order, each the row of that external id
        bulk = insert_profiles(connection, bulk_rows)
        assert [connection.execute(sa.select(profiles.c.external_id).where(profiles.c.pk == pk)).scalar_one()
                for pk in bulk] == [r["external_id"] for r in bulk_rows]
        assert read(core) == read(bulk)
        # more rows than one statement takes
        many = rows(2500)
        assert len(set(insert_profiles(connection, many))) == 2500
        attributes = [{"loyalty.tier": "gold", "interests": ["running", "é"]}, {}, {"points": 12}]
        connection.execute(profiles.update().where(profiles.c.pk == sa.bindparam("b_pk")).values(
            attributes=sa.bindparam("b_attributes")), [{"b_pk": pk, "b_attributes": a}
                                                       for pk, a in zip(core, attributes)])
        set_profile_attributes(connection, list(zip(bulk, attributes)))
        assert read(core) == read(bulk)
        assert read(bulk)[0][1] == attributes[0]


def test_source_rows_of_new_profiles_as_core_would_write_them(engine):
    from cdp.storage.bulk import insert_attribute_sources
    from cdp.storage.models import attribute_sources

    with engine.begin() as connection:
        a, b, dataset = _profiles(connection, 2)

        def rows(profile_pk: int) -> list[dict]:
            base = {"profile_pk": profile_pk, "dataset_pk": dataset, "observed_at": NOW, "batch_pk": None,
                    "request_id": "r-1", "record_index": 3}
            return [{**base, "path": "loyalty.tier", "value": "gold", "removed": False},
                    {**base, "path": "interests", "value": ["running", "é", "tab\there"], "removed": False},
                    {**base, "path": "loyalty.points", "value": 1.5, "removed": False},
                    {**base, "path": "email", "value": None, "removed": True}]

        connection.execute(_core_statements(engine.dialect.name)["upsert"], rows(a))
        insert_attribute_sources(connection, rows(b))
        assert _read(connection, attribute_sources, attribute_sources.c.profile_pk == a) == \
            _read(connection, attribute_sources, attribute_sources.c.profile_pk == b)


def test_links_as_core_would_write_them_and_a_link_seen_again_takes_its_new_time(engine):
    from cdp.storage.bulk import claim_identities, insert_links, upsert_links
    from cdp.storage.database import write_transaction
    from cdp.storage.models import identity_links

    with write_transaction(engine) as connection:
        profile, _, dataset = _profiles(connection, 2)
        keys: dict = {}
        assert claim_identities(connection, [
            {"sandbox": "bulk-links", "profile_pk": profile, "namespace": "ecid", "value": f"c{i}", "first_seen": NOW,
             "last_seen": NOW} for i in range(4)], keys) == 4
        a, b, c, d = (keys[("ecid", f"c{i}")] for i in range(4))
        row = {"sandbox": "bulk-links", "profile_pk": profile, "first_seen": NOW, "last_seen": NOW, "seen_order": 3,
               "dataset_pk": dataset, "batch_pk": None, "request_id": "r-1", "record_index": 3,
               "removed_at": NOW, "removed_reason": "why"}
        insert_links(connection, [{**row, "a_pk": a, "b_pk": b}])
        connection.execute(identity_links.insert().values(**row, a_pk=c, b_pk=d))
        later = NOW + timedelta(hours=1)
        upsert_links(connection, [{**row, "a_pk": c, "b_pk": d, "first_seen": later, "last_seen": later,
                                   "seen_order": 7, "removed_at": None, "removed_reason": None}])
        stored = {(r.a_pk, r.b_pk): r for r in connection.execute(sa.select(identity_links).where(
            identity_links.c.sandbox == "bulk-links"))}
    first, again = stored[(a, b)], stored[(c, d)]
    assert (first.first_seen, first.last_seen, first.removed_at, first.removed_reason, first.request_id) == (
        NOW, NOW, NOW, "why", "r-1")
    assert (again.first_seen, again.last_seen, again.seen_order, again.removed_at, again.removed_reason) == (
        NOW, later, 7, None, None)
