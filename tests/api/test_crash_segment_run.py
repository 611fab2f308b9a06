"""kill -9 of the server in the middle of a batch segment run (`POST /v1/segment-jobs`), on SQLite
and PostgreSQL, over the demo data: each segment is evaluated in a transaction of its own that
also records it in the job's counts, so after the kill every segment the job counted has exactly
the members a batch evaluation gives at the job's instant, and every other one has none of this
run; the restarted server marks the job failed (interrupted), and a new run leaves every segment
equal to a batch evaluation."""

from __future__ import annotations

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tests.api.test_batch_crash import _until
from tests.api.test_server import KEY, Server

SEGMENTS = {f"s{n:02d}": f'count(event where type = "{kind}" within last {days} days) >= {least} or '
                         f'loyalty.points > {n * 97}'
            for n, (kind, days, least) in enumerate(
                (kind, days, least) for kind in ("productView", "addToCart", "purchase", "login")
                for days in (3, 30, 90) for least in (1, 2, 3))}


def _members(engine: sa.Engine, as_of) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """(memberships stored, members of a batch evaluation at ``as_of``) per segment."""
    from cdp.schema_registry.service import get_schema
    from cdp.segments.batch import members_select

    stored = _stored(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        schema = get_schema(connection=connection, sandbox="prod")
        expected = {key: set(connection.execute(members_select(
            dialect=engine.dialect.name, sandbox="prod", expression=expression, schema=schema, catalogue=SEGMENTS,
            as_of=as_of)).scalars()) for key, expression in SEGMENTS.items()}
    return stored, expected


def _stored(url: str) -> dict[str, set[int]]:
    from cdp.storage.database import create_engine
    from cdp.storage.models import memberships, segments

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            found: dict[str, set[int]] = {key: set() for key in SEGMENTS}
            for key, pk in connection.execute(sa.select(segments.c.key, memberships.c.profile_pk)
                                              .join(segments, segments.c.pk == memberships.c.segment_pk)
                                              .where(segments.c.sandbox == "prod",
                                                     segments.c.key.in_(list(SEGMENTS)),  # not the demo's own
                                                     memberships.c.status.in_(["realized", "existing"]))):
                found[key].add(pk)
            return found
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_during_a_segment_run_then_run_again(backend, request, sqlite_url_factory, tmp_path):
    from cdp.storage.database import create_engine
    from cdp.storage.models import segment_jobs

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    first = Server(url, tmp_path / "first.log", args=["--demo"], timeout=300)
    try:
        [key] = KEY.findall(first.stderr)
        headers = {"Authorization": f"Bearer {key}"}
        for name, expression in SEGMENTS.items():
            created = httpx.post(first.base + "/v1/segments", headers=headers,
                                 json={"key": name, "name": name, "expression": expression})
            assert created.status_code == 201, created.text
        before = _stored(url)  # a saved segment is evaluated once on save (history cause `save`)
        job = httpx.post(first.base + "/v1/segment-jobs", headers=headers, json={}, timeout=60).json()

        def midway():
            found = httpx.get(first.base + f"/v1/segment-jobs/{job['id']}", headers=headers).json()
            assert found["status"] in ("queued", "running"), f"the run ended before the kill: {found}"
            return found if found["status"] == "running" and 1 <= len(found["counts"]) < len(SEGMENTS) else None

        _until("the run to be midway", midway, every=0.005)
    except BaseException:
        first.stop()
        raise
    first.kill()

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.select(segment_jobs).where(segment_jobs.c.pk == job["id"])).one()
        assert row.status == "running" and 1 <= len(row.counts) < len(SEGMENTS), (row.status, row.counts)
        stored, expected = _members(engine, row.as_of)
        for name in SEGMENTS:  # counted: complete at the run's instant; not counted: as saved
            assert stored[name] == (expected[name] if name in row.counts else before[name]), name
        second = Server(url, tmp_path / "second.log", timeout=300)
        try:
            found = httpx.get(second.base + f"/v1/segment-jobs/{job['id']}", headers=headers).json()
            assert found["status"] == "failed" and "run it again" in found["message"], found
            again = httpx.post(second.base + "/v1/segment-jobs", headers=headers, json={}, timeout=60).json()

            def finished():
                found = httpx.get(second.base + f"/v1/segment-jobs/{again['id']}", headers=headers).json()
                return found if found["status"] in ("succeeded", "failed") else None

            done = _until("the new run to finish", finished, timeout=300, every=0.1)
            assert done["status"] == "succeeded", done
            with engine.connect() as connection:
                as_of = connection.execute(sa.select(segment_jobs.c.as_of)
                                           .where(segment_jobs.c.pk == again["id"])).scalar_one()
            stored, expected = _members(engine, as_of)
            assert stored == expected
            assert any(stored.values())
        finally:
            second.stop()
    finally:
        engine.dispose()
