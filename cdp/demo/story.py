"""The Luma story, SPEC.md steps 1–9, played through the real service over HTTP.

Each step sends what Luma's systems or its marketer would send, reads what cdp decided, and
returns a :class:`Step`: what was sent, what cdp decided and why (for people), and ``facts``
(for tools and the tests: ``cdp demo --json``). Times in the facts are the service's own; the
rest is the same on every run on a fresh server: the data is generated from a fixed seed, and the
story's events are placed relative to the moment the story starts.

Before step 1 the sandbox gets Luma's data (:mod:`cdp.demo.load`): the CRM and loyalty files
(Sarah Rose is a CRM contact and a bronze member, unknown to the web site), the event streams of
the other customers, and the segments Luma already had. The story's own segment (step 6), its
policies (step 5) and its activations (step 7) are created by the story.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from cdp.demo.activation import activate, delivery_log, removals
from cdp.demo.client import ApiError, Client
from cdp.demo.load import GIFT_EXPRESSION, GIFT_GIVERS, POLICIES, SEGMENTS, Loaded, load_luma, stream
from cdp.demo.luma import MIA, SARAH, browsing, cart_and_login, mia_gift_cart, purchase_on_phone

TITLES = {
    0: "Luma's data arrives",
    1: "An anonymous visitor browses",
    2: "She adds to her cart and logs in: two profiles become one",
    3: "One profile, found by any of her identities",
    4: "Where the data came from, and what was refused",
    5: "Labels on the data, policies on its use",
    6: "The marketer defines \"Gift-giving cart abandoners\"",
    7: "Activation: Google Display and Luma Email",
    8: "Sarah buys the sweatshirt on her phone",
    9: "The audience over time, and what was delivered",
}
LAST_STEP = 9


@dataclass
class Step:
    number: int
    title: str
    sent: list[str] = field(default_factory=list)
    decided: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.number, "title": self.title, "sent": self.sent, "decided": self.decided, "why": self.why,
                "facts": self.facts, "seconds": self.seconds}


@dataclass
class Story:
    """What the steps share: the client of the story's sandbox, the data loaded, the start time."""

    client: Client
    start: datetime
    receiver: Any = None  # cdp.demo.receiver.Receiver: the email and ad platforms' stand-in
    profiles: int = 1000
    loaded: Loaded | None = None
    sarah_id: str = ""
    sizes: list[dict[str, Any]] = field(default_factory=list)  # the audience as the story saw it
    activations: dict[str, Any] = field(default_factory=dict)

    def lookup(self, namespace: str, value: str) -> dict:
        return self.client.get("/v1/profiles/lookup", namespace=namespace, id=value)

    def size(self, moment: str) -> int:
        size = self.client.get(f"/v1/segments/{GIFT_GIVERS}")["size"]
        self.sizes.append({"after": moment, "size": size})
        return size


def _membership(profile: dict, key: str) -> dict | None:
    return next((m for m in profile["memberships"] if m["segment"] == key), None)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _moments_ago(seconds: int) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=seconds)


def _ids(profile: dict) -> list[str]:
    return [f"{i['namespace']}:{i['id']}" for i in profile["identities"]]


# ---- the steps ----------------------------------------------------------------------------------


def step_0(story: Story, step: Step, progress: Callable[[str], None]) -> None:
    loaded, sources = load_luma(story.client, count=story.profiles, as_of=story.start, story=False,
                                segments=[s for s in SEGMENTS if s["key"] != GIFT_GIVERS], policies=False,
                                destinations=False, progress=progress)
    story.loaded = loaded
    crm, loyalty = loaded.batches["crm"], loaded.batches["loyalty"]
    step.sent = [f"POST /v1/datasets/{loaded.datasets['crm']}/batches: crm_contacts.csv, {crm['total_rows']:,} rows, "
                 f"with its column mapping",
                 f"POST /v1/datasets/{loaded.datasets['loyalty']}/batches: loyalty_members.jsonl, "
                 f"{loyalty['total_rows']:,} lines, with its mapping",
                 f"POST /v1/datasets/{loaded.datasets['events']}/records: {len(sources.web_events):,} web and "
                 f"{len(sources.mobile_events):,} mobile events, up to 1,000 a request"]
    step.decided = [f"{loaded.profiles:,} profiles in sandbox {loaded.sandbox}, stitched from the files and the "
                    f"streams by their identities ({loaded.seconds:.1f} s)"]
    step.facts = {"sandbox": loaded.sandbox, "profiles": loaded.profiles, "datasets": loaded.datasets,
                  "streamed": loaded.streamed, "segments": loaded.segments, "seconds": loaded.seconds}


def step_1(story: Story, step: Step) -> None:
    records = browsing(story.start - timedelta(minutes=20))
    answer = stream(story.client, story.loaded.datasets["events"], records)
    profile = story.lookup("ecid", SARAH["web_cookie"])
    step.sent = [f"{r['event']['type']} {r['event']['product']['name']} ({r['event']['product']['sku']}), cookie "
                 f"{SARAH['web_cookie']} only" for r in records]
    step.decided = [f"a new profile {profile['id']} that knows only the cookie: {', '.join(_ids(profile))}",
                    f"{profile['events_total']} events on it, channel web, device desktop"]
    step.why = ["no identity of the events was known: the identity graph starts a profile for the cookie"]
    step.facts = {"accepted": answer["accepted"], "profile_id": profile["id"], "identities": _ids(profile),
                  "events": profile["events_total"]}


def step_2(story: Story, step: Step) -> None:
    known = story.lookup("crm_id", SARAH["crm_id"])
    anonymous = story.lookup("ecid", SARAH["web_cookie"])
    records = cart_and_login(story.start - timedelta(minutes=15))
    result = story.client.post(f"/v1/datasets/{story.loaded.datasets['events']}/records", {"records": records})
    sarah = story.lookup("ecid", SARAH["web_cookie"])
    story.sarah_id = sarah["id"]
    warnings = [w for r in result["results"] for w in r["warnings"]]
    a = sarah["attributes"]
    step.sent = ["addToCart Chaz Kangeroo Hoodie, men's, size L — cookie only",
                 f"login with cookie {SARAH['web_cookie']}, email Sarah.Rose@example.com and CRM id {SARAH['crm_id']}"]
    step.decided = [f"the login linked the cookie to Sarah Rose's CRM profile {known['id']}: the anonymous profile "
                    f"{anonymous['id']} merged into it",
                    f"Sarah now: loyalty tier {a['loyalty']['tier']}, prefers {a['preferred_category']} size "
                    f"{a['preferred_size']}; {sarah['events_total']} events, the anonymous ones too"]
    step.why = warnings or ["identities seen together are one person"]
    step.facts = {"known_profile": known["id"], "anonymous_profile": anonymous["id"], "profile_id": sarah["id"],
                  "merged": anonymous["id"] in sarah["merged_ids"] and sarah["id"] == known["id"],
                  "warnings": warnings, "events": sarah["events_total"],
                  "attributes": {"loyalty.tier": a["loyalty"]["tier"], "preferred_category": a["preferred_category"],
                                 "preferred_size": a["preferred_size"]}}


def step_3(story: Story, step: Step) -> None:
    ways = [("email", "Sarah.Rose@example.com"), ("ecid", SARAH["web_cookie"]), ("crm_id", SARAH["crm_id"]),
            ("loyalty_id", SARAH["loyalty_id"])]
    found = {f"{ns}:{value}": story.lookup(ns, value)["id"] for ns, value in ways}
    sarah = story.lookup("email", SARAH["email"])
    step.sent = [f"GET /v1/profiles/lookup?namespace={ns}&id={value}" for ns, value in ways]
    step.decided = [f"one profile {sarah['id']} every time" if set(found.values()) == {sarah["id"]}
                    else f"different profiles: {found}",
                    "identities: " + ", ".join(_ids(sarah)),
                    "events: " + "; ".join(f"{e['type']} ({e.get('channel')}, {(e.get('device') or {}).get('type')})"
                                           for e in sorted(sarah["events"], key=lambda e: e["timestamp"])),
                    "memberships: " + (", ".join(f"{m['segment']} ({m['status']} since {m['entered_at']})"
                                                 for m in sarah["memberships"]) or "none")]
    step.why = [f"{path}: from {source['dataset_name']}" for path, source in sorted(sarah["provenance"].items())
                if path in ("loyalty.tier", "preferred_category", "preferred_size", "person.first_name")]
    step.facts = {"found": found, "one_profile": set(found.values()) == {sarah["id"]}, "identities": _ids(sarah),
                  "events": [{"type": e["type"], "channel": e.get("channel"),
                              "device": (e.get("device") or {}).get("type")} for e in sarah["events"]],
                  "memberships": [{"segment": m["segment"], "status": m["status"]} for m in sarah["memberships"]],
                  "provenance": {p: s["dataset_name"] for p, s in sarah["provenance"].items()}}


def step_4(story: Story, step: Step) -> None:
    client, loaded = story.client, story.loaded
    rejected = []
    batches = {}
    for role in ("crm", "loyalty"):
        batch = client.get(f"/v1/batches/{loaded.batches[role]['id']}")
        batches[role] = {k: batch[k] for k in ("status", "total_rows", "accepted_rows", "rejected_rows")}
        errors = client.get(f"/v1/batches/{batch['id']}/errors", limit=100)["items"]
        rejected += [{"file": batch["filename"], "row_number": e["row_number"], "column": e["column"],
                      "reason": e["reason"]} for e in errors]
        step.sent.append(f"GET /v1/batches/{batch['id']} and /v1/batches/{batch['id']}/errors ({batch['filename']})")
    step.decided = [f"{role} file: {b['accepted_rows']:,} of {b['total_rows']:,} rows applied, {b['rejected_rows']} "
                    f"rejected (under the 10 % threshold, so the rest went in, in one transaction)"
                    for role, b in batches.items()]
    step.decided += [f"streams: {s['accepted']:,} {name} events accepted in {s['requests']} requests"
                     for name, s in loaded.streamed.items()]
    step.why = [f"{r['file']} row {r['row_number']}" + (f", column {r['column']}" if r["column"] else "")
                + f": {r['reason'][:140]}" for r in rejected]
    step.facts = {"batches": batches, "rejected": rejected, "streamed": loaded.streamed}


def step_5(story: Story, step: Step) -> None:
    client = story.client
    datasets = {d["name"]: {"labels": d["labels"], "field_labels": d["field_labels"]}
                for d in client.get("/v1/datasets", limit=50)["items"]}
    policies = [client.post("/v1/policies", policy) for policy in POLICIES]
    step.sent = [f"POST /v1/policies: {p['name']!r}: {p['marketing_action']} denied for {p['deny']}" for p in policies]
    step.decided = [f"{name}: labels {', '.join(d['labels']) or '—'}"
                    + "".join(f"; {f}: {', '.join(ls)}" for f, ls in sorted(d["field_labels"].items()))
                    for name, d in datasets.items()]
    step.why = ["C2: no export to a third party; I1: directly identifiable; S1: precise location; "
                "LOYALTY_TERMS: a custom label of Luma's"]
    step.facts = {"datasets": datasets, "policies": [{"id": p["id"], "name": p["name"], "marketing_action":
                                                      p["marketing_action"], "deny": p["deny"]} for p in policies]}


def step_6(story: Story, step: Step) -> None:
    client = story.client
    checked = client.post("/v1/expressions/check", {"expression": GIFT_EXPRESSION})
    estimate = client.post("/v1/segments/estimate", {"expression": GIFT_EXPRESSION})
    saved = client.post("/v1/segments", {"key": GIFT_GIVERS, "name": "Gift-giving cart abandoners",
                                         "expression": GIFT_EXPRESSION, "evaluation": "streaming"})
    story.size("saved")
    verdict = client.post("/v1/evaluate", {"segment": GIFT_GIVERS, "identity": {"namespace": "email",
                                                                                "id": SARAH["email"]},
                                           "explain": True})
    sarah = _membership(story.lookup("email", SARAH["email"]), GIFT_GIVERS)
    jobs_before = client.get("/v1/segment-jobs", limit=1)["total"]
    before = time.monotonic()
    # events are stamped a moment before they are sent: an event after `now` would count only from its time on
    stream(client, story.loaded.datasets["events"], mia_gift_cart(_moments_ago(5)))
    mia = _membership(story.lookup("crm_id", MIA["crm_id"]), GIFT_GIVERS)
    took = time.monotonic() - before
    size = story.size("Mia's cart")
    step.sent = ["POST /v1/expressions/check, POST /v1/segments/estimate, then POST /v1/segments (streaming)",
                 "later, on the app: Mia Chen (gold, buys womens M) leaves a kids' XS jacket in her cart"]
    step.decided = [f"valid ({checked['canonical'][:60]}…); estimate {estimate['count']} of "
                    f"{estimate['total_profiles']:,}; saved with {saved['size']} members",
                    f"Sarah qualifies: {verdict['qualifies']} — {sarah['status'] if sarah else 'not a member'}",
                    f"Mia: {mia['status'] if mia else 'not a member'} in the same request as her event "
                    f"({took * 1000:.0f} ms, no batch run: {client.get('/v1/segment-jobs', limit=1)['total'] - jobs_before}"
                    f" segment jobs since); the audience is {size}"]
    step.why = [f"{'  ' * row['depth']}{row['value']:<8} {_short(row['expression'], 100)}" for row in verdict["explain"]]
    step.facts = {"valid": checked["ok"], "estimate": estimate["count"], "size_at_save": saved["size"],
                  "sarah": {"qualifies": verdict["qualifies"], "status": sarah and sarah["status"]},
                  "explain": verdict["explain"],
                  "mia": {"status": mia and mia["status"], "entered_at": mia and mia["entered_at"],
                          "segment_jobs_since": client.get("/v1/segment-jobs", limit=1)["total"] - jobs_before},
                  "size": size}


def step_7(story: Story, step: Step) -> None:
    activate(story, step)


def step_8(story: Story, step: Step) -> None:
    client = story.client
    before = story.sizes[-1]["size"] if story.sizes else None
    stream(client, story.loaded.datasets["events"], purchase_on_phone(_moments_ago(60)))
    sarah = story.lookup("email", SARAH["email"])
    membership = _membership(sarah, GIFT_GIVERS)
    size = story.size("Sarah's purchase")
    removed = removals(story, sarah["id"])
    step.sent = [f"login and purchase O-1001 on the app: cookie {SARAH['phone_cookie']} (new) and CRM id "
                 f"{SARAH['crm_id']}"]
    step.decided = [f"the phone's cookie joined Sarah's profile ({len(sarah['identities'])} identities)",
                    f"she left the audience at once: {membership['status'] if membership else '—'} at "
                    f"{membership and membership['exited_at']}; the audience went from {before} to {size}"]
    step.decided += [f"{name}: received her removal" for name in removed] or \
        ["no destination to tell (step 7 did not activate the audience)"]
    step.why = ["the segment's last condition — no purchase within 1 day of the cart — is now FALSE",
                "exits are streamed like entries: each destination gets an `exited` change, so she is not retargeted"]
    step.facts = {"profile_id": sarah["id"], "status": membership and membership["status"],
                  "exited_at": membership and membership["exited_at"], "size_before": before, "size": size,
                  "identities": _ids(sarah), "removals": removed}


def step_9(story: Story, step: Step) -> None:
    history = story.client.get(f"/v1/segments/{GIFT_GIVERS}/history")["points"]
    deliveries = delivery_log(story)
    step.sent = [f"GET /v1/segments/{GIFT_GIVERS}/history"] + [f"GET /v1/destinations/{d['destination_id']}/deliveries"
                                                                for d in story.activations.values() if d]
    step.decided = ["as the story saw it: " + " → ".join(f"{s['size']} ({s['after']})" for s in story.sizes)]
    step.decided += [f"hourly history {p['at']}: size {p['size']}, {p['entered']} entered, {p['exited']} exited"
                     for p in history]
    step.decided += [f"{name}: {len(items)} deliveries, " + ", ".join(sorted({i['status'] for i in items}))
                     for name, items in deliveries.items()]
    step.facts = {"sizes": story.sizes, "history": history,
                  "deliveries": {name: [{"status": i["status"], "changes": i["changes"]} for i in items]
                                 for name, items in deliveries.items()}}


STEPS: dict[int, Callable] = {1: step_1, 2: step_2, 3: step_3, 4: step_4, 5: step_5, 6: step_6, 7: step_7,
                              8: step_8, 9: step_9}


def play(story: Story, *, until: int = LAST_STEP, on_start: Callable[[int, str], None] = lambda _n, _t: None,
         on_step: Callable[[Step], None] = lambda _s: None, progress: Callable[[str], None] = lambda _t: None
         ) -> list[Step]:
    """Steps 0 (the data) to ``until``; each reported to ``on_step`` as it ends."""
    played = []
    for number in range(0, until + 1):
        step = Step(number, TITLES[number])
        on_start(number, step.title)
        started = time.monotonic()
        try:
            step_0(story, step, progress) if number == 0 else STEPS[number](story, step)
        except ApiError as exc:
            step.facts["error"] = {"status": exc.status, "code": exc.code, "message": exc.message}
            step.decided.append(f"the service refused: {exc}")
            step.seconds = round(time.monotonic() - started, 2)
            played.append(step)
            on_step(step)
            raise
        step.seconds = round(time.monotonic() - started, 2)
        played.append(step)
        on_step(step)
    return played
