"""Loads Luma's data into a sandbox the way a data team would: over the HTTP API, through the
service's own ingestion paths. Used by ``cdp serve --demo`` (``make run``) on first start and by
``cdp demo`` for the sandbox it plays the story in.

1. labels and datasets (the CRM's under contract C2, names I1, street addresses S1);
2. the CRM contacts CSV and the loyalty JSON Lines file, uploaded as batch files with their
   mappings — their broken rows are rejected with row number and reason, the rest applied;
3. the web and mobile event streams, posted in requests of up to 1,000 records;
4. the demo policies, then the demo segments, saved (which evaluates them at once) and run as a
   batch job (a point of their history).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from cdp.demo.client import Client
from cdp.demo.luma import CRM_MAPPING, ERROR_THRESHOLD, LOYALTY_MAPPING, LumaSources, browsing, cart_and_login, \
    luma_sources

GIFT_GIVERS = "gift-giving-cart-abandoners"
GIFT_EXPRESSION = """\
loyalty.tier is not null
and (exists event where type = "addToCart"
       and product.category != profile.preferred_category
       and product.size != profile.preferred_size
       within last 7 days)
and (exists event as cart where type = "addToCart" within last 7 days
       then no event where type = "purchase" within 1 day)"""

CUSTOM_LABELS = [{"name": "LOYALTY_TERMS", "description": "Collected under the loyalty programme's terms: Luma's own "
                                                         "channels only, never shared for segment matching"}]
DATASETS = {
    "crm": {"name": "CRM contacts", "kind": "profile", "description": "Luma demo: the CRM's contacts (CSV export)",
            "labels": ["C2"], "field_labels": {"person.first_name": ["I1"], "person.last_name": ["I1"],
                                               "home_address.street": ["S1"], "home_address.postal_code": ["S2"]}},
    "events": {"name": "Web and mobile events", "kind": "event",
               "description": "Luma demo: the web site's and the app's event streams"},
    "loyalty": {"name": "Loyalty members", "kind": "profile", "labels": ["LOYALTY_TERMS"],
                "description": "Luma demo: the loyalty programme's members (JSON Lines export)"},
}
POLICIES = [
    {"name": "No third-party export of contract data", "marketing_action": "export_to_third_party", "deny": "C2",
     "status": "enabled", "description": "The CRM's contract forbids handing its data to a third party."},
    {"name": "No email targeting with precise location", "marketing_action": "email_targeting",
     "deny": "C4 OR (I1 AND S1)", "status": "enabled",
     "description": "An email may not combine who a person is with where they live."},
    {"name": "Loyalty data stays in Luma's channels", "marketing_action": "segment_match", "deny": "LOYALTY_TERMS",
     "status": "enabled"},
]
SEGMENTS = [
    {"key": GIFT_GIVERS, "name": "Gift-giving cart abandoners", "expression": GIFT_EXPRESSION, "evaluation": "streaming",
     "description": "Loyalty members whose recent cart holds something off their usual category and size, and who "
                    "left it there (DSL.md §13)"},
    {"key": "high-value-loyalists", "name": "High-value loyalists", "evaluation": "batch",
     "expression": 'loyalty.tier in ["gold", "platinum"] and count(event where type = "purchase" within last 90 days) '
                   '>= 3'},
    {"key": "email-engaged", "name": "Engaged by email", "evaluation": "streaming",
     "expression": 'consents.email = "y" and exists event where type = "emailClick" within last 30 days'},
    {"key": "window-shoppers", "name": "Window shoppers", "evaluation": "streaming",
     "expression": 'exists event where type = "productView" within last 7 days\n'
                   'and count(event where type = "purchase" within last 30 days) = 0'},
]
# make run's destinations: file drops under CDP_ACTIVATION_EXPORT_ROOT (var/exports), which need no
# platform to answer (`cdp demo` uses webhooks to a receiver of its own instead)
FILE_DESTINATIONS = [
    ({"name": "Google Display", "type": "file", "marketing_actions": ["cross_site_targeting"],
      "config": {"directory": "google-display", "format": "csv", "mode": "incremental", "every_minutes": 60}},
     {"attributes": ["preferred_size"], "identities": ["ecid"]}),
    ({"name": "Luma Email", "type": "file", "marketing_actions": ["email_targeting"], "consent": "consents.email",
      "config": {"directory": "luma-email", "format": "jsonl", "mode": "full", "every_minutes": 60}},
     {"attributes": ["person.first_name"], "identities": ["email"]}),
]
STREAM_CHUNK = 1000


@dataclass
class Loaded:
    """What the loader did: dataset ids by role, the batch jobs as the service reported them, counts."""

    sandbox: str
    datasets: dict[str, int] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    streamed: dict[str, dict[str, int]] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    policies: list[int] = field(default_factory=list)
    activations: dict[str, int] = field(default_factory=dict)  # destination name → activation id
    profiles: int = 0
    seconds: float = 0.0


def upload(client: Client, dataset_id: int, *, filename: str, content: str, mapping: dict) -> dict:
    """A batch file with its mapping; waits for its job and returns the batch."""
    batch = client.upload(f"/v1/datasets/{dataset_id}/batches", filename=filename, content=content.encode(),
                          fields={"mapping": json.dumps(mapping), "error_threshold": str(ERROR_THRESHOLD)})
    return client.wait(f"/v1/batches/{batch['id']}", done=lambda b: b["status"] in ("succeeded", "failed"))


def stream(client: Client, dataset_id: int, records: list[dict]) -> dict[str, int]:
    counts = {"records": len(records), "requests": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    for start in range(0, len(records), STREAM_CHUNK):
        answer = client.post(f"/v1/datasets/{dataset_id}/records", {"records": records[start:start + STREAM_CHUNK]})
        counts["requests"] += 1
        for name in ("accepted", "rejected", "duplicates"):
            counts[name] += answer[name]
    return counts


def load_luma(client: Client, *, count: int, as_of: datetime, story: bool, segments: list[dict] = SEGMENTS,
              policies: bool = True, destinations: bool = True, progress: Callable[[str], None] = lambda _text: None
              ) -> tuple[Loaded, LumaSources]:
    """Everything above into ``client``'s sandbox; ``story``: Sarah's browsing, cart and login of
    yesterday too (the state ``make run`` starts in — ``cdp demo`` plays them live instead).
    ``cdp demo`` leaves out the policies, the story's segment and the destinations: its steps 5,
    6 and 7 make them."""
    started = time.monotonic()
    loaded = Loaded(sandbox=client.sandbox)
    sources = luma_sources(count, as_of=as_of)
    known = {label["name"] for label in client.get("/v1/labels", family="custom", limit=200)["items"]}
    for label in CUSTOM_LABELS:
        if label["name"] not in known:
            client.post("/v1/labels", label)
    for role, spec in DATASETS.items():
        loaded.datasets[role] = client.post("/v1/datasets", spec)["id"]
    progress(f"uploading the CRM contacts CSV ({sources.crm_rows:,} rows)")
    loaded.batches["crm"] = upload(client, loaded.datasets["crm"], filename="crm_contacts.csv",
                                   content=sources.crm_csv, mapping=CRM_MAPPING)
    progress(f"uploading the loyalty JSON Lines file ({sources.loyalty_rows:,} lines)")
    loaded.batches["loyalty"] = upload(client, loaded.datasets["loyalty"], filename="loyalty_members.jsonl",
                                       content=sources.loyalty_jsonl, mapping=LOYALTY_MAPPING)
    for name, records in (("web", sources.web_events), ("mobile", sources.mobile_events)):
        progress(f"streaming the {name} events ({len(records):,})")
        loaded.streamed[name] = stream(client, loaded.datasets["events"], records)
    if story:
        yesterday = as_of - timedelta(days=1)
        loaded.streamed["story"] = stream(client, loaded.datasets["events"],
                                          browsing(yesterday) + cart_and_login(yesterday + timedelta(minutes=10)))
    progress("defining the policies and saving the segments")
    loaded.policies = [client.post("/v1/policies", policy)["id"] for policy in POLICIES] if policies else []
    for segment in segments:
        loaded.segments[segment["key"]] = client.post("/v1/segments", segment)["size"]
    if destinations and segments is SEGMENTS and client.has_paths("/v1/destinations", "/v1/activations"):
        for destination, mapping in FILE_DESTINATIONS:
            created = client.post("/v1/destinations", destination)
            loaded.activations[destination["name"]] = client.post("/v1/activations", {
                "segment": GIFT_GIVERS, "destination": created["id"], **mapping})["id"]
    job = client.post("/v1/segment-jobs", {})
    client.wait(f"/v1/segment-jobs/{job['id']}", done=lambda j: j["status"] in ("succeeded", "failed"))
    loaded.profiles = client.post("/v1/segments/estimate", {"expression": "true"})["total_profiles"]
    loaded.seconds = round(time.monotonic() - started, 2)
    return loaded, sources


def summary(loaded: Loaded) -> dict[str, Any]:
    return {"sandbox": loaded.sandbox, "profiles": loaded.profiles, "datasets": loaded.datasets,
            "batches": {k: {f: b[f] for f in ("id", "status", "total_rows", "accepted_rows", "rejected_rows")}
                        for k, b in loaded.batches.items()},
            "streamed": loaded.streamed, "segments": loaded.segments, "seconds": loaded.seconds}
