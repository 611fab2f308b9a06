"""A policy decision is logged (the marketing action, allowed or denied, the labels, the id and
name of each violated policy) without the text of an ad-hoc expression, which can hold personal
data: the log of an evaluation of ``email = "<address>"`` is searched for the address."""

from __future__ import annotations

import logging

from tests.api.conftest import create_dataset

ADDRESS = "jane.private@example.org"


def test_a_policy_decision_is_logged_without_the_expression_text(api, caplog):
    crm = create_dataset(api, "profile", "CRM contacts")
    labelled = api.patch(f"/v1/datasets/{crm}", json={"labels": ["C2"], "field_labels": {"email": ["I1"]}})
    assert labelled.status_code == 200, labelled.text
    created = api.post("/v1/policies", role="data_steward", json={
        "name": "No third-party export of contracts", "marketing_action": "export_to_third_party", "deny": "C2",
        "status": "enabled"})
    assert created.status_code == 201, created.text
    policy = created.json()
    expression = f'email = "{ADDRESS}" or lower(email) ends with "@example.org"'
    with caplog.at_level(logging.INFO, logger="cdp"):
        answer = api.post("/v1/policies/evaluate", role="marketer", json={
            "marketing_action": "export_to_third_party", "expression": expression, "attributes": ["email"]})
        assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] is False
    decisions = [r.getMessage() for r in caplog.records if r.getMessage().startswith("policy decision")]
    assert len(decisions) == 1, caplog.text
    [line] = decisions
    assert "export_to_third_party denied" in line
    assert f"{policy['id']} 'No third-party export of contracts'" in line
    assert f"<{len(expression)} characters>" in line
    assert ADDRESS not in caplog.text and "example.org" not in caplog.text, line
