"""The data the server starts with on `make run` (`cdp serve --demo`): the Luma sample profiles
of examples/ (Sarah Rose and friends) and generated Luma profiles, ingested once into an empty
sandbox through the same code paths the API uses — two datasets ("CRM contacts" for the
profile records with all of a person's identities, "Web and mobile events" for the events, which
carry the person's cookie only, as a browser would send them), identity resolution and the merge
policy included — so every demo profile can be looked up by any of its identities."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from cdp.datasets.models import DatasetCreate, DatasetKind
from cdp.datasets.service import create_dataset
from cdp.demo.generator import generate_profiles
from cdp.ingestion import MAX_RECORDS_PER_REQUEST
from cdp.ingestion.service import ingest_records
from cdp.schema_registry.service import get_schema
from cdp.storage.database import write_transaction
from cdp.storage.models import profiles

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "luma_profiles.jsonl"


def demo_documents(generated: int) -> list[dict]:
    documents = []
    if SAMPLES.exists():
        documents += [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return documents + list(generate_profiles(generated))


def _chunks(records: list[dict]) -> Iterator[list[dict]]:
    for start in range(0, len(records), MAX_RECORDS_PER_REQUEST):
        yield records[start:start + MAX_RECORDS_PER_REQUEST]


def seed_demo_data(engine: sa.Engine, *, sandbox: str = "prod", generated: int = 1000) -> int:
    """Ingest the demo profiles when the sandbox holds none; returns how many profiles it holds
    then (0 when it held some already)."""
    with write_transaction(engine) as connection:
        existing = connection.execute(
            sa.select(sa.func.count()).select_from(profiles).where(profiles.c.sandbox == sandbox)).scalar()
        if existing:
            return 0
        schema = get_schema(connection=connection, sandbox=sandbox)
        crm = create_dataset(connection=connection, sandbox=sandbox, schema=schema, spec=DatasetCreate(
            name="CRM contacts", kind=DatasetKind.profile, description="Luma demo: the CRM's contacts",
            field_labels={"email": ["I1"], "phone": ["I1"], "person.birth_date": ["S1"]}))
        web = create_dataset(connection=connection, sandbox=sandbox, schema=schema, spec=DatasetCreate(
            name="Web and mobile events", kind=DatasetKind.event, description="Luma demo: site and app events"))
        profile_records, event_records = [], []
        for document in demo_documents(generated):
            identities = document.get("identities") or [{"namespace": "crm_id", "id": document["id"]}]
            profile_records.append({"identities": identities, "attributes": document.get("attributes") or {}})
            cookie = next((i for i in identities if i["namespace"] == "ecid"), identities[0])
            event_records += [{"identities": [cookie], "event": event} for event in document.get("events") or []]
        for dataset, records in ((crm, profile_records), (web, event_records)):
            for chunk in _chunks(records):
                answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset.id,
                                        body={"records": chunk}, schema=schema)
                rejected = [r for r in answer.results if r.status == "rejected"]
                if rejected:  # the demo data is ours: a rejection is a bug, not something to skip
                    raise RuntimeError(f"demo record rejected: {rejected[0].model_dump()}")
        return connection.execute(
            sa.select(sa.func.count()).select_from(profiles).where(profiles.c.sandbox == sandbox)).scalar()
