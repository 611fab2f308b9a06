"""Datasets CRUD with data-usage labels."""

from __future__ import annotations

from tests.api.conftest import assert_error

CRM = {"name": "CRM contacts", "kind": "profile", "description": "Nightly CRM export",
       "labels": ["C2", "C2", "PARTNER_ONLY", "C12"],
       "field_labels": {"email": ["I1"], "person.birth_date": ["S1", "C9"], "phone": ["I1"]}}


def test_create_read_update_delete(api):
    response = api.post("/v1/datasets", role="data_steward", json=CRM)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "CRM contacts" and created["kind"] == "profile"
    assert created["labels"] == ["C12", "C2", "PARTNER_ONLY"]  # sorted, without duplicates
    assert created["field_labels"] == {"email": ["I1"], "person.birth_date": ["C9", "S1"], "phone": ["I1"]}
    path = f"/v1/datasets/{created['id']}"
    assert api.get(path, role="reader").json() == created

    updated = api.patch(path, json={"labels": ["C4"], "description": None}).json()
    assert updated["labels"] == ["C4"] and updated["description"] is None
    assert updated["name"] == "CRM contacts" and updated["field_labels"] == created["field_labels"]
    assert updated["updated_at"] >= created["updated_at"] and updated["created_at"] == created["created_at"]
    renamed = api.patch(path, json={"name": "CRM", "field_labels": {}}).json()
    assert renamed["name"] == "CRM" and renamed["field_labels"] == {} and renamed["labels"] == ["C4"]

    assert api.delete(path).status_code == 204
    assert_error(api.get(path), 404, "not_found")
    assert_error(api.delete(path), 404, "not_found")


def test_event_datasets_label_event_fields(api):
    web = {"name": "Web events", "kind": "event", "labels": ["C5"],
           "field_labels": {"page.url": ["C6"], "device.type": ["C5"], "timestamp": ["C1"]}}
    created = api.post("/v1/datasets", json=web)
    assert created.status_code == 201, created.text
    # a profile attribute is not a field of an event dataset
    error = assert_error(api.post("/v1/datasets", json={**web, "name": "x", "field_labels": {"email": ["I1"]}}),
                         422, "invalid_labels")
    assert "'email' is not an event field" in error["message"]


def test_labels_are_validated(api):
    error = assert_error(api.post("/v1/datasets", json={**CRM, "labels": ["C2", "bad label", ""],
                                                          "field_labels": {"emial": ["I1"], "phone": ["1x"]}}),
                         422, "invalid_labels")
    problems = error["details"]["errors"]
    assert len(problems) == 4
    assert any("did you mean 'email'" in p for p in problems)
    assert api.get("/v1/datasets").json()["total"] == 0


def test_names_are_unique_per_sandbox(api):
    assert api.post("/v1/datasets", json=CRM).status_code == 201
    error = assert_error(api.post("/v1/datasets", json={**CRM, "kind": "event", "field_labels": {}}), 409,
                         "dataset_exists")
    assert error["details"] == {"name": "CRM contacts", "sandbox": api.sandbox}
    other = api.post("/v1/datasets", json={"name": "Loyalty", "kind": "profile"}).json()
    assert_error(api.patch(f"/v1/datasets/{other['id']}", json={"name": "CRM contacts"}), 409, "dataset_exists")
    assert api.patch(f"/v1/datasets/{other['id']}", json={"name": "Loyalty"}).status_code == 200  # its own name


def test_kind_never_changes_and_input_is_checked(api):
    created = api.post("/v1/datasets", json=CRM).json()
    path = f"/v1/datasets/{created['id']}"
    assert_error(api.patch(path, json={"kind": "event"}), 422, "validation_error")
    assert_error(api.patch(path, json={"name": None}), 422, "validation_error")
    assert_error(api.post("/v1/datasets", json={"name": "x", "kind": "table"}), 422, "validation_error")
    assert_error(api.post("/v1/datasets", json={"name": "", "kind": "event"}), 422, "validation_error")
    assert_error(api.post("/v1/datasets", json={"name": "x" * 257, "kind": "event"}), 422, "validation_error")
    assert_error(api.post("/v1/datasets", json={"name": "nul\u0000", "kind": "event"}), 422, "validation_error")
    assert_error(api.get("/v1/datasets/abc"), 422, "validation_error")
    assert_error(api.get("/v1/datasets/0"), 422, "validation_error")
    assert_error(api.get(f"/v1/datasets/{2**63}"), 422, "validation_error")
    assert_error(api.get(f"/v1/datasets/{2**63 - 1}"), 404, "not_found")


def test_list_pages_and_filters(api):
    for n in range(5):
        api.post("/v1/datasets", json={"name": f"d{n}", "kind": "profile" if n % 2 else "event"})
    page = api.get("/v1/datasets", params={"limit": 2, "offset": 1}).json()
    assert [d["name"] for d in page["items"]] == ["d1", "d2"] and page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 1)
    events = api.get("/v1/datasets", params={"kind": "event"}).json()
    assert [d["name"] for d in events["items"]] == ["d0", "d2", "d4"] and events["total"] == 3
    assert_error(api.get("/v1/datasets", params={"limit": 501}), 422, "validation_error")
    assert_error(api.get("/v1/datasets", params={"offset": -1}), 422, "validation_error")
    assert_error(api.get("/v1/datasets", params={"kind": "table"}), 422, "validation_error")
