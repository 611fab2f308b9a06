"""Migration 0018 on a database holding instants (SQLite and PostgreSQL): one row per
(segment, profile) becomes one per profile at its earliest instant; the downgrade gives every
active streaming segment of the sandbox the profile's instant (early for some: allowed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from cdp.storage.database import create_engine
from cdp.storage.migrate import alembic_config, upgrade
from cdp.storage.models import UtcDateTime

T = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
_due = sa.table("segment_due", sa.column("segment_pk"), sa.column("profile_pk"), sa.column("sandbox"),
                sa.column("due_at", UtcDateTime()))


def _downgrade(engine: sa.Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_instants_become_one_per_profile_and_back(backend, request, sqlite_url_factory):
    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    try:
        upgrade(engine, "0017")
        segments = sa.table("segments", *(sa.column(n) for n in (
            "pk", "sandbox", "key", "name", "expression", "canonical", "status", "evaluation")),
            sa.column("created_at", UtcDateTime()), sa.column("updated_at", UtcDateTime()))
        profiles = sa.table("profiles", *(sa.column(n) for n in ("pk", "sandbox", "external_id", "attributes")),
                            sa.column("created_at", UtcDateTime()), sa.column("updated_at", UtcDateTime()))
        with engine.begin() as connection:
            connection.execute(sa.insert(segments), [
                {"pk": pk, "sandbox": "prod", "key": key, "name": key, "expression": "x", "canonical": "x",
                 "status": "active", "evaluation": evaluation, "created_at": T, "updated_at": T}
                for pk, key, evaluation in ((1, "a", "streaming"), (2, "b", "streaming"), (3, "c", "batch"))])
            connection.execute(sa.insert(profiles), [
                {"pk": pk, "sandbox": "prod", "external_id": f"p{pk}", "attributes": "{}", "created_at": T,
                 "updated_at": T} for pk in (1, 2, 3)])
            connection.execute(sa.insert(_due), [
                {"segment_pk": 1, "profile_pk": 1, "sandbox": "prod", "due_at": T + timedelta(hours=2)},
                {"segment_pk": 2, "profile_pk": 1, "sandbox": "prod", "due_at": T + timedelta(hours=1)},
                {"segment_pk": 1, "profile_pk": 2, "sandbox": "prod", "due_at": T + timedelta(hours=5)}])
        upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(sa.select(_due.c.profile_pk, _due.c.sandbox, _due.c.due_at)).all()
            assert sorted(rows) == [(1, "prod", T + timedelta(hours=1)), (2, "prod", T + timedelta(hours=5))]
            assert [c["name"] for c in sa.inspect(connection).get_columns("segment_due")] == [
                "profile_pk", "sandbox", "due_at"]
        _downgrade(engine, "0017")
        with engine.connect() as connection:
            rows = connection.execute(sa.select(_due.c.segment_pk, _due.c.profile_pk, _due.c.due_at)).all()
        assert sorted(rows) == [(1, 1, T + timedelta(hours=1)), (1, 2, T + timedelta(hours=5)),
                                (2, 1, T + timedelta(hours=1)), (2, 2, T + timedelta(hours=5))]
    finally:
        engine.dispose()
