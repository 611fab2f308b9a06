"""Migration 0023 (SQLite and PostgreSQL): ``segment_due_saved`` is created empty; its downgrade
moves each row into ``segment_due`` at the earlier of the two instants (the old due job then
re-evaluates all the profile's timed segments: nothing is lost)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade
from cdp.storage.models import UtcDateTime
from tests.test_migration_0018 import _downgrade

T = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
_due = sa.table("segment_due", sa.column("profile_pk"), sa.column("sandbox"), sa.column("due_at", UtcDateTime()))
_saved = sa.table("segment_due_saved", sa.column("profile_pk"), sa.column("sandbox"),
                  sa.column("due_at", UtcDateTime()))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_saved_instants_go_back_into_the_profiles_instants(backend, request, sqlite_url_factory):
    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    try:
        upgrade(engine)
        profiles = sa.table("profiles", *(sa.column(n) for n in ("pk", "sandbox", "external_id", "attributes")),
                            sa.column("created_at", UtcDateTime()), sa.column("updated_at", UtcDateTime()))
        with engine.begin() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(_saved)).scalar_one() == 0
            connection.execute(sa.insert(profiles), [
                {"pk": pk, "sandbox": "prod", "external_id": f"p{pk}", "attributes": "{}", "created_at": T,
                 "updated_at": T} for pk in (1, 2, 3)])
            connection.execute(sa.insert(_due), [
                {"profile_pk": 1, "sandbox": "prod", "due_at": T + timedelta(hours=2)},
                {"profile_pk": 2, "sandbox": "prod", "due_at": T - timedelta(hours=1)}])
            connection.execute(sa.insert(_saved), [
                {"profile_pk": 1, "sandbox": "prod", "due_at": T},
                {"profile_pk": 2, "sandbox": "prod", "due_at": T},
                {"profile_pk": 3, "sandbox": "prod", "due_at": T}])
        _downgrade(engine, "0022")
        with engine.connect() as connection:
            rows = connection.execute(sa.select(_due.c.profile_pk, _due.c.sandbox, _due.c.due_at)).all()
            assert not sa.inspect(connection).has_table("segment_due_saved")
        assert sorted(rows) == [(1, "prod", T), (2, "prod", T - timedelta(hours=1)), (3, "prod", T)]
    finally:
        engine.dispose()
