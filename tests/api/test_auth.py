"""Every endpoint needs a key (except health and the docs) and declares its roles; the list of
endpoints comes from the app itself, so a new endpoint cannot be forgotten."""

from __future__ import annotations

import hashlib
import re

import pytest
import sqlalchemy as sa

from tests.api.conftest import ADMIN_KEY, ROLES, assert_error

PUBLIC = {("GET", "/healthz")} | {  # the analytics SDKs' tracking API: a source's write key (tests/api/test_sources_tracking.py)
    ("POST", f"/sources/segment/v1/{call}") for call in ("batch", "import", "identify", "track", "page", "screen",
                                                         "group", "alias")}
PATH_VALUES = {"dataset_id": "1", "key_id": "abcdef123456", "batch_id": "1", "code": "loyalty_card",
               "profile_id": "p-unknown", "key": "some-segment", "job_id": "1", "name": "C2", "policy_id": "1",
               "source_id": "1", "run_id": "1", "destination_id": "1", "activation_id": "1", "delivery_id": "1"}


def _endpoints(app):
    from cdp.api.deps import endpoints

    found = endpoints(app)
    assert len(found) >= 15, "the endpoint list went quiet: FastAPI's route plumbing changed?"
    return found


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def _call(api, endpoint, **kwargs):
    body = {"json": {}} if endpoint.method in ("POST", "PUT", "PATCH") else {}
    return api.request(endpoint.method, _url(endpoint.path), **body, **kwargs)


def test_every_endpoint_but_health_declares_its_roles(api):
    for endpoint in _endpoints(api.app):
        if (endpoint.method, endpoint.path) in PUBLIC:
            assert endpoint.roles is None
        else:
            assert endpoint.roles, f"{endpoint.method} {endpoint.path} declares no roles (use cdp.api.deps.require)"
            assert "admin" in endpoint.roles, f"{endpoint.method} {endpoint.path}: admin may do everything"


def test_missing_invalid_and_malformed_keys_are_401_everywhere(api):
    bad_keys = {
        None: "missing_api_key",
        "cdp_abcdef123456_" + "x" * 43: "invalid_api_key",  # well-formed, unknown
        ADMIN_KEY[:-1] + "B": "invalid_api_key",  # known id, wrong secret
        "not-a-key": "invalid_api_key",
    }
    for endpoint in _endpoints(api.app):
        if (endpoint.method, endpoint.path) in PUBLIC:
            continue
        for key, code in bad_keys.items():
            response = _call(api, endpoint, role=None, key=key or "")
            error = assert_error(response, 401, code)
            assert response.headers["WWW-Authenticate"] == "Bearer", (endpoint, error)


def test_roles_not_allowed_are_403_and_allowed_ones_pass(api):
    for endpoint in _endpoints(api.app):
        if endpoint.roles is None:
            continue
        for role in ROLES:
            response = _call(api, endpoint, role=role)
            if role in endpoint.roles:
                assert response.status_code not in (401, 403), (endpoint.method, endpoint.path, role, response.text)
            else:
                error = assert_error(response, 403, "forbidden")
                assert error["details"]["role"] == role
                assert set(error["details"]["allowed_roles"]) == {r.value for r in endpoint.roles}


def test_declared_roles(api):
    roles = {(e.method, e.path): {r.value for r in e.roles} for e in _endpoints(api.app) if e.roles}
    everyone = set(ROLES)
    stewards = {"admin", "data_steward"}
    assert roles[("POST", "/v1/expressions/check")] == everyone
    assert roles[("POST", "/v1/profiles/evaluate")] == everyone
    assert roles[("GET", "/v1/schema")] == everyone
    assert roles[("GET", "/v1/me")] == everyone
    assert roles[("PUT", "/v1/schema")] == stewards
    assert roles[("POST", "/v1/datasets")] == stewards
    assert roles[("PATCH", "/v1/datasets/{dataset_id}")] == stewards
    assert roles[("DELETE", "/v1/datasets/{dataset_id}")] == stewards
    assert roles[("GET", "/v1/datasets")] == everyone
    for method, path in [("POST", "/v1/datasets/{dataset_id}/batches"), ("GET", "/v1/datasets/{dataset_id}/batches"),
                         ("GET", "/v1/batches/{batch_id}"), ("GET", "/v1/batches/{batch_id}/errors"),
                         ("POST", "/v1/batches/{batch_id}/retry")]:
        assert roles[(method, path)] == stewards, (method, path)
    for (method, path), allowed in roles.items():
        if path.startswith("/v1/keys"):
            assert allowed == {"admin"}, (method, path)


@pytest.mark.parametrize("role", ROLES)
def test_a_key_reads_itself(api, role):
    me = api.get("/v1/me", role=role)
    assert me.status_code == 200, me.text
    assert me.json()["role"] == role and "key" not in me.json()


def test_created_key_is_shown_once_and_stored_hashed(api):
    response = api.post("/v1/keys", json={"name": "crm sync", "role": "data_steward"})
    assert response.status_code == 201
    created = response.json()
    key = created["key"]
    assert re.fullmatch(r"cdp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key)
    assert key.split("_")[1] == created["id"]
    assert created["sandbox"] == api.sandbox and created["role"] == "data_steward"
    read = api.get(f"/v1/keys/{created['id']}").json()
    assert "key" not in read and key not in api.get("/v1/keys").text
    from cdp.storage.models import api_keys

    with api.app.state.engine.connect() as connection:
        row = connection.execute(sa.select(api_keys).where(api_keys.c.key_id == created["id"])).one()
    assert row.secret_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in [str(v) for v in row]
    assert api.get("/v1/datasets", key=key).status_code == 200


def test_revoked_key_is_refused(api):
    created = api.post("/v1/keys", json={"name": "temp", "role": "reader"}).json()
    assert api.get("/v1/schema", key=created["key"]).status_code == 200
    assert api.delete(f"/v1/keys/{created['id']}").status_code == 204
    assert_error(api.get("/v1/schema", key=created["key"]), 401, "invalid_api_key")
    assert api.get(f"/v1/keys/{created['id']}").json()["revoked_at"] is not None
    assert api.delete(f"/v1/keys/{created['id']}").status_code == 204  # idempotent


def test_sandbox_bound_key_is_refused_in_other_sandboxes(api):
    created = api.post("/v1/keys", json={"name": "bound", "role": "admin"}).json()
    assert created["sandbox"] == api.sandbox
    assert api.get("/v1/schema", key=created["key"]).status_code == 200
    error = assert_error(api.get("/v1/schema", key=created["key"], sandbox="prod"), 403, "sandbox_forbidden")
    assert error["details"] == {"key_sandbox": api.sandbox, "sandbox": "prod"}
    # …nor can it mint keys valid everywhere, or revoke one
    assert_error(api.post("/v1/keys", key=created["key"], json={"name": "x", "role": "admin", "all_sandboxes": True}),
                 403, "sandbox_forbidden")
    everywhere = api.post("/v1/keys", json={"name": "global", "role": "reader", "all_sandboxes": True}).json()
    assert everywhere["sandbox"] is None
    assert_error(api.delete(f"/v1/keys/{everywhere['id']}", key=created["key"]), 403, "forbidden")
    assert api.delete(f"/v1/keys/{everywhere['id']}").status_code == 204


def test_last_admin_key_valid_everywhere_cannot_be_revoked(api):
    from cdp.storage.models import api_keys

    with api.app.state.engine.connect() as connection:
        admins = connection.execute(sa.select(api_keys.c.key_id).where(
            api_keys.c.role == "admin", api_keys.c.sandbox.is_(None), api_keys.c.revoked_at.is_(None))).scalars().all()
    assert admins == [ADMIN_KEY.split("_")[1]]
    assert_error(api.delete(f"/v1/keys/{admins[0]}"), 409, "last_admin_key")


def test_key_creation_validates_input(api):
    assert_error(api.post("/v1/keys", json={"name": "x", "role": "owner"}), 422, "validation_error")
    assert_error(api.post("/v1/keys", json={"role": "reader"}), 422, "validation_error")
    assert_error(api.post("/v1/keys", json={"name": "x", "role": "reader", "secret": "mine"}), 422, "validation_error")


def test_keys_listing_pages(api):
    for n in range(3):
        api.post("/v1/keys", json={"name": f"k{n}", "role": "reader"})
    page = api.get("/v1/keys", params={"limit": 2}).json()
    assert page["limit"] == 2 and page["offset"] == 0 and len(page["items"]) == 2
    assert page["total"] >= 3 + 4  # this sandbox's three, and the keys valid everywhere
    mine = [k for k in api.get("/v1/keys", params={"limit": 500}).json()["items"] if k["sandbox"] == api.sandbox]
    assert sorted(k["name"] for k in mine) == ["k0", "k1", "k2"]
    assert_error(api.get("/v1/keys", params={"limit": 0}), 422, "validation_error")
    assert_error(api.get("/v1/keys/nosuchkey00"), 404, "not_found")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer  ", "Token " + ADMIN_KEY])
def test_other_authorization_schemes_are_401(api, header):
    response = api.get("/v1/schema", role=None, headers={"Authorization": header})
    assert_error(response, 401)


def test_key_revoked_elsewhere_stops_working_within_the_cache_time(api, engine, monkeypatch):
    """A key that authenticated is remembered for KEY_CACHE_SECONDS (no key row read per request);
    revoked by another process (here: an UPDATE on the database, which this process does not see),
    it is refused once that time has passed — and at once when revoked through this process."""
    from cdp.auth import service
    from cdp.storage.models import api_keys

    now = [1_000_000.0]
    monkeypatch.setattr(service, "_clock", lambda: now[0])
    elsewhere = api.post("/v1/keys", json={"name": "revoked elsewhere", "role": "reader"}).json()
    here = api.post("/v1/keys", json={"name": "revoked here", "role": "reader"}).json()
    for created in (elsewhere, here):
        assert api.get("/v1/schema", key=created["key"]).status_code == 200  # authenticated: remembered
    with engine.begin() as connection:
        connection.execute(api_keys.update().where(api_keys.c.key_id == elsewhere["id"])
                           .values(revoked_at=sa.func.current_timestamp()))
    assert api.delete(f"/v1/keys/{here['id']}").status_code == 204
    assert_error(api.get("/v1/schema", key=here["key"]), 401, "invalid_api_key")
    now[0] += service.KEY_CACHE_SECONDS - 0.1
    assert api.get("/v1/schema", key=elsewhere["key"]).status_code == 200  # not seen yet: at most this long
    now[0] += 0.2
    assert_error(api.get("/v1/schema", key=elsewhere["key"]), 401, "invalid_api_key")
