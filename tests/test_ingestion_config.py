"""What streaming ingestion keeps per process (cdp/ingestion/config.py): migration 0016's triggers
change a sandbox's ingestion version on every insert, update and delete of its schema, datasets,
identity namespaces and identity settings, whoever writes; so a request of one process sees at
once what another process changed, and never keeps what a rolled-back transaction read — on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.errors import NotFound
from cdp.ingestion.config import ingest_config
from cdp.ingestion.service import ingest_records
from cdp.storage.database import create_engine
from cdp.storage.models import (datasets, identity_namespaces, identity_settings, ingestion_versions,
                                sandbox_schemas, sandboxes)

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)


def _version(connection, sandbox: str):
    return connection.execute(sa.select(ingestion_versions.c.version)
                              .where(ingestion_versions.c.sandbox == sandbox)).scalar()


def test_every_write_of_the_four_tables_changes_the_version(migrated_engine):
    writes = [
        (datasets.insert().values(sandbox="cfg-a", name="d", kind="event", labels=[], field_labels={},
                                  created_at=NOW, updated_at=NOW)),
        (datasets.update().where(datasets.c.sandbox == "cfg-a").values(name="renamed")),
        (datasets.delete().where(datasets.c.sandbox == "cfg-a")),
        (identity_namespaces.insert().values(sandbox="cfg-a", code="acme", name="Acme", kind="person",
                                             created_at=NOW)),
        (identity_namespaces.update().where(identity_namespaces.c.sandbox == "cfg-a").values(name="ACME")),
        (identity_namespaces.delete().where(identity_namespaces.c.sandbox == "cfg-a")),
        (identity_settings.insert().values(sandbox="cfg-a", merge_policy="timestamp_ordered", dataset_order=[],
                                           graph_limit=10, updated_at=NOW)),
        (identity_settings.update().where(identity_settings.c.sandbox == "cfg-a").values(graph_limit=11)),
        (identity_settings.delete().where(identity_settings.c.sandbox == "cfg-a")),
        (sandbox_schemas.insert().values(sandbox="cfg-a", version=1, document={}, updated_at=NOW)),
        (sandbox_schemas.update().where(sandbox_schemas.c.sandbox == "cfg-a").values(version=2)),
        (sandbox_schemas.delete().where(sandbox_schemas.c.sandbox == "cfg-a")),
    ]
    with migrated_engine.connect() as c, c.begin() as transaction:
        assert _version(c, "cfg-a") is None
        seen = {None}
        for statement in writes:
            c.execute(statement)
            version = _version(c, "cfg-a")
            assert version not in seen, str(statement)  # never a number the sandbox had before
            seen.add(version)
        assert _version(c, "cfg-b") is None  # other sandboxes untouched
        transaction.rollback()


@pytest.fixture()
def two_processes(migrated_engine):
    """The database of ``migrated_engine`` through a second engine: another process's view."""
    other = create_engine(migrated_engine.url.render_as_string(hide_password=False))
    yield migrated_engine, other
    other.dispose()


def _sandbox(engine, name: str) -> None:
    with engine.begin() as c:
        c.execute(sandboxes.insert().values(name=name, created_at=NOW))


def _dataset(connection, sandbox: str, name: str, kind: str = "event") -> int:
    return connection.execute(datasets.insert().values(
        sandbox=sandbox, name=name, kind=kind, labels=[], field_labels={}, created_at=NOW, updated_at=NOW)
        .returning(datasets.c.pk)).scalar_one()


def _event(namespace: str, value: str, event_id: str) -> dict:
    return {"identities": [{"namespace": namespace, "id": value}],
            "event": {"id": event_id, "type": "pageView", "timestamp": "2026-12-01T10:00:00Z"}}


def test_another_process_changes_are_seen_at_once(two_processes):
    mine, theirs = two_processes
    _sandbox(mine, "cfg-seen")
    with mine.begin() as c:
        first = _dataset(c, "cfg-seen", "web")
    with mine.begin() as c:  # kept by this process now
        answer = ingest_records(connection=c, sandbox="cfg-seen", dataset_id=first, body=_event("ecid", "e1", "1"))
        assert answer.accepted == 1
        with pytest.raises(NotFound):
            ingest_records(connection=c, sandbox="cfg-seen", dataset_id=first + 1000, body=_event("ecid", "e1", "2"))
        kept = ingest_config(connection=c, sandbox="cfg-seen")
        assert ingest_config(connection=c, sandbox="cfg-seen") is kept  # nothing changed: the same object
    with theirs.begin() as c:  # the other process: a namespace and a dataset
        c.execute(identity_namespaces.insert().values(sandbox="cfg-seen", code="acme", name="Acme", kind="person",
                                                      created_at=NOW))
        second = _dataset(c, "cfg-seen", "app")
    with mine.begin() as c:
        answer = ingest_records(connection=c, sandbox="cfg-seen", dataset_id=second, body=_event("acme", "A-1", "3"))
        assert answer.accepted == 1, answer.results
    with theirs.begin() as c:  # ... and takes the namespace away again, and the first dataset
        c.execute(identity_namespaces.delete().where(identity_namespaces.c.sandbox == "cfg-seen"))
        c.execute(datasets.delete().where(datasets.c.pk == first))
    with mine.begin() as c:
        answer = ingest_records(connection=c, sandbox="cfg-seen", dataset_id=second, body=_event("acme", "A-2", "4"))
        assert answer.rejected == 1 and "unknown namespace" in answer.results[0].errors[0].message
        with pytest.raises(NotFound):
            ingest_records(connection=c, sandbox="cfg-seen", dataset_id=first, body=_event("ecid", "e1", "5"))


def test_what_a_rolled_back_transaction_read_is_not_kept(two_processes):
    mine, theirs = two_processes
    _sandbox(mine, "cfg-rollback")
    with mine.begin() as c:
        dataset = _dataset(c, "cfg-rollback", "web")
    with mine.connect() as c, c.begin() as transaction:  # a namespace written, used, and rolled back
        c.execute(identity_namespaces.insert().values(sandbox="cfg-rollback", code="gone", name="Gone",
                                                      kind="person", created_at=NOW))
        assert ingest_records(connection=c, sandbox="cfg-rollback", dataset_id=dataset,
                              body=_event("gone", "G-1", "1")).accepted == 1
        transaction.rollback()
    with theirs.begin() as c:  # then another write commits (a count would reach the same number again)
        c.execute(identity_namespaces.insert().values(sandbox="cfg-rollback", code="kept", name="Kept",
                                                      kind="person", created_at=NOW))
    with mine.begin() as c:
        answer = ingest_records(connection=c, sandbox="cfg-rollback", dataset_id=dataset, body={"records": [
            _event("gone", "G-2", "2"), _event("kept", "K-1", "3")]})
        assert [r.status.value for r in answer.results] == ["rejected", "accepted"], answer.results


def test_the_linking_rules_are_made_once_per_version_and_follow_a_settings_change(migrated_engine):
    """The identity graph's rules (the namespaces' priority order, the unique ones) are kept with
    the configuration — one object per version, not made by every request — and a change of the
    identity settings is in the next request's rules."""
    from cdp.ingestion.writer import Writer

    _sandbox(migrated_engine, "cfg-rules")
    with migrated_engine.begin() as c:
        first = ingest_config(connection=c, sandbox="cfg-rules")
        assert first.rules is ingest_config(connection=c, sandbox="cfg-rules").rules
        assert first.rules.rank["crm_id"] < first.rules.rank["email"] and "crm_id" in first.rules.unique
        writer = Writer(c, sandbox="cfg-rules", dataset_pk=0, kind="event", config=first)
        assert writer.graph.rules is first.rules
    with migrated_engine.begin() as c:
        c.execute(identity_settings.insert().values(
            sandbox="cfg-rules", merge_policy="timestamp_ordered", dataset_order=[], graph_limit=50,
            unique_namespaces=["email"], namespace_priority=["email", "crm_id"], updated_at=NOW))
    with migrated_engine.begin() as c:
        second = ingest_config(connection=c, sandbox="cfg-rules")
        assert second.rules is not first.rules
        assert second.rules.rank["email"] < second.rules.rank["crm_id"] and second.rules.unique == {"email"}
