"""A realistic session against a real `cdp serve --demo` at log level debug — lookups by email,
streamed records and a batch file holding emails, profile searches, key creation and use, the
tracking API with a write key, refused keys, a privacy deletion, a conflict, a malformed body —
then the server's whole log (stdout and stderr) is searched for every email of the demo data
and every key and write key used: none may appear (the access log keeps query parameters' names
only: cdp/api/access_log.py; SQL errors carry no bound values: cdp/storage/database.py)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from pathlib import Path

import httpx2 as httpx

from tests.api.test_server import CDP, _free_port

ADMIN = "cdp_logtestadmin_" + "S" * 40


def _demo_emails() -> set[str]:
    from cdp.demo.seed import demo_documents

    emails = set()
    for document in demo_documents(1000):
        for identity in document.get("identities") or []:
            if identity["namespace"] == "email":
                emails.add(identity["id"].lower())
        email = (document.get("attributes") or {}).get("email")
        if email:
            emails.add(email.lower())
    return emails


def test_a_full_session_leaves_no_email_and_no_key_in_the_log(tmp_path: Path):
    emails = _demo_emails()
    assert len(emails) >= 100, "the demo data should hold emails to look for"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_") or k == "CDP_PG_BIN"}
    env |= {"CDP_DATA_DIR": str(tmp_path / "var"), "CDP_BOOTSTRAP_ADMIN_KEY": ADMIN}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([CDP, "serve", "--demo", "--port", str(port), "--log-level", "debug"],
                                   cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    secrets = {ADMIN}
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        some = sorted(emails)[:20]
        with httpx.Client(base_url=base, headers=admin, timeout=60) as client:
            for email in some[:10]:  # lookups by email: the identity in the query string
                assert client.get("/v1/profiles/lookup", params={"namespace": "email", "id": email.upper()}
                                  ).status_code in (200, 404)
                client.get("/v1/profiles", params={"q": email, "limit": 5})
            datasets = {d["kind"]: d["id"] for d in client.get("/v1/datasets").json()["items"]}
            streamed = client.post(f"/v1/datasets/{datasets['profile']}/records", json={"records": [
                {"identities": [{"namespace": "email", "id": email}], "attributes": {"email": email}}
                for email in some[10:15]] + [{"identities": [{"namespace": "email", "id": some[15]}],
                                              "attributes": {"email": 42}}]})  # one rejected: its value is reported
            assert streamed.status_code in (200, 207), streamed.text
            rows = "email\n" + "\n".join(some[16:18]) + "\nnot-an-email\n"
            batch = client.post(f"/v1/datasets/{datasets['profile']}/batches", files={
                "file": ("contacts.csv", rows.encode(), "text/csv")}, data={
                "mapping": '{"email": {"to": "identity.email", "transforms": ["trim", "lower"]}}',
                "max_rejected_fraction": "0.5"})
            assert batch.status_code == 202, batch.text
            while client.get(f"/v1/batches/{batch.json()['id']}").json()["status"] in ("queued", "processing"):
                time.sleep(0.1)
            client.get(f"/v1/batches/{batch.json()['id']}/errors")
            key = client.post("/v1/keys", json={"name": "crm", "role": "data_steward"}).json()["key"]
            secrets.add(key)
            assert client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
            wrong = key[:-3] + "zzz"
            secrets.add(wrong)
            assert client.get("/v1/me", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
            source = client.post("/v1/sources", json={"name": "web", "type": "tracking_api", "datasets": {
                "profile": datasets["profile"], "event": datasets["event"]}}).json()
            secrets.add(source["write_key"])
            basic = "Basic " + base64.b64encode(f"{source['write_key']}:".encode()).decode()
            tracked = client.post("/sources/segment/v1/identify", headers={"Authorization": basic}, json={
                "userId": "u-1", "traits": {"email": some[18]}, "messageId": "m-1",
                "timestamp": "2026-11-28T12:00:00Z"})
            assert tracked.status_code == 200, tracked.text
            bad_write_key = "wk_" + "q" * 40
            secrets.add(bad_write_key)
            client.post("/sources/segment/v1/track", headers={"Authorization": "Basic " + base64.b64encode(
                f"{bad_write_key}:".encode()).decode()}, json={"userId": "u", "event": "x"})
            client.post("/v1/expressions/check", json={"expression": f'email = "{some[19]}" and'})
            client.post("/v1/datasets", content=f'{{"name": "{some[0]}"', headers={"content-type": "application/json"})
            client.post("/v1/datasets", json={"name": "CRM contacts", "kind": "profile"})  # a conflict
            deleted = client.request("DELETE", "/v1/profiles/lookup", params={"namespace": "email", "id": some[1]})
            assert deleted.status_code in (200, 202, 204, 404), deleted.text
            assert client.get("/metrics").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert '"GET /v1/profiles/lookup?namespace=…&id=… HTTP/1.1" 200' in text, "the access log was not written"
    lowered = text.lower()
    leaked = sorted(e for e in emails if e in lowered)
    assert not leaked, f"emails in the log: {leaked[:5]}"
    assert not [s for s in secrets if s in text], "a key or write key is in the log"
    assert not re.search(r"cdp_[a-z0-9]{8,32}_[A-Za-z0-9_-]{20,}", text), "something like a key is in the log"
