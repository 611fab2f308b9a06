"""Many concurrent multi-record requests sharing identities, against a real `cdp serve` (SQLite and
PostgreSQL): every request answers within a bound (on PostgreSQL, two requests whose records
lost races once applied them one by one and stalled each other for minutes), and the identity
graph is the union-find of the records accepted."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from cdp.ingestion.writer import WAIT_SECONDS
from tests.api.test_identity_concurrency import _profiles_and_events, _setup
from tests.api.test_identity_concurrency import served  # noqa: F401 - the same server fixture, both databases

CLIENTS = 8
REQUESTS_PER_CLIENT = 3
RECORDS_PER_REQUEST = 200
PEOPLE = 300  # each with 3 identities; every person's records are spread over all clients' requests
# a request waits at most WAIT_SECONDS for other writers, then its work (200 records, a loaded
# 2-core machine): 40 s is generous; the old one-by-one fallback stalled for minutes
REQUEST_BOUND = WAIT_SECONDS + 40


def _requests(seed: int) -> list[list[dict]]:
    """CLIENTS × REQUESTS_PER_CLIENT bodies of event records, each naming 1 or 2 identities of a
    random person: the same people in every request, so concurrent requests link and merge."""
    rng = random.Random(seed)
    identities = [[("ecid", f"web-{p}"), ("ecid", f"app-{p}"), ("email", f"p{p}@example.com")] for p in range(PEOPLE)]
    bodies = []
    for r in range(CLIENTS * REQUESTS_PER_CLIENT):
        records = []
        for i in range(RECORDS_PER_REQUEST):
            chosen = rng.sample(identities[rng.randrange(PEOPLE)], rng.choice((1, 2, 2)))
            records.append({"identities": [{"namespace": ns, "id": value} for ns, value in chosen],
                            "event": {"id": f"e{r}-{i}", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}})
        bodies.append({"records": records})
    return bodies


def _components(records: list[dict]) -> dict[str, str]:
    """identity → its component's representative, by a union-find over ``records``."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for record in records:
        keys = [f"{i['namespace']}:{i['id']}" for i in record["identities"]]
        for key in keys:
            find(key)
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
    return {key: find(key) for key in parent}


def test_overlapping_multi_record_requests_finish_in_bound_and_graph_is_the_union_find(served):
    server, key, url = served
    headers, dataset, sandbox = _setup(server, key)
    bodies = _requests(seed=16)
    barrier = threading.Barrier(CLIENTS)
    slowest = [0.0]

    def client(number: int) -> list[tuple[dict, dict]]:
        answered = []
        with httpx.Client(base_url=server.base, headers=headers, timeout=REQUEST_BOUND) as http:
            barrier.wait()
            for body in bodies[number::CLIENTS]:
                started = time.monotonic()
                response = http.post(f"/v1/datasets/{dataset}/records", json=body)
                slowest[0] = max(slowest[0], time.monotonic() - started)
                assert response.status_code == 200, f"{response.text}\n{server.stderr[-4000:]}"
                answered.append((body, response.json()))
        return answered

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [pair for pairs in pool.map(client, range(CLIENTS)) for pair in pairs]
    assert slowest[0] < REQUEST_BOUND
    accepted: list[dict] = []
    for body, answer in answers:
        for result in answer["results"]:
            record = body["records"][result["index"]]
            if result["status"] == "accepted":
                accepted.append(record)
            else:  # the one refusal allowed here: a conflict, told as such
                assert result["status"] == "rejected", result
                assert [e["message"].split(":")[0] for e in result["errors"]] == ["conflict"], result
    total = CLIENTS * REQUESTS_PER_CLIENT * RECORDS_PER_REQUEST
    assert len(accepted) >= 0.9 * total, f"only {len(accepted)} of {total} records accepted"

    owner, stored = _profiles_and_events(url, sandbox)
    component = _components(accepted)
    assert set(owner) == set(component), "the stored identities are not those of the accepted records"
    profile_of_component: dict[str, int] = {}
    for identity, root in component.items():
        assert profile_of_component.setdefault(root, owner[identity]) == owner[identity], \
            f"{identity}'s component is split over profiles"
    assert len(set(profile_of_component.values())) == len(profile_of_component), "two components share a profile"
    # every accepted event stored once, on its identities' profile; nothing of a rejected one
    where = {event_id: pk for pk, ids in stored.items() for event_id in ids}
    assert sum(len(ids) for ids in stored.values()) == len(where) == len(accepted)
    for record in accepted:
        first = record["identities"][0]
        assert where[record["event"]["id"]] == owner[f"{first['namespace']}:{first['id']}"]


# ---- the bound, in process (PostgreSQL) -----------------------------------------------------------

@pytest.fixture(scope="module")
def postgres_engine(postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    yield engine
    engine.dispose()


def _event(value: str, event_id: str) -> dict:
    return {"identities": [{"namespace": "ecid", "id": value}],
            "event": {"id": event_id, "type": "pageView", "timestamp": "2026-12-01T10:00:00Z"}}


def test_a_request_held_up_past_its_deadline_is_rejected_as_conflict_and_stores_nothing(postgres_engine,
                                                                                        monkeypatch):
    from datetime import datetime, timezone

    import sqlalchemy as sa

    from cdp.ingestion import service
    from cdp.ingestion.writer import Writer
    from cdp.storage.models import datasets, events, sandboxes

    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    with postgres_engine.begin() as c:
        c.execute(sandboxes.insert().values(name="held", created_at=now))
        dataset = c.execute(datasets.insert().values(sandbox="held", name="web", kind="event", labels=[],
                                                     field_labels={}, created_at=now, updated_at=now)
                            .returning(datasets.c.pk)).scalar_one()
    monkeypatch.setattr(service, "WAIT_SECONDS", 1.5)
    with postgres_engine.connect() as holder:
        # another writer, not committed yet: it holds the identity `shared` and the sandbox's
        # serialized writer's lock
        holding = holder.begin()
        assert service.ingest_records(connection=holder, sandbox="held", dataset_id=dataset,
                                      body=_event("shared", "h1")).accepted == 1
        writer = Writer(holder, sandbox="held", dataset_pk=dataset, kind="event")
        assert writer.serialize()
        started = time.monotonic()
        with postgres_engine.begin() as c:
            answer = service.ingest_records(connection=c, sandbox="held", dataset_id=dataset, body={"records": [
                _event("shared", "x1"), _event("alone", "x2")]})
        waited = time.monotonic() - started
        assert 1.4 < waited < 1.5 + 5, waited  # the deadline, not the holder's commit
        assert answer.accepted == 0 and answer.rejected == 2
        assert all(r.errors[0].message.startswith("conflict:") for r in answer.results), answer.results
        holding.commit()
    with postgres_engine.begin() as c:
        stored = set(c.execute(sa.select(events.c.event_id).where(events.c.dataset_pk == dataset)).scalars())
        assert stored == {"h1"}, "a rejected record was stored"
        # sent again once the other writer is done: accepted, linked to its profile
        again = service.ingest_records(connection=c, sandbox="held", dataset_id=dataset, body={"records": [
            _event("shared", "x1"), _event("alone", "x2")]})
        assert again.accepted == 2
