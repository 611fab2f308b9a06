"""Writing validated records: profile resolution by identity, attribute upserts, idempotent
events (see the package docstring for the rules and limits)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

import cdp.ingestion as limits
from cdp.api.metrics import Metrics
from cdp.datasets.service import get_dataset
from cdp.errors import PayloadTooLarge, Unprocessable
from cdp.ingestion.models import IngestResponse, RecordError, RecordResult, RecordStatus
from cdp.ingestion.validation import ValidRecord, validate_record
from cdp.schema import Schema
from cdp.storage.loader import json_value
from cdp.storage.models import events, identities, profiles


class Writer:
    """Applies valid records on one connection (one transaction), remembering what it has seen
    (event ids of this call, event counts per profile) so a batch is checked as a whole."""

    def __init__(self, connection: sa.Connection, *, sandbox: str, dataset_pk: int, kind: str):
        self.connection = connection
        self.sandbox = sandbox
        self.dataset_pk = dataset_pk
        self.kind = kind
        self.dialect = connection.dialect.name
        self.seen_event_ids: set[str] = set()
        self.event_counts: dict[int, int] = {}
        self.external_ids: dict[int, str] = {}

    # ---- profiles ----------------------------------------------------------------------------

    def _resolve(self, pairs: list[tuple[str, str]], now: datetime) -> tuple[int, list[str]]:
        condition = sa.or_(*(sa.and_(identities.c.namespace == ns, identities.c.value == value)
                             for ns, value in pairs))
        rows = self.connection.execute(sa.select(identities.c.namespace, identities.c.value, identities.c.profile_pk)
                                       .where(identities.c.sandbox == self.sandbox, condition)).all()
        owner = {(row.namespace, row.value): row.profile_pk for row in rows}
        owners: list[int] = []
        for pair in pairs:
            pk = owner.get(pair)
            if pk is not None and pk not in owners:
                owners.append(pk)
        warnings: list[str] = []
        if owners:
            profile_pk = owners[0]
        else:
            external_id = f"p-{uuid.uuid4().hex}"
            profile_pk = self.connection.execute(profiles.insert().values(
                sandbox=self.sandbox, external_id=external_id, attributes={}, created_at=now, updated_at=now)
                .returning(profiles.c.pk)).scalar_one()
            self.external_ids[profile_pk] = external_id
        if len(owners) > 1:
            others = [self._external_id(pk) for pk in owners[1:]]
            elsewhere = [f"{ns}:{value}" for (ns, value) in pairs if owner.get((ns, value)) not in (None, profile_pk)]
            warnings.append(f"the record's identities belong to {len(owners)} profiles; they were not merged (merging "
                            f"comes with the identity graph): the record went to profile "
                            f"{self._external_id(profile_pk)!r}; identities {', '.join(elsewhere)} stay with "
                            f"{', '.join(map(repr, others))}")
        new = [{"sandbox": self.sandbox, "profile_pk": profile_pk, "namespace": ns, "value": value, "first_seen": now}
               for ns, value in pairs if (ns, value) not in owner]
        if new:
            self.connection.execute(identities.insert(), new)
        return profile_pk, warnings

    def _external_id(self, profile_pk: int) -> str:
        found = self.external_ids.get(profile_pk)
        if found is None:
            found = self.connection.execute(sa.select(profiles.c.external_id)
                                            .where(profiles.c.pk == profile_pk)).scalar_one()
            self.external_ids[profile_pk] = found
        return found

    def _upsert_attributes(self, profile_pk: int, record: ValidRecord, now: datetime) -> None:
        if not record.set_attributes and not record.removed:
            return
        query = sa.select(profiles.c.attributes).where(profiles.c.pk == profile_pk)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        attributes = dict(self.connection.execute(query).scalar_one() or {})
        for path in record.removed:
            prefix = path + "."
            for key in [k for k in attributes if k == path or k.startswith(prefix)]:
                del attributes[key]
        for path, value in record.set_attributes.items():
            attributes[path] = json_value(value, self.dialect)
        self.connection.execute(profiles.update().where(profiles.c.pk == profile_pk)
                                .values(attributes=attributes, updated_at=now))

    # ---- events ------------------------------------------------------------------------------

    def _is_duplicate(self, event_id: str) -> bool:
        if event_id in self.seen_event_ids:
            return True
        found = self.connection.execute(sa.select(events.c.pk).where(events.c.dataset_pk == self.dataset_pk,
                                                                     events.c.event_id == event_id)).first()
        return found is not None

    def _event_count(self, profile_pk: int) -> int:
        count = self.event_counts.get(profile_pk)
        if count is None:
            count = self.connection.execute(sa.select(sa.func.count()).select_from(events)
                                            .where(events.c.profile_pk == profile_pk)).scalar_one()
            self.event_counts[profile_pk] = count
        return count

    # ---- one record --------------------------------------------------------------------------

    def apply(self, index: int, record: ValidRecord) -> RecordResult:
        now = datetime.now(timezone.utc)
        if self.kind == "event" and self._is_duplicate(record.event_id):
            return RecordResult(index=index, status=RecordStatus.duplicate, warnings=[
                f"event {record.event_id!r} was already ingested into this dataset; not stored again"])
        profile_pk, warnings = self._resolve(record.identities, now)
        profile_id = self._external_id(profile_pk)
        if self.kind == "profile":
            self._upsert_attributes(profile_pk, record, now)
        else:
            count = self._event_count(profile_pk)
            if count >= limits.MAX_EVENTS_PER_PROFILE:
                return RecordResult(index=index, status=RecordStatus.rejected, profile_id=profile_id, errors=[
                    RecordError(path="event", message=f"too_many_events: profile {profile_id!r} holds {count} events; "
                                                      f"at most {limits.MAX_EVENTS_PER_PROFILE} per profile")],
                    warnings=warnings)
            fields = {k: json_value(v, self.dialect) for k, v in record.event_fields.items()}
            self.connection.execute(events.insert().values(
                profile_pk=profile_pk, event_id=record.event_id, type=record.event_type, ts=record.ts, fields=fields,
                dataset_pk=self.dataset_pk))
            self.seen_event_ids.add(record.event_id)
            self.event_counts[profile_pk] = count + 1
        return RecordResult(index=index, status=RecordStatus.accepted, profile_id=profile_id, warnings=warnings)


def records_of(body: Any) -> list[Any]:
    """The records of a streaming request: ``{"records": [...]}`` or one record."""
    if isinstance(body, dict) and "records" in body:
        extra = sorted(set(body) - {"records"})
        if extra:
            raise Unprocessable(f"unknown key {extra[0]!r} next to `records`", code="validation_error",
                                details={"errors": [{"loc": ["body", extra[0]], "message": "unknown key",
                                                     "type": "extra_forbidden"}]})
        records = body["records"]
        if not isinstance(records, list):
            raise Unprocessable("`records` must be a list of records", code="validation_error",
                                details={"errors": [{"loc": ["body", "records"], "message": "must be a list",
                                                     "type": "list_type"}]})
        if not records:
            raise Unprocessable("`records` is empty: send 1 to "
                                f"{limits.MAX_RECORDS_PER_REQUEST} records", code="validation_error",
                                details={"errors": [{"loc": ["body", "records"], "message": "empty", "type": "too_short"}]})
        if len(records) > limits.MAX_RECORDS_PER_REQUEST:
            raise PayloadTooLarge(f"{len(records)} records in one request; at most {limits.MAX_RECORDS_PER_REQUEST} "
                                  f"(send several requests, or upload a file as a batch)", code="batch_too_large",
                                  details={"records": len(records), "limit": limits.MAX_RECORDS_PER_REQUEST})
        return records
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a record (a JSON object) or {\"records\": [...]}",
                            code="validation_error", details={"errors": [{"loc": ["body"], "message": "must be an object",
                                                                          "type": "dict_type"}]})
    return [body]


def ingest_records(*, connection: sa.Connection, sandbox: str, dataset_id: int, body: Any, schema: Schema,
                   metrics: Metrics | None = None) -> IngestResponse:
    dataset = get_dataset(connection=connection, sandbox=sandbox, dataset_id=dataset_id)
    kind = dataset.kind.value
    records = records_of(body)
    writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset.id, kind=kind)
    results: list[RecordResult] = []
    for index, raw in enumerate(records):
        valid, errors = validate_record(raw, kind, schema)
        if valid is None:
            results.append(RecordResult(index=index, status=RecordStatus.rejected,
                                        errors=[RecordError(**e) for e in errors]))
        else:
            results.append(writer.apply(index, valid))
    counts = {status: sum(1 for r in results if r.status == status) for status in RecordStatus}
    if metrics is not None:
        if counts[RecordStatus.accepted]:
            metrics.ingested(sandbox, kind, counts[RecordStatus.accepted])
        if counts[RecordStatus.rejected]:
            metrics.rejected(sandbox, kind, counts[RecordStatus.rejected])
    return IngestResponse(dataset_id=dataset.id, accepted=counts[RecordStatus.accepted],
                          rejected=counts[RecordStatus.rejected], duplicates=counts[RecordStatus.duplicate],
                          results=results)
