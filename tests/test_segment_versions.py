"""The segments' version per sandbox (migration 0015's triggers), which tells streaming evaluation
whether the segments it compiled are still current: raised by every insert and delete and by
every update of what evaluation reads (key, expression, status, mode), whoever writes — not by a
batch run's evaluated_at or a new name — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.storage.models import segment_versions, segments

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)


def _version(connection, sandbox: str):
    return connection.execute(sa.select(segment_versions.c.version)
                              .where(segment_versions.c.sandbox == sandbox)).scalar()


def test_triggers_raise_the_version(migrated_engine):
    with migrated_engine.begin() as c:
        assert _version(c, "versions-a") is None
        c.execute(segments.insert(), [
            {"sandbox": "versions-a", "key": k, "name": k, "expression": "loyalty.points > 1", "canonical": "x",
             "created_at": NOW, "updated_at": NOW} for k in ("one", "two")])
        assert _version(c, "versions-a") == 2
        assert _version(c, "versions-b") is None
        mine = segments.c.sandbox == "versions-a"
        for values, raised in (({"name": "renamed", "evaluated_at": NOW, "updated_at": NOW}, 0),
                               ({"expression": "loyalty.points > 2"}, 2), ({"status": "active"}, 0),
                               ({"status": "draft"}, 2), ({"evaluation": "streaming"}, 2)):
            before = _version(c, "versions-a")
            c.execute(segments.update().where(mine).values(**values))
            assert _version(c, "versions-a") == before + raised, values
        before = _version(c, "versions-a")
        c.execute(segments.delete().where(mine, segments.c.key == "one"))
        assert _version(c, "versions-a") == before + 1
