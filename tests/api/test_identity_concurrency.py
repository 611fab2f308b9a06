"""Merges under concurrent ingestion, against a real `cdp serve` (SQLite and PostgreSQL): requests
that link the same identities at the same moment end in one profile, and no event is lost."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tests.api.test_server import KEY, Server

CLIENTS = 8


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, sqlite_url_factory, tmp_path_factory):
    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    server = Server(url, tmp_path_factory.mktemp("serve") / "stderr.log")
    [key] = KEY.findall(server.stderr)
    yield server, key, url
    server.stop()


def _send_together(server: Server, headers: dict, dataset: int, bodies: list[dict]) -> list[dict]:
    """POST every body at the same moment, one client each; every answer must be 200."""
    barrier = threading.Barrier(len(bodies))

    def send(body: dict) -> dict:
        with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client:
            barrier.wait()
            response = client.post(f"/v1/datasets/{dataset}/records", json=body)
        assert response.status_code == 200, f"{response.text}\n{server.stderr[-4000:]}"
        return response.json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _profiles_and_events(url: str, sandbox: str) -> tuple[dict, dict]:
    """identity → profile key, and profile key → event ids, read from the database."""
    from cdp.storage.database import create_engine
    from cdp.storage.models import events, identities, profiles

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            owner = {f"{r.namespace}:{r.value}": r.profile_pk for r in connection.execute(
                sa.select(identities).where(identities.c.sandbox == sandbox))}
            stored: dict[int, list[str]] = {}
            for r in connection.execute(sa.select(events.c.profile_pk, events.c.event_id)
                                        .join(profiles, profiles.c.pk == events.c.profile_pk)
                                        .where(profiles.c.sandbox == sandbox)):
                stored.setdefault(r.profile_pk, []).append(r.event_id)
    finally:
        engine.dispose()
    return owner, stored


def _setup(server, key) -> tuple[dict, int, str]:
    sandbox = f"c-{uuid.uuid4().hex[:10]}"
    created = httpx.post(server.base + "/v1/sandboxes", json={"name": sandbox}, headers={"Authorization": f"Bearer {key}"})
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {key}", "X-Sandbox": sandbox}
    response = httpx.post(server.base + "/v1/datasets", json={"name": "Web", "kind": "event"}, headers=headers)
    assert response.status_code == 201, response.text
    return headers, response.json()["id"], sandbox


def _event(event_id: str, *identities: tuple[str, str]) -> dict:
    return {"identities": [{"namespace": ns, "id": value} for ns, value in identities],
            "event": {"id": event_id, "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}


def test_concurrent_requests_linking_the_same_identities_make_one_profile(served):
    server, key, url = served
    headers, dataset, sandbox = _setup(server, key)
    rounds = 6
    for n in range(rounds):
        cookie, email, crm = ("ecid", f"c{n}"), ("email", f"p{n}@example.com"), ("crm_id", f"K{n}")
        shapes = [(cookie,), (cookie, email), (email, crm), (crm,), (cookie, crm), (email,), (crm, cookie),
                  (email, cookie, crm)]
        answers = _send_together(server, headers, dataset,
                                 [_event(f"r{n}-{i}", *shape) for i, shape in enumerate(shapes[:CLIENTS])])
        assert all(a["accepted"] == 1 for a in answers), answers
    owner, stored = _profiles_and_events(url, sandbox)
    for n in range(rounds):
        linked = {owner[f"ecid:c{n}"], owner[f"email:p{n}@example.com"], owner[f"crm_id:K{n}"]}
        assert len(linked) == 1, f"round {n}: the identities ended in {len(linked)} profiles"
        assert sorted(stored[linked.pop()]) == sorted(f"r{n}-{i}" for i in range(CLIENTS)), "an event was lost"
    assert len(stored) == rounds


def test_concurrent_merges_of_existing_profiles_lose_no_events(served):
    server, key, url = served
    headers, dataset, sandbox = _setup(server, key)
    # four separate profiles, each with events of its own
    people = [("ecid", f"solo-{i}") for i in range(4)]
    for i, identity in enumerate(people):
        _send_together(server, headers, dataset, [_event(f"before-{i}-{j}", identity) for j in range(2)])
    owner, _ = _profiles_and_events(url, sandbox)
    assert len({owner[f"{ns}:{value}"] for ns, value in people}) == 4
    # eight requests at once, each linking two of them (every pair chain covers all four)
    pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3), (0, 1), (2, 3)]
    bodies = [{"records": [_event(f"link-{k}", people[a], people[b]),
                           _event(f"again-{k}", people[b], ("email", "same@example.com"))]}
              for k, (a, b) in enumerate(pairs)]
    answers = _send_together(server, headers, dataset, bodies)
    assert all(a["accepted"] == 2 for a in answers), [r for a in answers for r in a["results"] if r["status"] != "accepted"]
    owner, stored = _profiles_and_events(url, sandbox)
    assert len(set(owner.values())) == 1, "concurrent merges left more than one profile"
    [events_of_the_one] = stored.values()
    expected = {f"before-{i}-{j}" for i in range(4) for j in range(2)} | {f"link-{k}" for k in range(8)} | {
        f"again-{k}" for k in range(8)}
    assert sorted(events_of_the_one) == sorted(expected)
