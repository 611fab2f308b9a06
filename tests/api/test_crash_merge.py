"""kill -9 of the server while it applies a batch file whose rows merge profiles (each row links a
device id to an email shared with two other rows: a person's three devices; not CRM ids, which
the default linking rules keep one per profile: docs/identity.md), on SQLite and PostgreSQL: afterwards no profile,
identity or merge of it is stored; the restarted server reports the job interrupted, and a retry
leaves exactly the merged graph — one profile per email, every identity once. (The same for event
rows without merges: tests/api/test_batch_crash.py, whose probes this test reuses.)"""

from __future__ import annotations


import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tests.api.test_batch_crash import _until, kill_while_applying
from tests.api.test_server import Server

ROWS = {"sqlite": 6000, "postgresql": 3000}
MAPPING = {"device": "identity.ecid", "email": "identity.email", "tier": "loyalty.tier"}


def _csv(rows: int) -> bytes:
    lines = ["device,email,tier"] + [f"D-{i},u{i // 3}@example.com,{('gold', 'silver')[i % 2]}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def _graph(engine: sa.Engine) -> tuple[int, int, int]:
    from cdp.storage.models import identities, profiles

    with engine.connect() as connection:
        return (connection.execute(sa.select(sa.func.count()).select_from(profiles)
                                   .where(profiles.c.sandbox == "prod")).scalar_one(),
                connection.execute(sa.select(sa.func.count()).select_from(identities)
                                   .where(identities.c.sandbox == "prod")).scalar_one(),
                connection.execute(sa.select(sa.func.count(sa.distinct(identities.c.profile_pk)))
                                   .where(identities.c.sandbox == "prod", identities.c.namespace == "email"))
                .scalar_one())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_during_a_merging_batch_then_retry(backend, request, sqlite_url_factory, tmp_path):
    from cdp.storage.database import create_engine

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    rows = ROWS[backend]
    headers, dataset, batch_id = kill_while_applying(backend, url, tmp_path, dataset={"name": "CRM", "kind": "profile"},
                                                     file=("crm.csv", _csv(rows)), mapping=MAPPING)

    engine = create_engine(url)
    try:
        assert _graph(engine) == (0, 0, 0), "the killed batch left part of its graph"
        second = Server(url, tmp_path / "second.log")
        try:
            job = httpx.get(second.base + f"/v1/batches/{batch_id}", headers=headers).json()
            assert job["status"] == "failed" and "nothing of it was applied" in job["message"], job
            assert httpx.post(second.base + f"/v1/batches/{batch_id}/retry", headers=headers).status_code == 202

            def finished():
                job = httpx.get(second.base + f"/v1/batches/{batch_id}", headers=headers).json()
                return job if job["status"] in ("succeeded", "failed") else None

            job = _until("the retry to finish", finished, timeout=180, every=0.1)
            assert (job["status"], job["accepted_rows"], job["rejected_rows"]) == ("succeeded", rows, 0), job
            people = rows // 3
            assert _graph(engine) == (people, rows + people, people)
            merged = httpx.get(second.base + "/v1/profiles/lookup", headers=headers,
                               params={"namespace": "email", "id": "u0@example.com"}).json()
            assert {i["id"] for i in merged["identities"] if i["namespace"] == "ecid"} == {"D-0", "D-1", "D-2"}
        finally:
            second.stop()
    finally:
        engine.dispose()
