"""Webhook delivery when the receiver misbehaves, on SQLite and PostgreSQL, with a real receiver on
a local port: down, slow (past the timeout), answering 500, answering 200 twice for the same
delivery. Nothing is lost: every change is retried (backoff with jitter), dead after the limit,
visible in the delivery log, sent again by redelivery; a profile's changes arrive in order, and
a receiver that hangs does not hold up ingestion.

The service runs with a short backoff, a short timeout and 3 attempts (its settings, from the
environment), on a database of its own."""

from __future__ import annotations

import threading
import time

import pytest

from tests.api.conftest import ADMIN_KEY, Api, assert_error, make_settings, new_sandbox
from tests.api.conftest import create_dataset as _dataset
from tests.receiver import Receiver, free_port

SECRET = "failures-secret-0123456789"
FAST = {"CDP_ACTIVATION_MAX_ATTEMPTS": "3", "CDP_ACTIVATION_BACKOFF_SECONDS": "0.05",
        "CDP_ACTIVATION_MAX_BACKOFF_SECONDS": "0.2", "CDP_ACTIVATION_TIMEOUT_SECONDS": "0.5"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request, sqlite_url_factory):
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    patch = pytest.MonkeyPatch()
    for name, value in FAST.items():
        patch.setenv(name, value)
    app = create_app(make_settings(url))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    patch.undo()


@pytest.fixture
def api(service) -> Api:
    api = Api(service, {"admin": ADMIN_KEY})
    api.sandbox = new_sandbox(api, "f")
    return api


def _setup(api, url: str) -> tuple[int, int]:
    """A streaming segment of gold members activated to a webhook at ``url``; the profile
    dataset's id and the destination's."""
    crm = _dataset(api, "profile", "CRM")
    assert api.post("/v1/segments", json={"key": "gold", "name": "Gold", "expression": 'loyalty.tier = "gold"',
                                          "evaluation": "streaming"}).status_code == 201
    destination = api.post("/v1/destinations", json={
        "name": "hook", "type": "webhook", "marketing_actions": ["email_targeting"],
        "config": {"url": url, "secret": SECRET}}).json()["id"]
    response = api.post("/v1/activations", json={"segment": "gold", "destination": destination,
                                                 "identities": ["crm_id"], "attributes": ["loyalty.tier"]})
    assert response.status_code == 201, response.text
    return crm, destination


def _tier(api, crm: int, people: range | list[int], tier: str) -> None:
    records = [{"identities": [{"namespace": "crm_id", "id": f"C-{n}"}], "attributes": {"loyalty": {"tier": tier}}}
               for n in people]
    response = api.post(f"/v1/datasets/{crm}/records", json={"records": records})
    assert response.status_code == 200, response.text


def _log(api, destination: int) -> list[dict]:
    return api.get(f"/v1/destinations/{destination}/deliveries?limit=500").json()["items"]


def _until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def _expected(changes: list[dict]) -> set[tuple]:
    return {(c["identities"]["crm_id"][0], c["status"]) for c in changes}


def test_receiver_down_dead_letters_then_redelivery(api):
    port = free_port()
    crm, destination = _setup(api, f"http://127.0.0.1:{port}/hook")
    _tier(api, crm, range(5), "gold")
    receiver = None
    try:
        _until(lambda: _log(api, destination) and all(d["status"] == "dead" for d in _log(api, destination)))
        [dead] = _log(api, destination)
        assert dead["attempts"] == 3 and dead["response_status"] is None and "Connection" in dead["error"]
        assert [d["id"] for d in api.get(f"/v1/destinations/{destination}/deliveries?status=dead").json()["items"]] \
            == [dead["id"]]
        # the receiver comes up: the dead letter is sent again on request, same delivery id
        receiver = Receiver(SECRET, port=port)
        assert api.post(f"/v1/destinations/{destination}/redeliver", json={}).json() == {"requeued": 1}
        receiver.wait(lambda: len(receiver.changes()) == 5)
        assert receiver.accepted()[0]["delivery_id"] == dead["id"]
        assert _expected(receiver.changes()) == {(f"C-{n}", "entered") for n in range(5)}
        # the receiver has the request before the sender has its answer and records it: wait for the log
        _until(lambda: _log(api, destination)[0]["status"] == "delivered")
        assert api.post(f"/v1/destinations/{destination}/redeliver", json={}).json() == {"requeued": 0}
        assert_error(api.post(f"/v1/destinations/{destination}/redeliver", json={"delivery_id": "nope"}), 404)
    finally:
        if receiver is not None:
            receiver.stop()


def test_500_then_success_keeps_each_profile_in_order(api):
    receiver = Receiver(SECRET)
    answers = iter([500, 503])
    receiver.answer = lambda body: next(answers, 200)
    try:
        crm, destination = _setup(api, receiver.url)
        _tier(api, crm, [1], "gold")
        _tier(api, crm, [1], "silver")  # her exit, made while her entry is still being retried
        _tier(api, crm, [1], "gold")
        receiver.wait(lambda: len(receiver.changes()) == 3)
        assert [c["status"] for c in receiver.changes()] == ["entered", "exited", "entered"]
        statuses = [p["status"] for p in receiver.posts]
        assert statuses[:3] == [500, 503, 200]
        _until(lambda: _log(api, destination)[-1]["status"] in ("delivered", "dead"))  # the sender records the 200 after it
        first = _log(api, destination)[-1]
        assert (first["status"], first["attempts"], first["response_status"]) == ("delivered", 3, 200)
        assert receiver.bad_signatures == 0
    finally:
        receiver.stop()


def test_slow_receiver_gets_the_delivery_twice_and_keeps_it_once(api):
    """Past the timeout the attempt counts as failed and is retried with the same delivery id;
    the receiver, which did take the first, deduplicates."""
    receiver = Receiver(SECRET)
    receiver.delays = [1.0]  # the first POST is answered after the sender's timeout (0.5 s)
    try:
        crm, destination = _setup(api, receiver.url)
        _tier(api, crm, range(3), "gold")
        receiver.wait(lambda: len(receiver.posts) == 2)
        ids = [p["body"]["delivery_id"] for p in receiver.posts]
        assert [p["status"] for p in receiver.posts] == [200, 200] and len(set(ids)) == 1  # one delivery, twice
        assert len(receiver.changes()) == 3
        _until(lambda: _log(api, destination)[0]["status"] in ("delivered", "dead"))  # recorded after the answer arrives
        [delivery] = _log(api, destination)
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
    finally:
        receiver.stop()


def test_a_hanging_receiver_does_not_hold_up_ingestion(api):
    gate = threading.Event()
    receiver = Receiver(SECRET)

    def hang(body):
        gate.wait(10)
        return 200

    receiver.answer = hang
    try:
        crm, destination = _setup(api, receiver.url)
        _tier(api, crm, [1], "gold")
        receiver.wait(lambda: len(receiver.posts) == 0 and _log(api, destination) != [])
        time.sleep(0.2)  # the POST is on its way to the receiver, which holds it
        # while a POST is held by the receiver, records are ingested and answered
        for n in range(2, 12):
            _tier(api, crm, [n], "gold")
        assert api.get("/v1/segments/gold").json()["size"] == 11
        gate.set()
        receiver.wait(lambda: len({c["identities"]["crm_id"][0] for c in receiver.changes()}) == 11)
    finally:
        gate.set()
        receiver.stop()
