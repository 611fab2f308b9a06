"""Luma's data as Luma's systems hand it over (SPEC.md, the Luma scenario): a CRM contacts CSV
and a loyalty JSON Lines file, each with the mapping a data engineer writes for it, and the web
and mobile event streams — all made from :func:`cdp.demo.generator.generate_profiles`, with the
people of the story (Sarah Rose, Mia Chen) woven in and a few broken rows, as real exports have.

Nothing here talks to a database: ``luma_sources(...)`` returns text and records; the loader
(:mod:`cdp.demo.load`) sends them through the service's own ingestion paths.

How the people of the generator become source data:

* a profile with a CRM id or an email is a CRM contact (a row of the CSV, in the CRM's spelling:
  ``MM/DD/YYYY`` birth dates, ``Womens``, ``Yes``/``No``, ``Y``/``N``, emails with stray case and
  blanks); the others are visitors the CRM never met — their events alone make them profiles;
* a loyalty member is a line of the loyalty file (``"tier": "Gold"``, the CRM reference, the email);
* events go to the stream of their channel (``mobile`` → the app's stream, the rest → the web
  site's): browsing carries the device's cookie only, except a visitor's first event on a device
  and every ``login``, which also carry the customer's CRM id or email (a signed-in visitor), so
  the identity graph can stitch them; email, store and call-center events carry the CRM id.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from cdp.demo.generator import generate_profiles

# ---- the people of the story -------------------------------------------------------------------

SARAH = {"crm_id": "C-1001", "email": "sarah.rose@example.com", "loyalty_id": "L-1001",
         "web_cookie": "ecid-7f3a", "phone_cookie": "ecid-9c2e"}
MIA = {"crm_id": "C-1002", "email": "mia.chen@example.com", "loyalty_id": "L-1002", "phone_cookie": "ecid-4b1d"}
SWEATSHIRTS = [
    {"sku": "MH01-L", "name": "Chaz Kangeroo Hoodie", "category": "mens", "size": "L", "price": 52.0},
    {"sku": "MH05-L", "name": "Marco Lightweight Active Hoodie", "category": "mens", "size": "L", "price": 74.0},
]
MIA_GIFT = {"sku": "KJ03-XS", "name": "Rainy Day Jacket", "category": "kids", "size": "XS", "price": 46.0}

# ---- the files and their mappings --------------------------------------------------------------

CRM_COLUMNS = ["Contact ID", "Email", "First Name", "Last Name", "Birth Date", "Gender", "Phone", "Street", "City",
               "Postal Code", "Country", "Preferred Category", "Preferred Size", "Interests", "Email Opt-In",
               "Email Consent", "SMS Consent", "Ads Consent", "Lifetime Value", "Created"]
CRM_MAPPING: dict[str, Any] = {
    "Contact ID": "identity.crm_id",
    "Email": {"to": "identity.email", "transforms": ["trim", "lower"]},
    "First Name": {"to": "person.first_name", "transforms": ["trim"]},
    "Last Name": {"to": "person.last_name", "transforms": ["trim"]},
    "Birth Date": {"to": "person.birth_date", "transforms": [{"parse_date": "%m/%d/%Y"}]},
    "Gender": {"to": "person.gender", "transforms": ["lower"]},
    "Phone": "identity.phone",
    "Street": "home_address.street",
    "City": "home_address.city",
    "Postal Code": "home_address.postal_code",
    "Country": {"to": "home_address.country", "transforms": ["trim"]},
    "Preferred Category": {"to": "preferred_category", "transforms": ["lower"]},
    "Preferred Size": {"to": "preferred_size", "transforms": ["trim"]},
    "Interests": {"to": "interests", "transforms": [{"split": ";"}]},
    "Email Opt-In": "email_opt_in",
    "Email Consent": {"to": "consents.email", "transforms": ["lower"]},
    "SMS Consent": {"to": "consents.sms", "transforms": ["lower"]},
    "Ads Consent": {"to": "consents.ads", "transforms": ["lower"]},
    "Lifetime Value": "lifetime_value",
    "Created": "created_at",
}
LOYALTY_MAPPING: dict[str, Any] = {
    "member_id": "identity.loyalty_id",
    "crm_ref": "identity.crm_id",
    "email": {"to": "identity.email", "transforms": ["trim", "lower"]},
    "tier": {"to": "loyalty.tier", "transforms": ["trim", "lower"]},
    "points": "loyalty.points",
    "joined": "loyalty.joined",
}

# Rows a real export has: each is rejected with its row number and reason, and kept for inspection.
# (file, the row's values, the column at fault) — the reason is the service's own.
_BAD_CRM_ROWS = [
    ({"Contact ID": "C-9001", "Email": "jon.doe@example.com", "First Name": "Jon", "Last Name": "Doe",
      "Birth Date": "31/02/1988", "Country": "US"}, "Birth Date"),
    ({"Contact ID": "C-9002", "Email": "ines.duarte@example.com", "First Name": "Inês", "Last Name": "Duarte",
      "Country": "Narnia"}, "Country"),
    ({"Contact ID": "C-9003", "Email": "kai.berg(at)example.com", "First Name": "Kai", "Last Name": "Berg",
      "Country": "DE"}, "Email"),
    ({"Contact ID": "C-9004", "Email": "lea.roux@example.com", "First Name": "Léa", "Last Name": "Roux",
      "Preferred Size": "XXXL", "Country": "FR"}, "Preferred Size"),
]
_BAD_LOYALTY_LINES = [
    '{"member_id": "L-9001", "crm_ref": "C-9011", "tier": "Diamond", "points": 900, "joined": "2023-05-01"}',
    '{"member_id": "L-9002", "crm_ref": "C-9012", "tier": "Silver", "points": "1,200", "joined": "2022-01-09"}',
    '{"member_id": "L-9003", "crm_ref": "C-9013", "tier": "Gold", "points": 2100, "joined": "2021-07',
]
ERROR_THRESHOLD = 0.1  # the share of rejected rows a file may have before nothing of it is applied


@dataclass
class LumaSources:
    """What Luma's systems deliver; ``expected_rejections`` lists (file, row number) of the bad rows."""

    as_of: datetime
    crm_csv: str
    loyalty_jsonl: str
    web_events: list[dict] = field(default_factory=list)
    mobile_events: list[dict] = field(default_factory=list)
    crm_rows: int = 0
    loyalty_rows: int = 0
    expected_rejections: list[tuple[str, int]] = field(default_factory=list)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _us_date(text: str | None) -> str:
    return "" if not text else date.fromisoformat(text).strftime("%m/%d/%Y")


def _yes(value: Any) -> str:
    return "" if value is None else ("Yes" if value else "No")


def _crm_row(crm_id: str, email: str | None, a: dict, index: int) -> dict[str, str]:
    person = a.get("person") or {}
    home = a.get("home_address") or {}
    consents = a.get("consents") or {}
    shown_email = email or ""
    if email and index % 7 == 0:
        shown_email = f" {email[0].upper()}{email[1:]} "  # as typed into the CRM: trimmed and lowered on upload
    return {
        "Contact ID": crm_id, "Email": shown_email, "First Name": person.get("first_name") or "",
        "Last Name": person.get("last_name") or "", "Birth Date": _us_date(person.get("birth_date")),
        "Gender": (person.get("gender") or "").capitalize(), "Phone": a.get("phone") or "",
        "Street": home.get("street") or "", "City": home.get("city") or "", "Postal Code": home.get("postal_code") or "",
        "Country": home.get("country") or "", "Preferred Category": (a.get("preferred_category") or "").capitalize(),
        "Preferred Size": a.get("preferred_size") or "", "Interests": ";".join(a.get("interests") or []),
        "Email Opt-In": _yes(a.get("email_opt_in")), "Email Consent": (consents.get("email") or "").upper(),
        "SMS Consent": (consents.get("sms") or "").upper(), "Ads Consent": (consents.get("ads") or "").upper(),
        "Lifetime Value": "" if a.get("lifetime_value") is None else str(a["lifetime_value"]),
        "Created": a.get("created_at") or "",
    }


def _story_contacts(as_of: datetime) -> tuple[list[dict[str, str]], list[dict]]:
    """Sarah's and Mia's CRM rows and loyalty lines."""
    sarah = {"person": {"first_name": "Sarah", "last_name": "Rose", "birth_date": "1991-11-02", "gender": "female"},
             "home_address": {"street": "12 Alder St", "city": "Portland", "postal_code": "97205", "country": "US"},
             "preferred_category": "womens", "preferred_size": "S", "interests": ["running", "yoga"],
             "email_opt_in": True, "consents": {"email": "y", "sms": "n", "ads": "y"}, "lifetime_value": 412.5,
             "created_at": _iso(as_of - timedelta(days=700))}
    mia = {"person": {"first_name": "Mia", "last_name": "Chen", "birth_date": "1987-06-21", "gender": "female"},
           "home_address": {"street": "8 Harbour Rd", "city": "Seattle", "postal_code": "98101", "country": "US"},
           "preferred_category": "womens", "preferred_size": "M", "interests": ["hiking"], "email_opt_in": False,
           "consents": {"email": "n", "sms": "n", "ads": "y"}, "lifetime_value": 1280.0,
           "created_at": _iso(as_of - timedelta(days=1500))}
    rows = [_crm_row(SARAH["crm_id"], "Sarah.Rose@example.com ", sarah, 1),
            _crm_row(MIA["crm_id"], MIA["email"], mia, 1)]
    loyalty = [{"member_id": SARAH["loyalty_id"], "crm_ref": SARAH["crm_id"], "email": SARAH["email"],
                "tier": "Bronze", "points": 120, "joined": "2024-04-12"},
               {"member_id": MIA["loyalty_id"], "crm_ref": MIA["crm_id"], "email": MIA["email"],
                "tier": "Gold", "points": 3150, "joined": "2020-09-30"}]
    return rows, loyalty


def luma_sources(count: int, *, as_of: datetime, seed: int = 42, events_per_profile: float = 8) -> LumaSources:
    """The sources for ``count`` generated people (plus the story's and the broken rows)."""
    as_of = as_of.astimezone(timezone.utc).replace(microsecond=0)
    crm_rows, loyalty_lines = _story_contacts(as_of)
    web: list[dict] = []
    mobile: list[dict] = []
    for index, document in enumerate(generate_profiles(count, seed=seed, as_of=as_of,
                                                       events_per_profile=events_per_profile), start=1):
        a = document["attributes"]
        ids = {i["namespace"]: i["id"] for i in document["identities"]}
        cookies = [i["id"] for i in document["identities"] if i["namespace"] == "ecid"]
        known = ({"namespace": "crm_id", "id": ids["crm_id"]} if "crm_id" in ids
                 else {"namespace": "email", "id": ids["email"]} if "email" in ids else None)
        if "crm_id" in ids or "email" in ids:
            crm_rows.append(_crm_row(ids.get("crm_id", ""), ids.get("email"), a, index))
        loyalty = a.get("loyalty")
        if loyalty and loyalty.get("id"):
            line: dict[str, Any] = {"member_id": loyalty["id"], "tier": (loyalty.get("tier") or "").capitalize() or None,
                                    "points": loyalty.get("points"), "joined": loyalty.get("joined")}
            if "crm_id" in ids:
                line["crm_ref"] = ids["crm_id"]
            if "email" in ids:
                line["email"] = ids["email"]
            loyalty_lines.append(line)
        seen: set[str] = set()
        for event in document["events"]:
            channel = event.get("channel")
            cookie = cookies[-1] if channel == "mobile" else cookies[0]
            if channel in ("email", "pos", "call_center"):
                identities = [known] if known else [{"namespace": "ecid", "id": cookies[0]}]
            else:
                identities = [{"namespace": "ecid", "id": cookie}]
                if known and (cookie not in seen or event["type"] == "login"):
                    identities.append(known)  # signed in: the site tells who it is
                seen.add(cookie)
            (mobile if channel == "mobile" else web).append({"identities": identities, "event": event})
    rejections: list[tuple[str, int]] = []
    for values, _column in _BAD_CRM_ROWS:  # spread over the file, as they would be
        position = min(len(crm_rows), 3 + 37 * len(rejections))
        crm_rows.insert(position, {c: values.get(c, "") for c in CRM_COLUMNS})
        rejections.append(("crm", position + 2))  # the header is row 1
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CRM_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(crm_rows)
    lines = [json.dumps({k: v for k, v in line.items() if v is not None}, ensure_ascii=False)
             for line in loyalty_lines]
    for k, bad in enumerate(_BAD_LOYALTY_LINES):
        position = min(len(lines), 5 + 41 * k)
        lines.insert(position, bad)
        rejections.append(("loyalty", position + 1))
    return LumaSources(as_of=as_of, crm_csv=out.getvalue(), loyalty_jsonl="\n".join(lines) + "\n", web_events=web,
                       mobile_events=mobile, crm_rows=len(crm_rows), loyalty_rows=len(lines),
                       expected_rejections=rejections)


# ---- the story's events ---------------------------------------------------------------------------


def _event(event_id: str, type_: str, at: datetime, channel: str, device: str, **fields: Any) -> dict:
    return {"id": event_id, "type": type_, "timestamp": _iso(at), "channel": channel, "device": {"type": device},
            **fields}


def browsing(at: datetime) -> list[dict]:
    """Step 1: an anonymous visitor (a web cookie only) views two men's running sweatshirts."""
    cookie = [{"namespace": "ecid", "id": SARAH["web_cookie"]}]
    return [{"identities": cookie, "event": _event(f"story-w-{k}", "productView", at + timedelta(minutes=2 * k),
                                                   "web", "desktop", product=dict(p),
                                                   page={"url": f"https://luma.com/men/{p['sku'].lower()}"})}
            for k, p in enumerate(SWEATSHIRTS, start=1)]


def cart_and_login(at: datetime) -> list[dict]:
    """Step 2: she adds the size L sweatshirt to her cart (still anonymous), then logs in: the login
    carries her cookie, her email and her CRM id."""
    cookie = {"namespace": "ecid", "id": SARAH["web_cookie"]}
    return [{"identities": [cookie], "event": _event("story-w-3", "addToCart", at, "web", "desktop",
                                                     product={**SWEATSHIRTS[0], "quantity": 1})},
            {"identities": [cookie, {"namespace": "email", "id": "Sarah.Rose@example.com"},
                            {"namespace": "crm_id", "id": SARAH["crm_id"]}],
             "event": _event("story-w-4", "login", at + timedelta(minutes=1), "web", "desktop")}]


def mia_gift_cart(at: datetime) -> list[dict]:
    """Step 6: Mia, a gold member who buys womens M, leaves a kids' XS jacket in her cart on her phone."""
    ids = [{"namespace": "ecid", "id": MIA["phone_cookie"]}, {"namespace": "crm_id", "id": MIA["crm_id"]}]
    return [{"identities": ids, "event": _event("story-m-1", "addToCart", at, "mobile", "phone",
                                                product={**MIA_GIFT, "quantity": 1})}]


def purchase_on_phone(at: datetime) -> list[dict]:
    """Step 8: Sarah buys the sweatshirt on her phone, logged in (a new cookie and her CRM id)."""
    ids = [{"namespace": "ecid", "id": SARAH["phone_cookie"]}, {"namespace": "crm_id", "id": SARAH["crm_id"]}]
    order = {"id": "O-1001", "total": SWEATSHIRTS[0]["price"], "currency": "USD"}
    return [{"identities": ids, "event": _event("story-m-2", "login", at, "mobile", "phone")},
            {"identities": ids, "event": _event("story-m-3", "purchase", at + timedelta(seconds=30), "mobile", "phone",
                                                product={**SWEATSHIRTS[0], "quantity": 1}, order=order)}]
