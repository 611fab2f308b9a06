"""The server is killed (SIGKILL) while streaming ingestion runs with streaming segments, on SQLite
and on PostgreSQL: the membership changes commit in the transaction of the record that caused
them (cdp/segments/streaming.py; the same-transaction design, no queue in between), so after the
kill the database holds every acknowledged record, the memberships equal a batch evaluation of
the stored data (the SQL engine's query per segment), and every entry and exit is in the outbox
(per profile and segment, entries and exits alternate and the last one is the membership's
state). The comparison is made on the database as the kill left it, before any restart (a due
wave could repair a loss and hide it); then a restarted server takes records again.

The segments read no clock (no window, no calendar function): their answers do not depend on
the instant of the comparison.
"""

from __future__ import annotations

import itertools
import random
import threading
from datetime import datetime, timezone

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tests.api.test_batch_crash import _apply_in_progress, _until
from tests.api.test_server import KEY, Server

SEGMENTS = {
    "carted": 'exists event where type = "addToCart"',
    "never-bought": 'not exists event where type = "purchase"',
    "viewers": 'count(event where type = "productView") >= 2',
    "big-carts": 'sum(event.product.price where type = "addToCart") > 150',
    "abandoners": 'in segment "carted" and in segment "never-bought"',
    "attribute-free": 'exists event where type = "purchase" or not in segment "viewers"',
}
PEOPLE = 40
TYPES = ["productView", "productView", "addToCart", "purchase"]


def _record(rng: random.Random, n: int) -> dict:
    person = rng.randrange(PEOPLE)
    return {"identities": [{"namespace": "ecid", "id": f"ecid-{person:03d}"}],
            "event": {"id": f"e-{n:06d}", "type": rng.choice(TYPES), "timestamp": f"2026-11-27T{n % 24:02d}:00:00Z",
                      "product": {"sku": f"SKU-{n % 7}", "price": round(rng.uniform(5, 120), 2)}}}


class Load:
    """Clients sending records (1 per request, sometimes 10) until the server is gone; remembers
    the event ids of every acknowledged request."""

    def __init__(self, base: str, headers: dict, dataset: int, clients: int = 4, start: int = 0):
        self.acknowledged: set[str] = set()
        self.failed = 0
        self.problems: list[str] = []  # an answer that is not "every record accepted"
        self.lock = threading.Lock()
        self.numbers = itertools.count(start)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(base, headers, dataset, seed), daemon=True)
                        for seed in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self, base: str, headers: dict, dataset: int, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            while not self.stop.is_set():
                with self.lock:
                    records = [_record(rng, next(self.numbers)) for _ in range(10 if rng.random() < 0.2 else 1)]
                try:
                    response = client.post(f"/v1/datasets/{dataset}/records", json={"records": records})
                except httpx.TransportError:
                    with self.lock:
                        self.failed += 1
                    return  # the server is gone
                if response.status_code != 200 or any(r["status"] != "accepted" for r in response.json()["results"]):
                    with self.lock:
                        self.problems.append(response.text[:500])
                    return
                with self.lock:
                    self.acknowledged.update(r["event"]["id"] for r in records)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not self.problems, self.problems


def _check_database(engine: sa.Engine, acknowledged: set[str]) -> dict:
    from cdp.dsl import check
    from cdp.engine import sql
    from cdp.storage.models import events, membership_changes, memberships, profiles, segments

    as_of = datetime.now(timezone.utc)
    with engine.connect() as connection:
        stored = set(connection.execute(sa.select(events.c.event_id)).scalars())
        assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged records lost"
        keys = dict(connection.execute(sa.select(segments.c.key, segments.c.pk)).all())
        members = {key: set() for key in keys}
        for key, external_id in connection.execute(
                sa.select(segments.c.key, profiles.c.external_id)
                .join(memberships, memberships.c.segment_pk == segments.c.pk)
                .join(profiles, profiles.c.pk == memberships.c.profile_pk)
                .where(memberships.c.status.in_(["realized", "existing"]))):
            members[key].add(external_id)
        for key, text in SEGMENTS.items():
            expected = set(sql.evaluate(connection, check(text, segments=SEGMENTS), as_of=as_of, segments=SEGMENTS))
            assert members[key] == expected, (f"{key}: streaming memberships differ from a batch evaluation: missing "
                                              f"{sorted(expected - members[key])}, extra {sorted(members[key] - expected)}")
        history: dict[tuple[str, str], list[str]] = {}
        for row in connection.execute(sa.select(membership_changes.c.segment_key, membership_changes.c.profile_id,
                                                membership_changes.c.status).order_by(membership_changes.c.pk)):
            history.setdefault((row.segment_key, row.profile_id), []).append(row.status)
        profile_ids = set(connection.execute(sa.select(profiles.c.external_id)).scalars())
    for key in SEGMENTS:
        for profile_id in profile_ids:
            changes = history.get((key, profile_id), [])
            assert all(a != b for a, b in zip(changes, changes[1:])), (key, profile_id, changes)
            assert (changes[-1] == "entered" if changes else False) == (profile_id in members[key]), \
                (key, profile_id, changes)
    entered = {key: sum(changes.count("entered") for (k, _), changes in history.items() if k == key)
               for key in SEGMENTS}
    return {"events": len(stored), "changes": sum(map(len, history.values())),
            "members": {k: len(v) for k, v in members.items()}, "entered": entered}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_during_streaming_ingestion(backend, request, sqlite_url_factory, tmp_path):
    from cdp.storage.database import create_engine

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    first = Server(url, tmp_path / "first.log")
    engine = create_engine(url)
    try:
        try:
            [key] = KEY.findall(first.stderr)
            headers = {"Authorization": f"Bearer {key}"}
            dataset = httpx.post(first.base + "/v1/datasets", headers=headers,
                                 json={"name": "Web events", "kind": "event"}).json()["id"]
            for segment_key, text in SEGMENTS.items():
                saved = httpx.post(first.base + "/v1/segments", headers=headers, json={
                    "key": segment_key, "name": segment_key, "expression": text, "evaluation": "streaming"})
                assert saved.status_code == 201, saved.text
            load = Load(first.base, headers, dataset)
            _until("300 records acknowledged", lambda: load.count() >= 300 or load.failed or load.problems,
                   timeout=120)
            assert not load.failed and not load.problems, load.problems
            # the kill lands while records are being written (a write transaction open)
            _until("a write transaction to be open", _apply_in_progress(backend, url, engine), every=0.002)
        except BaseException:
            first.stop()
            raise
        first.kill()
        load.join()
        assert load.failed >= 1  # requests were in flight when the server died
        found = _check_database(engine, load.acknowledged)
        # every segment was exercised: each had entries (not "has members now": the longer the load
        # runs before the kill, the likelier that every person has bought and "never-bought" is empty)
        assert found["changes"] > 0 and all(found["entered"].values()), found

        second = Server(url, tmp_path / "second.log")
        try:
            more = Load(second.base, headers, dataset, clients=1, start=10**5)
            _until("records acknowledged after the restart", lambda: more.count() >= 20 or more.problems, timeout=60)
            more.join()
        finally:
            second.stop()
        _check_database(engine, load.acknowledged | more.acknowledged)
    finally:
        engine.dispose()
