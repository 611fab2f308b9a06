"""The OpenAPI document says exactly what the service accepts: requests the document allows are
not refused for their shape, requests it forbids are refused, and 405s name the methods the
document lists. (tests/api/test_openapi_fuzz.py does the same with generated requests against
a real server; these are the cases a fuzzer found, kept as plain tests.)"""

from __future__ import annotations

import jsonschema_rs
import pytest

from tests.api.conftest import assert_error, create_dataset


@pytest.fixture(scope="module")
def document(service):
    client, _keys = service
    return client.get("/openapi.json").json()


def allows(document: dict, schema: dict, value) -> bool:
    """Does ``schema`` (a part of the document, with its $refs) allow ``value``? Formats included."""
    root = {**schema, "components": document["components"]}
    return jsonschema_rs.validator_for(root, validate_formats=True).is_valid(value)


def body_schema(document: dict, method: str, path: str) -> dict:
    return document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def parameter_schema(document: dict, method: str, path: str, name: str) -> dict:
    [parameter] = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    return parameter["schema"]


def test_bodies_the_document_forbids_are_refused_and_those_it_allows_are_not(api, document):
    dataset = create_dataset(api, "profile")
    web = create_dataset(api, "event")
    cases = [  # method, template, path, body, does the document allow it
        ("patch", "/v1/datasets/{dataset_id}", f"/v1/datasets/{dataset}", {"field_labels": None}, False),
        ("patch", "/v1/datasets/{dataset_id}", f"/v1/datasets/{dataset}", {"labels": None}, False),
        ("patch", "/v1/datasets/{dataset_id}", f"/v1/datasets/{dataset}", {"field_labels": {}}, True),
        ("patch", "/v1/datasets/{dataset_id}", f"/v1/datasets/{dataset}", {"description": None}, True),
        ("post", "/v1/datasets", "/v1/datasets", {"name": "x", "kind": "event", "labels": ["not a label"]}, False),
        ("post", "/v1/datasets/{dataset_id}/records", f"/v1/datasets/{web}/records", None, False),
        ("post", "/v1/datasets/{dataset_id}/records", f"/v1/datasets/{web}/records", [], False),
        ("post", "/v1/datasets/{dataset_id}/records", f"/v1/datasets/{web}/records", {"records": []}, False),
        ("post", "/v1/datasets/{dataset_id}/records", f"/v1/datasets/{web}/records", {"records": [{}], "x": 1},
         False),
        ("post", "/v1/datasets/{dataset_id}/records", f"/v1/datasets/{web}/records", {"records": [{}]}, True),
        ("post", "/v1/datasets/{dataset_id}/records", f"/v1/datasets/{web}/records", {"records": [[], 1]}, True),
        ("post", "/v1/datasets/{dataset_id}/records", f"/v1/datasets/{web}/records", {"identities": []}, True),
        ("post", "/v1/profiles/evaluate", "/v1/profiles/evaluate", {"expression": "true", "profile": {}}, False),
        ("post", "/v1/profiles/evaluate", "/v1/profiles/evaluate", {"expression": "true", "profile": {"id": ""}},
         False),
        ("post", "/v1/profiles/evaluate", "/v1/profiles/evaluate", {"expression": "true", "profile": {"id": "p"},
                                                                    "as_of": 0}, False),
        ("post", "/v1/profiles/evaluate", "/v1/profiles/evaluate", {"expression": "true", "profile": {"id": "p"},
                                                                    "as_of": "2026-11-28"}, False),
        ("post", "/v1/profiles/evaluate", "/v1/profiles/evaluate", {"expression": "true", "profile": {"id": "p"},
                                                                    "as_of": "2026-11-28T12:00:00+01:00"}, True),
        ("post", "/v1/keys", "/v1/keys", {"name": "k", "role": "reader", "all_sandboxes": 0}, False),
        ("post", "/v1/keys", "/v1/keys", {"name": "k\u0000", "role": "reader"}, False),
        ("put", "/v1/identity/settings", "/v1/identity/settings", {"graph_limit": "50"}, False),
        ("put", "/v1/identity/settings", "/v1/identity/settings", {"graph_limit": True}, False),
        ("put", "/v1/identity/settings", "/v1/identity/settings", {"dataset_precedence": [0]}, False),
        ("put", "/v1/identity/settings", "/v1/identity/settings", {"graph_limit": 50.0}, True),
        ("post", "/v1/identity/namespaces", "/v1/identity/namespaces",
         {"code": "idfa", "name": "I\u0000", "kind": "device"}, False),
    ]
    for method, template, path, body, allowed in cases:
        assert allows(document, body_schema(document, method, template), body) is allowed, (method, path, body)
        response = api.request(method.upper(), path, json=body)
        if allowed:
            assert response.status_code < 400, (method, path, body, response.text)
        else:
            assert_error(response, 422, None)


def test_parameters_the_document_forbids_are_refused_and_those_it_allows_are_not(api, document):
    events = "/v1/profiles/{profile_id}/events"
    for value, allowed in (("0.0", False), ("0", False), ("2026-11-28", False), ("yesterday", False),
                           ("2026-11-28T12:00:00Z", True), ("2026-11-28T12:00:00.5+05:30", True)):
        for name in ("since", "until"):
            assert allows(document, parameter_schema(document, "get", events, name), value) is allowed, value
            response = api.get(f"/v1/profiles/p-nobody/events", params={name: value})
            assert_error(response, 404 if allowed else 422, "not_found" if allowed else "validation_error")
    # any namespace the document allows is looked up: one the sandbox lacks finds no profile
    lookup = parameter_schema(document, "get", "/v1/profiles/lookup", "namespace")
    for namespace in ("twitter", "é", "x" * 64):
        assert allows(document, lookup, namespace)
        assert_error(api.get("/v1/profiles/lookup", params={"namespace": namespace, "id": "a"}), 404, "not_found")
    search = parameter_schema(document, "get", "/v1/profiles", "q")
    for q, allowed in ((" ", False), ("\t\n", False), ("\u001c", True), ("%", True)):
        assert allows(document, search, q) is allowed, repr(q)
        assert api.get("/v1/profiles", params={"q": q}).status_code == (200 if allowed else 422), repr(q)


def test_the_sandbox_header_is_described_exactly(api, document):
    header = parameter_schema(document, "get", "/v1/datasets", "X-Sandbox")
    assert header["maxLength"] == 64 and header["pattern"] == "^[a-z][a-z0-9_-]{0,63}$"
    for value, allowed in (("prod", True), ("a" * 64, True), ("a" * 65, False), ("Prod", False), ("1a", False),
                           ("a b", False), ("", False)):
        assert allows(document, header, value) is allowed, value
        response = api.get("/v1/datasets", sandbox=None, headers={"X-Sandbox": value})
        if allowed:  # a well-formed name: the sandbox exists or it does not
            assert response.status_code in (200, 404) and (response.status_code == 200 or
                                                            response.json()["error"]["code"] == "unknown_sandbox")
        else:
            assert_error(response, 400, "invalid_sandbox")


def test_a_405_names_the_methods_the_document_lists(api, document):
    for method, path, template in (("OPTIONS", "/v1/profiles/evaluate", "/v1/profiles/evaluate"),
                                   ("PUT", "/v1/profiles/evaluate", "/v1/profiles/evaluate"),
                                   ("PATCH", "/v1/schema", "/v1/schema"),
                                   ("PATCH", "/v1/profiles/lookup", "/v1/profiles/lookup"),
                                   ("PUT", "/v1/profiles/p-1/events", "/v1/profiles/{profile_id}/events"),
                                   ("DELETE", "/v1/sandboxes", "/v1/sandboxes")):
        response = api.request(method, path)
        error = assert_error(response, 405, "method_not_allowed")
        listed = sorted(m.upper() for m in document["paths"][template])
        assert response.headers["allow"] == ", ".join(listed), (method, path)
        assert error["details"] == {"allowed_methods": listed}


def test_a_json_body_sent_as_another_media_type_is_415(api):
    body = b'{"expression": "loyalty.points > 500"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        error = assert_error(api.post("/v1/expressions/check", content=body, headers={"Content-Type": content_type}),
                             415, "unsupported_media_type")
        assert "application/json" in error["message"] and error["details"] == {"content_type": content_type}
    assert api.post("/v1/expressions/check", content=body,
                    headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200
    # an upload takes multipart: JSON there is not 415 but says the file is missing
    dataset = create_dataset(api, "profile")
    assert api.post(f"/v1/datasets/{dataset}/batches", json={"file": "x"}).status_code == 422


def test_nul_in_a_url_is_refused_as_the_document_says(api, document):
    assert parameter_schema(document, "get", "/v1/keys/{key_id}", "key_id")["pattern"] == "^[^\\u0000]*$"
    for path, params in (("/v1/profiles/p%00x", None), ("/v1/keys/ab%00cd", None),
                         ("/v1/profiles", {"q": "a\x00b"}), ("/v1/profiles/lookup", {"namespace": "email",
                                                                                     "id": "a\x00@b.co"})):
        error = assert_error(api.get(path, params=params), 422, "validation_error")
        assert "NUL" in error["message"]


# ---- findings on segments, governance and sources --------------------------------------------

def _check(api, document, method: str, template: str, path: str, body, allowed: bool, *, refused=(422,)):
    """The document allows ``body`` exactly when the service does not refuse its shape."""
    assert allows(document, body_schema(document, method, template), body) is allowed, (method, path, body)
    response = api.request(method.upper(), path, json=body)
    if allowed:
        if response.status_code == 422:
            assert response.json()["error"]["code"] != "validation_error", (method, path, body, response.text)
        else:
            assert response.status_code < 500, (method, path, body, response.text)
    else:
        assert response.status_code in refused, (method, path, body, response.text)
        assert response.json()["error"]["code"] == "validation_error", (method, path, body, response.text)


def test_member_statuses_are_described_by_a_pattern(api, document):
    status = parameter_schema(document, "get", "/v1/segments/{key}/members", "status")
    for value, allowed in (("realized", True), ("realized,existing", True), ("exited, realized", True),
                           ("emailClick", False), ("", False), ("realized,", False), ("realized,,exited", False)):
        assert allows(document, status, value) is allowed, value
        response = api.get("/v1/segments/nobody/members", params={"status": value})
        if allowed:
            assert_error(response, 404, None)
        else:
            assert_error(response, 422, "validation_error")


def test_an_undeclared_method_is_405_whatever_the_sandbox(api, document):
    for method, path, template in (("PATCH", "/v1/policies/evaluate", "/v1/policies/evaluate"),
                                   ("GET", "/v1/policies/evaluate", "/v1/policies/evaluate")):
        for headers in ({"X-Sandbox": "a"}, {}):
            response = api.request(method, path, sandbox=None, headers=headers, json={"marketing_action": "x"})
            error = assert_error(response, 405, "method_not_allowed")
            assert error["details"] == {"allowed_methods": sorted(m.upper() for m in document["paths"][template])}
    assert_error(api.get("/v1/policies/12345"), 404, None)  # a policy id still reaches the policy routes


def test_policy_patch_fields_may_be_left_out_but_not_null(api, document):
    created = api.post("/v1/policies", json={"name": "p-null", "marketing_action": "email_targeting",
                                             "deny": "C4"})
    assert created.status_code == 201, created.text
    path = f"/v1/policies/{created.json()['id']}"
    for body, allowed in (({"status": None}, False), ({"name": None}, False), ({"deny": None}, False),
                          ({"marketing_action": None}, False), ({"description": None}, True),
                          ({"status": "enabled"}, True), ({}, True)):
        _check(api, document, "patch", "/v1/policies/{policy_id}", path, body, allowed)


def test_evaluate_bodies_state_their_one_of_rules(api, document):
    profile = {"id": "p-1"}
    for body, allowed in (({}, False), ({"expression": "true"}, False), ({"profile": profile}, False),
                          ({"expression": "true", "segment": "s", "profile": profile}, False),
                          ({"expression": "true", "profile": profile, "profile_id": "p-1"}, False),
                          ({"expression": None, "segment": "s", "profile": profile}, False),
                          ({"expression": "true", "profile": profile}, True),
                          ({"segment": "nobody", "profile_id": "p-1"}, True)):
        _check(api, document, "post", "/v1/evaluate", "/v1/evaluate", body, allowed, refused=(422,))


def test_policy_evaluate_bodies_state_their_rule(api, document):
    for body, allowed in (({"marketing_action": "email_targeting"}, False),
                          ({"marketing_action": "email_targeting", "attributes": []}, False),
                          ({"marketing_action": "email_targeting", "segment": "a", "expression": "true"}, False),
                          ({"marketing_action": "email_targeting", "segment": None, "attributes": ["email"]}, False),
                          ({"marketing_action": "email_targeting", "attributes": ["email"]}, True),
                          ({"marketing_action": "email_targeting", "expression": "true"}, True)):
        _check(api, document, "post", "/v1/policies/evaluate", "/v1/policies/evaluate", body, allowed)


def test_an_unknown_marketing_action_is_a_domain_refusal(api, document):
    body = {"name": "p-unknown", "marketing_action": "ði", "deny": "C4"}
    assert allows(document, body_schema(document, "post", "/v1/policies"), body)
    assert_error(api.post("/v1/policies", json=body), 422, "unknown_marketing_action")


def test_a_source_config_is_described_per_type(api, document):
    ids = {kind: create_dataset(api, kind) for kind in ("profile", "event")}
    base = {"name": "s", "datasets": ids}
    for body, allowed in (({**base, "type": "database", "config": None, "mapping": {}}, False),
                          ({**base, "type": "database", "config": {}, "mapping": {}}, False),
                          ({**base, "type": "database", "config": {"url": "sqlite://"}}, False),
                          ({**base, "type": "file_drop", "config": {"url": "sqlite://"}}, False),
                          ({**base, "type": "tracking_api", "mapping": {"unknown": "shout"}}, False),
                          ({**base, "type": "file_drop", "config": {"directory": "/nowhere/at/all"}}, True)):
        _check(api, document, "post", "/v1/sources", "/v1/sources", body, allowed)


def test_an_estimate_takes_an_instant_as_iso_text_only(api, document):
    expression = "loyalty.points > 1"
    for as_of, allowed in ((0, False), ("2026-11-28", False), ("2026-11-28T12:00:00Z", True), (None, True)):
        _check(api, document, "post", "/v1/segments/estimate", "/v1/segments/estimate",
               {"expression": expression, "as_of": as_of}, allowed)


def test_segment_job_keys_are_segment_keys(api, document):
    for segments, allowed in ((["\u0000x"], False), ([""], False), (["a b"], False), (["nobody"], True)):
        body = {"segments": segments}
        assert allows(document, body_schema(document, "post", "/v1/segment-jobs"), body) is allowed, segments
        response = api.post("/v1/segment-jobs", json=body)
        if allowed:
            assert response.status_code in (202, 404), response.text
        else:
            assert_error(response, 422, "validation_error")


def test_other_patch_names_may_be_left_out_but_not_null(api, document):
    assert api.post("/v1/segments", json={"key": "s-null", "name": "S", "expression": "true"}).status_code == 201
    for body, allowed in (({"expression": None}, False), ({"name": None}, False), ({"status": None}, False),
                          ({"evaluation": None}, False), ({"description": None}, True)):
        _check(api, document, "patch", "/v1/segments/{key}", "/v1/segments/s-null", body, allowed)
    action = api.post("/v1/marketing-actions", json={"key": "a_null", "name": "A"})
    assert action.status_code == 201, action.text
    for body, allowed in (({"name": None}, False), ({"description": None}, True)):
        _check(api, document, "patch", "/v1/marketing-actions/{key}", "/v1/marketing-actions/a_null", body, allowed)
    ids = {kind: create_dataset(api, kind) for kind in ("profile", "event")}
    source = api.post("/v1/sources", json={"name": "s-null", "type": "tracking_api", "datasets": ids})
    assert source.status_code == 201, source.text
    for body, allowed in (({"name": None}, False), ({"schedule": None}, True)):
        _check(api, document, "patch", "/v1/sources/{source_id}", f"/v1/sources/{source.json()['id']}", body, allowed)


def _date_time_query_parameters(document: dict):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                formats = [schema.get("format")] + [part.get("format") for part in schema.get("anyOf", [])]
                if parameter["in"] == "query" and "date-time" in formats:
                    yield method, path, parameter["name"]


def test_every_instant_in_a_query_is_iso_text_only(api, document):
    """The whole class of the fuzzer's find (`?to=-238458` was taken as seconds since 1970): every
    query parameter the document calls a date-time refuses a number and a bare date."""
    found = list(_date_time_query_parameters(document))
    assert {(path, name) for _, path, name in found} >= {
        ("/v1/segments/{key}/history", "from"), ("/v1/segments/{key}/history", "to"),
        ("/v1/profiles/{profile_id}/events", "since")}
    for method, path, name in found:
        url = path.replace("{key}", "nobody").replace("{profile_id}", "p-nobody")
        for value in ("-238458", "0", "2026-11-28"):
            assert not allows(document, parameter_schema(document, method, path, name), value)
            response = api.request(method.upper(), url, params={name: value})
            assert_error(response, 422, "validation_error")
