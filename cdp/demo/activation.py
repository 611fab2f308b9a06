"""Steps 7–9's part of the story: destinations, activation with policies and consent, and the
removal when a profile exits (API.md, "Destinations and activation").

The two destinations are webhooks to the demo's receiver (cdp/demo/receiver.py), which stands in
for Google Display (an ad platform: cross-site targeting) and Luma Email (an email platform:
email targeting, only for profiles with ``consents.email = "y"``). A server without destinations
(an older cdp) is told apart by its OpenAPI document: the step then says so and is skipped."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cdp.demo.client import ApiError
from cdp.demo.load import GIFT_GIVERS
from cdp.demo.luma import MIA

if TYPE_CHECKING:
    from cdp.demo.story import Step, Story

SECRET = "luma-demo-webhook-secret"
DESTINATIONS = {
    "Google Display": {"path": "/google-display", "marketing_actions": ["cross_site_targeting"], "consent": None,
                       "attributes": ["preferred_size"], "identities": ["ecid"]},
    "Luma Email": {"path": "/luma-email", "marketing_actions": ["email_targeting"], "consent": "consents.email",
                   "attributes": ["person.first_name"], "identities": ["email"]},
}
REFUSED_ATTRIBUTES = ["person.first_name", "home_address.street"]  # a name and where she lives, in one email
DELIVERY_WAIT_SECONDS = 60


def _lineage(violation: dict) -> list[str]:
    return [f"{v['attribute']} → dataset {v['dataset']['name']} → label {v['label']} ({v['level']}) → policy "
            f"{violation['policy']['name']!r}" for v in violation["lineage"]]


def activate(story: "Story", step: "Step") -> None:
    if not story.client.has_paths("/v1/destinations", "/v1/activations"):
        reason = "this server has no destinations and activation (/v1/destinations, /v1/activations)"
        step.decided = [f"skipped: {reason}"]
        step.facts = {"skipped": True, "reason": reason}
        return
    client, receiver = story.client, story.receiver
    destinations = {}
    for name, spec in DESTINATIONS.items():
        body = {"name": name, "type": "webhook", "marketing_actions": spec["marketing_actions"],
                "config": {"url": receiver.url + spec["path"], "secret": SECRET}}
        if spec["consent"]:
            body["consent"] = spec["consent"]
        destinations[name] = client.post("/v1/destinations", body)["id"]
        step.sent.append(f"POST /v1/destinations {name!r}: webhook, {', '.join(spec['marketing_actions'])}"
                         + (f", consent {spec['consent']}" if spec["consent"] else ""))
    refused: dict[str, Any] = {}
    try:
        client.post("/v1/activations", {"segment": GIFT_GIVERS, "destination": destinations["Luma Email"],
                                        "attributes": REFUSED_ATTRIBUTES, "identities": ["email"]})
    except ApiError as exc:
        if exc.code != "policy_violation":
            raise
        violations = exc.details.get("violations") or []
        refused = {"status": exc.status, "code": exc.code, "violations": violations}
    step.sent.append(f"POST /v1/activations to Luma Email exporting {', '.join(REFUSED_ATTRIBUTES)}")
    if refused:
        for violation in refused["violations"]:
            step.decided.append(f"refused (409 policy_violation): policy {violation['policy']['name']!r} denies "
                                f"{violation['marketing_action']} for {violation['policy']['deny']}")
            step.why += _lineage(violation)
    else:
        step.decided.append("NOT refused: the email activation with a street address went through")
    activations = {}
    for name, spec in DESTINATIONS.items():
        created = client.post("/v1/activations", {"segment": GIFT_GIVERS, "destination": destinations[name],
                                                  "attributes": spec["attributes"], "identities": spec["identities"]})
        activations[name] = {"id": created["id"], "destination_id": destinations[name], "start": created.get("start"),
                             "end": created.get("end")}
        step.sent.append(f"POST /v1/activations to {name} exporting {', '.join(spec['attributes'])} "
                         f"and {', '.join(spec['identities'])} identities")
    story.activations = activations
    members = client.get(f"/v1/segments/{GIFT_GIVERS}")["size"]
    # every member of Google Display's (no consent needed) has arrived, and some of Luma Email's
    _wait_for(lambda: (len(_entered(story, "Google Display")) >= members and _entered(story, "Luma Email")) or None)
    mia = story.lookup("crm_id", MIA["crm_id"])["id"]
    for name, activation in activations.items():
        read = client.get(f"/v1/activations/{activation['id']}")
        activation.update({k: read.get(k) for k in ("status", "excluded_no_consent", "members_exported")})
        received = _entered(story, name)
        activation["received"] = sorted(received)
        activation["sarah_sent"] = story.sarah_id in received
        activation["mia_sent"] = mia in received
        step.decided.append(f"{name}: {read.get('status')} until {read.get('end')}; {len(received)} of {members} "
                            f"members sent" + (f", {read.get('excluded_no_consent')} left out without email consent"
                                               if DESTINATIONS[name]["consent"] else ""))
    step.why.append("Luma Email sends only to profiles with consents.email = \"y\": Mia has none, so she is "
                    "not sent (not on entry, not her attributes); Google Display needs no consent")
    step.facts = {"skipped": False, "refused": refused, "activations": activations, "members": members}


def _entered(story: "Story", name: str) -> set[str]:
    return {c["profile_id"] for c in story.receiver.changes(DESTINATIONS[name]["path"]) if c["status"] == "entered"}


def _wait_for(condition: Any, timeout: float = DELIVERY_WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def removals(story: "Story", profile_id: str) -> list[str]:
    """The destinations whose platform got ``profile_id``'s exit (waiting for the deliveries)."""
    if not story.activations:
        return []

    def got() -> list[str] | None:
        names = [name for name in story.activations
                 if any(c["profile_id"] == profile_id and c["status"] == "exited"
                        for c in story.receiver.changes(DESTINATIONS[name]["path"]))]
        return names if len(names) == len(story.activations) else None

    return _wait_for(got) or [name for name in story.activations
                              if any(c["profile_id"] == profile_id and c["status"] == "exited"
                                     for c in story.receiver.changes(DESTINATIONS[name]["path"]))]


def delivery_log(story: "Story") -> dict[str, list[dict]]:
    """Each destination's deliveries as the service logged them."""
    return {name: story.client.get(f"/v1/destinations/{a['destination_id']}/deliveries", limit=100)["items"]
            for name, a in story.activations.items()}
