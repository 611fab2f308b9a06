"""The ``profile_merges`` rows a set-wise merge writes (cdp/identity/merging.py, one statement on the
driver): each merged-away profile's id exactly as stored — quotes, backslashes, braces and commas
too (PostgreSQL gets them as an array literal) —, its survivor, the merge's instant and what moved,
in the merged profiles' key order, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.ingestion.service import ingest_records
from cdp.schema import luma_schema
from cdp.storage.database import write_transaction
from cdp.storage.models import identities, profile_merges, profiles
from tests.test_profile_event_counts import _ingest, _sandbox

NOW = datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=timezone.utc)
ODD_IDS = ['p-"quoted"', "p-back\\slash", "p-{braces},comma", "NULL"]


def test_merge_records_keep_odd_ids_and_their_order(migrated_engine):
    sandbox, dataset = _sandbox(migrated_engine)
    # a survivor (the oldest) and four profiles of one person, each with one event
    alone = [[("ecid", "c0")], [("ecid", "c1")], [("ecid", "c2")], [("ecid", "c3")], [("email", "p0@example.com")]]
    _ingest(migrated_engine, sandbox, dataset, alone, per_request=1)
    with write_transaction(migrated_engine) as connection:
        owned = dict(connection.execute(sa.select(identities.c.value, identities.c.profile_pk)
                                        .where(identities.c.sandbox == sandbox)).all())
        merged = [owned[value] for value in ("c1", "c2", "c3", "p0@example.com")]
        for pk, external_id in zip(merged, ODD_IDS):
            connection.execute(profiles.update().where(profiles.c.pk == pk).values(external_id=external_id))
        connection.commit()
    record = {"identities": [{"namespace": ns, "id": value} for ns, value in (
        ("ecid", "c0"), ("ecid", "c1"), ("ecid", "c2"), ("ecid", "c3"), ("email", "p0@example.com"))],
              "event": {"id": "link", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}
    with write_transaction(migrated_engine) as connection:
        answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset, body=record,
                                schema=luma_schema(), clock=lambda: NOW)
        connection.commit()
    assert answer.accepted == 1
    with migrated_engine.connect() as connection:
        rows = connection.execute(sa.select(profile_merges.c.sandbox, profile_merges.c.survivor_pk,
                                            profile_merges.c.merged_external_id, profile_merges.c.merged_at,
                                            profile_merges.c.identities_moved, profile_merges.c.events_moved)
                                  .where(profile_merges.c.sandbox == sandbox).order_by(profile_merges.c.pk)).all()
    survivor = owned["c0"]
    assert [tuple(row) for row in rows] == [(sandbox, survivor, external_id, NOW, 1, 1)
                                            for external_id in ODD_IDS]
