"""The server is killed (SIGKILL) in the middle of webhook deliveries, on SQLite and PostgreSQL,
then started again on the same database: every membership change made before the kill reaches
the receiver at least once, none is lost, and each profile's changes arrive in order.

A real `cdp serve` subprocess and a real receiver on a local port, which answers slowly so that
the kill finds deliveries made, some sent and some not yet (the test checks that before
killing), usually one on its way."""

from __future__ import annotations

import time

import httpx2 as httpx
import pytest

from tests.api.test_server import KEY, Server, _environment
from tests.receiver import Receiver

SECRET = "kill-test-secret-0123456789"
PEOPLE = 60


def _call(server: Server, key: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.base + path, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                         **kwargs)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_mid_delivery_then_restart(backend, request, sqlite_url_factory, tmp_path):
    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    env = _environment(url, CDP_ACTIVATION_BATCH_SIZE="3", CDP_ACTIVATION_BACKOFF_SECONDS="0.05",
                       CDP_ACTIVATION_MAX_BACKOFF_SECONDS="0.2")
    receiver = Receiver(SECRET)
    receiver.delay = 0.05
    first = Server(url, tmp_path / "first.log", env=env)
    second = None
    try:
        [key] = KEY.findall(first.stderr)
        crm = _call(first, key, "POST", "/v1/datasets", json={"name": "CRM", "kind": "profile"}).json()["id"]
        assert _call(first, key, "POST", "/v1/segments", json={
            "key": "gold", "name": "Gold", "expression": 'loyalty.tier = "gold"', "evaluation": "streaming"}
                     ).status_code == 201
        destination = _call(first, key, "POST", "/v1/destinations", json={
            "name": "hook", "type": "webhook", "marketing_actions": ["email_targeting"],
            "config": {"url": receiver.url, "secret": SECRET}}).json()["id"]
        assert _call(first, key, "POST", "/v1/activations", json={
            "segment": "gold", "destination": destination, "identities": ["crm_id"]}).status_code == 201

        def tier(people, value):
            records = [{"identities": [{"namespace": "crm_id", "id": f"C-{n}"}],
                        "attributes": {"loyalty": {"tier": value}}} for n in people]
            assert _call(first, key, "POST", f"/v1/datasets/{crm}/records",
                         json={"records": records}).status_code == 200

        for start in range(0, PEOPLE, 10):
            tier(range(start, start + 10), "gold")  # 60 entries
        tier(range(0, PEOPLE, 2), "silver")  # 30 exits
        expected = {(f"C-{n}", "entered") for n in range(PEOPLE)} | {(f"C-{n}", "exited")
                                                                      for n in range(0, PEOPLE, 2)}
        # kill once some deliveries have arrived and others have not
        receiver.wait(lambda: len(receiver.posts) >= 5)
        log = _call(first, key, "GET", f"/v1/destinations/{destination}/deliveries?limit=500").json()["items"]
        assert any(d["status"] == "pending" for d in log), "every delivery was sent before the kill"
        first.kill()
        before_restart = len(receiver.changes())
        assert before_restart < len(expected)

        second = Server(url, tmp_path / "second.log", env=env)
        receiver.wait(lambda: {(c["identities"]["crm_id"][0], c["status"]) for c in receiver.changes()} >= expected,
                      timeout=60)
        got = [(c["identities"]["crm_id"][0], c["status"]) for c in receiver.changes()]
        assert set(got) == expected
        for n in range(0, PEOPLE, 2):  # in order per profile: the entry before the exit
            assert got.index((f"C-{n}", "entered")) < got.index((f"C-{n}", "exited"))
        assert receiver.bad_signatures == 0
        # the receiver has every change; the last answer's "delivered" may still be on its way to the database
        deadline = time.monotonic() + 30
        while True:
            log = _call(second, key, "GET", f"/v1/destinations/{destination}/deliveries?limit=500").json()["items"]
            if {d["status"] for d in log} == {"delivered"} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {d["status"] for d in log} == {"delivered"}, [d for d in log if d["status"] != "delivered"]
        assert "Traceback" not in second.stderr
    finally:
        first.stop() if first.process.poll() is None else None
        if second is not None:
            second.stop()
        receiver.stop()
