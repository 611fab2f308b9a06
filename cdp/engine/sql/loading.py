"""Profile documents into the database: validated by load_profile, then written in bulk."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

import sqlalchemy as sa

from cdp.engine.profile import LoadedProfile, load_profile
from cdp.schema import Schema
from cdp.storage.database import sqlite_text
from cdp.storage.models import events, profiles

_BATCH = 2000


def json_value(value: Any, dialect: str) -> Any:
    """A loaded value as stored in a JSON document: dates 'YYYY-MM-DD', datetimes in UTC in the
    form the dialect compares as text (SQLite) or casts (PostgreSQL)."""
    if isinstance(value, datetime):
        if dialect == "sqlite":
            return sqlite_text(value)
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [json_value(v, dialect) for v in value]
    return value


def profile_rows(profile: LoadedProfile, dialect: str, sandbox: str, now: datetime) -> tuple[dict, list[dict]]:
    row = {
        "sandbox": sandbox,
        "external_id": profile.id,
        "attributes": {k: json_value(v, dialect) for k, v in profile.attributes.items()},
        "created_at": now,
        "updated_at": now,
    }
    event_rows = []
    for event in profile.events:
        fields = {k: json_value(v, dialect) for k, v in event.items() if k not in ("id", "type", "timestamp")}
        event_rows.append({"event_id": event["id"], "type": event["type"], "ts": event["timestamp"], "fields": fields})
    return row, event_rows


def load_documents(connection: sa.Connection, documents: Iterable[Mapping | LoadedProfile], *,
                   sandbox: str = "prod", schema: Schema | None = None) -> int:
    """Insert (validated) profile documents and their events; returns how many profiles."""
    dialect = connection.dialect.name
    now = datetime.now(timezone.utc)
    count = 0
    batch: list[tuple[dict, list[dict]]] = []

    def flush() -> None:
        if not batch:
            return
        result = connection.execute(
            profiles.insert().returning(profiles.c.pk, profiles.c.external_id, sort_by_parameter_order=True),
            [row for row, _ in batch],
        )
        keys = [pk for pk, _external in result.all()]
        rows = []
        for pk, (_row, event_rows) in zip(keys, batch):
            for event_row in event_rows:
                rows.append({**event_row, "profile_pk": pk})
        if rows:
            connection.execute(events.insert(), rows)
        batch.clear()

    for document in documents:
        profile = document if isinstance(document, LoadedProfile) else load_profile(document, schema)
        batch.append(profile_rows(profile, dialect, sandbox, now))
        count += 1
        if len(batch) >= _BATCH:
            flush()
    flush()
    return count
