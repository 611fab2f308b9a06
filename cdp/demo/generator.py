"""A deterministic generator of Luma profile documents (SPEC.md "The profile document").

``generate_profiles(count, seed=…)`` yields plain JSON-ready dicts that use the fields of the
Luma schema only (SPEC.md "The Luma schema"). Everything is drawn from one
``random.Random(seed)``, so the same arguments always give the same documents, on every machine
and Python version that keeps ``random``'s documented reproducibility; and the first ``k``
documents of ``generate_profiles(n)`` are the documents of ``generate_profiles(k)``.

What the data looks like (roughly; all of it is random, none of it is tuned to a query):

* identities: a web cookie (``ecid``) always, sometimes a second (mobile) one; ``email``,
  ``crm_id``, ``phone`` and ``loyalty_id`` when the profile has them.
* attributes: about 62 % are loyalty members (tiers bronze 45 %, silver 30 %, gold 18 %,
  platinum 7 %; points grow with the tier), the others have no ``loyalty`` object or
  ``"loyalty": null``; a few members have no tier. Countries are mostly US (~70 %), then CA, GB,
  DE, FR, AU, some with ``"country": null`` and some profiles without an address. Preferred
  category and size are missing for about 1 in 10 profiles; names, birth dates, emails, phones,
  interests and consents are present for most and null or absent for some.
* events: on average ``events_per_profile`` per profile (a skewed count: many profiles have a
  few, some have many), in sessions spread over the 120 days before ``as_of``, never after it:
  browsing funnels (``pageView`` → ``productView`` → ``addToCart`` → ``checkout`` →
  ``purchase``, with product fields and orders), logins, email campaigns (``emailSent`` →
  ``emailOpen`` → ``emailClick``), in-store purchases and call-center contacts. Products come
  mostly from the profile's preferred category and in its preferred size.
* about 4 % of loyalty members get a *gift-giving* session in the last 7 days: they add to the
  cart a product off their preferred category and size and do not buy it (the "Gift-giving cart
  abandoners" of DSL.md §13), and about 3 % get the same session followed by a purchase within
  hours (near misses, which the segment must leave out unless another cart qualifies).

Timestamps are ISO 8601 UTC text with a ``Z`` (``"2026-11-27T18:04:00Z"``); dates are
``YYYY-MM-DD``. Profile ids are ``p-0000001``, ``p-0000002`` …; event ids are
``<profile id>-e001`` … in time order.

Also runnable: ``python -m cdp.demo.generator --count 1000 [--seed 42] > profiles.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import date, datetime, timedelta, timezone
from typing import IO, Any, Iterator

__all__ = ["DEFAULT_AS_OF", "HISTORY_DAYS", "generate_profiles", "write_jsonl", "main"]

DEFAULT_AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
HISTORY_DAYS = 120  # events fall in (as_of − 120 days, as_of]

# ---- reference data ---------------------------------------------------------------------------

_FIRST_NAMES = {
    "female": ["Sarah", "Mia", "Emma", "Olivia", "Ava", "Sophia", "Isabella", "Amelia", "Chloe", "Grace",
               "Lucy", "Hannah", "Zoe", "Nora", "Leah", "Maya", "Aisha", "Yuki", "Elena", "Priya"],
    "male": ["Liam", "Noah", "Oliver", "James", "Lucas", "Henry", "Ethan", "Mateo", "Jack", "Leo",
             "Daniel", "Samuel", "David", "Arjun", "Kenji", "Omar", "Felix", "Hugo", "Max", "Ben"],
    "non-binary": ["Alex", "Jordan", "Taylor", "Riley", "Casey", "Quinn", "Avery", "Sam"],
}
_LAST_NAMES = ["Rose", "Chen", "Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis",
               "Martinez", "Lopez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Lee",
               "Walker", "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson",
               "Patel", "Kim", "Nguyen", "Müller", "Schmidt", "Dubois", "Moreau", "O'Brien", "Tanaka"]
_EMAIL_DOMAINS = (["example.com"] * 5 + ["gmail.com"] * 4 + ["yahoo.com"] * 2 + ["outlook.com"] * 2
                  + ["luma.com", "icloud.com"])

# country → (weight, cities with postal-code makers, currency, phone prefix)
_COUNTRIES: list[tuple[str | None, float]] = [
    ("US", 70.0), ("CA", 8.0), ("GB", 7.0), ("DE", 5.0), ("FR", 4.0), ("AU", 3.0), (None, 3.0),
]
_CITIES = {
    "US": [("Portland", "972"), ("Seattle", "981"), ("San Francisco", "941"), ("New York", "100"),
           ("Austin", "787"), ("Chicago", "606"), ("Denver", "802"), ("Boston", "021"), ("Miami", "331")],
    "CA": [("Toronto", "M5V"), ("Vancouver", "V6B"), ("Montreal", "H2X"), ("Calgary", "T2P")],
    "GB": [("London", "SW1A"), ("Manchester", "M1"), ("Leeds", "LS1"), ("Bristol", "BS1")],
    "DE": [("Berlin", "101"), ("Munich", "803"), ("Hamburg", "201")],
    "FR": [("Paris", "750"), ("Lyon", "690"), ("Marseille", "130")],
    "AU": [("Sydney", "20"), ("Melbourne", "30"), ("Brisbane", "40")],
}
_CURRENCY = {"US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "AU": "AUD", None: "USD"}
_STREETS = ["Main St", "Oak Ave", "Pine St", "Maple Rd", "Cedar Ln", "High St", "Park Ave", "Lake Dr",
            "River Rd", "Hill St"]

_TIERS = [("bronze", 45), ("silver", 30), ("gold", 18), ("platinum", 7)]
_TIER_POINTS = {"bronze": (0, 900), "silver": (300, 2500), "gold": (1500, 6000), "platinum": (5000, 20000)}
_CATEGORIES = ["mens", "womens", "kids", "gear"]
_CATEGORY_WEIGHTS = [30, 38, 14, 18]
_SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
_SIZE_WEIGHTS = [6, 20, 30, 24, 14, 6]
_INTERESTS = ["running", "yoga", "hiking", "training", "cycling", "swimming", "tennis", "climbing"]

# the Luma catalogue: category → [(sku stem, name, price)]; gear has no sizes
_PRODUCTS = {
    "mens": [("MH01", "Chaz Kangeroo Hoodie", 52.0), ("MH05", "Marco Lightweight Active Hoodie", 74.0),
             ("MS04", "Gobi HeatTec Tee", 29.0), ("MJ01", "Beaumont Summit Kit", 42.0),
             ("MP03", "Geo Insulated Jogging Pant", 51.0), ("MSH02", "Apollo Running Short", 32.5),
             ("MT07", "Argus All-Weather Tank", 22.0)],
    "womens": [("WH01", "Mona Pullover Hoodlie", 57.0), ("WS03", "Iris Workout Top", 29.0),
               ("WJ04", "Ingrid Running Jacket", 84.0), ("WP07", "Aeon Capri", 48.0),
               ("WB02", "Sahara Leggings", 64.0), ("WT09", "Breathe-Easy Tank", 34.0),
               ("WSH05", "Erika Running Short", 45.0)],
    "kids": [("KH01", "Junior Trail Hoodie", 35.0), ("KT02", "Little Sprinter Tee", 18.0),
             ("KP01", "Playground Jogger", 28.0), ("KJ03", "Rainy Day Jacket", 46.0)],
    "gear": [("24-MB01", "Joust Duffle Bag", 34.0), ("24-WG02", "Didi Sport Watch", 92.0),
             ("24-UG06", "Affirm Water Bottle", 7.0), ("24-UG01", "Quest Lumaflex Band", 19.0),
             ("24-WB04", "Overnight Duffle", 45.0), ("24-UG04", "Zing Jump Rope", 12.0),
             ("24-UG05", "Go-Get'r Pushup Grips", 19.0)],
}
_PAGES = ["/", "/men", "/women", "/kids", "/gear", "/sale", "/whats-new", "/training", "/collections/yoga"]
_CAMPAIGNS = [("cmp-101", "Black Friday Preview"), ("cmp-102", "Winter Running"), ("cmp-103", "Yoga Essentials"),
              ("cmp-104", "Loyalty Double Points"), ("cmp-105", "Gift Guide")]

_DAY_SECONDS = 86400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_TEXT: dict[int, str] = {}  # days since 1970-01-01 → "YYYY-MM-DD" (formatting is the hot path)


def _iso(seconds: int) -> str:
    """Whole seconds since the Unix epoch as ISO 8601 UTC text with a Z."""
    day, rest = divmod(seconds, _DAY_SECONDS)
    text = _DAY_TEXT.get(day)
    if text is None:
        text = _DAY_TEXT[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{text}T{hours:02d}:{minutes:02d}:{secs:02d}Z"


# ---- the generator ----------------------------------------------------------------------------


class _ProfileMaker:
    """Draws one profile at a time from the shared random stream."""

    def __init__(self, rng: random.Random, as_of: datetime, events_per_profile: float):
        self.rng = rng
        self.as_of = as_of.astimezone(timezone.utc).replace(microsecond=0)
        self.as_of_s = int(self.as_of.timestamp())  # event times are whole seconds since the epoch
        self.mean_events = max(0.0, float(events_per_profile))
        self.country_names = [c for c, _w in _COUNTRIES]
        self.country_weights = [w for _c, w in _COUNTRIES]
        self.tier_names = [t for t, _w in _TIERS]
        self.tier_weights = [w for _t, w in _TIERS]

    # -- attributes --------------------------------------------------------------------------

    def profile(self, index: int) -> dict[str, Any]:
        rng = self.rng
        pid = f"p-{index:07d}"
        gender = rng.choices(["female", "male", "non-binary", None], [48, 46, 3, 3])[0]
        first = rng.choice(_FIRST_NAMES[gender or rng.choice(["female", "male"])])
        last = rng.choice(_LAST_NAMES)
        person: dict[str, Any] = {"first_name": first, "last_name": last}
        if gender is not None:
            person["gender"] = gender
        elif rng.random() < 0.5:
            person["gender"] = None
        if rng.random() < 0.9:
            born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 56))
            person["birth_date"] = born.isoformat()
        attributes: dict[str, Any] = {"person": person}
        identities = [{"namespace": "ecid", "id": f"ecid-{index:07d}-w"}]
        if rng.random() < 0.35:
            identities.append({"namespace": "ecid", "id": f"ecid-{index:07d}-m"})

        if rng.random() < 0.8:
            email = f"{_ascii(first).lower()}.{_ascii(last).lower()}{index}@{rng.choice(_EMAIL_DOMAINS)}"
            attributes["email"] = email
            identities.append({"namespace": "email", "id": email})
        elif rng.random() < 0.3:
            attributes["email"] = None
        if rng.random() < 0.6:
            crm_id = f"CRM-{index:07d}"
            attributes["crm_id"] = crm_id
            identities.append({"namespace": "crm_id", "id": crm_id})

        country = rng.choices(self.country_names, self.country_weights)[0]
        address_roll = rng.random()
        if address_roll < 0.04:
            pass  # no address at all
        elif address_roll < 0.06:
            attributes["home_address"] = None
        else:
            home = country if country is not None else rng.choice(list(_CITIES))
            city, postal = rng.choice(_CITIES[home])
            attributes["home_address"] = {
                "street": f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}",
                "city": city,
                "postal_code": f"{postal}{rng.randint(10, 99)}",
                "country": country,  # None for a few: an address without a country
            }
        if rng.random() < 0.4:
            phone = f"+1-{rng.randint(200, 989)}-555-{rng.randint(0, 9999):04d}"
            attributes["phone"] = phone
            identities.append({"namespace": "phone", "id": phone})

        member = False
        loyalty_roll = rng.random()
        if loyalty_roll < 0.62:
            member = True
            tier = rng.choices(self.tier_names, self.tier_weights)[0] if rng.random() > 0.02 else None
            lo, hi = _TIER_POINTS[tier or "bronze"]
            loyalty_id = f"L-{index:07d}"
            joined = self.as_of.date() - timedelta(days=rng.randrange(30, 365 * 6))
            attributes["loyalty"] = {"id": loyalty_id, "tier": tier, "points": rng.randint(lo, hi),
                                     "joined": joined.isoformat()}
            identities.append({"namespace": "loyalty_id", "id": loyalty_id})
        elif loyalty_roll < 0.70:
            attributes["loyalty"] = None

        category = rng.choices(_CATEGORIES, _CATEGORY_WEIGHTS)[0] if rng.random() < 0.9 else None
        size = rng.choices(_SIZES, _SIZE_WEIGHTS)[0] if rng.random() < 0.9 else None
        if category is not None:
            attributes["preferred_category"] = category
        if size is not None:
            attributes["preferred_size"] = size
        if rng.random() < 0.75:
            attributes["interests"] = rng.sample(_INTERESTS, rng.choice([0, 1, 1, 2, 2, 3]))
        opt_in = rng.random() < 0.65
        attributes["email_opt_in"] = opt_in
        attributes["consents"] = {"email": "y" if opt_in else "n",
                                  "sms": "y" if rng.random() < 0.3 else "n",
                                  "ads": rng.choice(["y", "y", "n", None])}
        attributes["lifetime_value"] = round(rng.lognormvariate(5.0, 1.1), 2) if rng.random() < 0.85 else None
        attributes["created_at"] = _iso(self.as_of_s - rng.randrange(_DAY_SECONDS * 30, _DAY_SECONDS * 365 * 6))

        events = self.events(pid, country, category, size, member)
        return {"id": pid, "identities": identities, "attributes": attributes, "events": events}

    # -- events ------------------------------------------------------------------------------

    def event_count(self) -> int:
        """A skewed count with the requested mean: floor of an exponential draw (mean m + 0.5)."""
        if self.mean_events <= 0:
            return 0
        return min(int(self.rng.expovariate(1.0 / (self.mean_events + 0.5))), int(self.mean_events * 20) + 1)

    def product(self, preferred_category: str | None, preferred_size: str | None, *, off: bool = False) -> dict:
        """A product: from the preferred category and size mostly; off both when ``off``."""
        rng = self.rng
        if off:
            pool = [c for c in _CATEGORIES if c != preferred_category and c != "gear"]
            category = rng.choice(pool)
        elif preferred_category is not None and rng.random() < 0.7:
            category = preferred_category
        else:
            category = rng.choices(_CATEGORIES, _CATEGORY_WEIGHTS)[0]
        stem, name, price = rng.choice(_PRODUCTS[category])
        product: dict[str, Any] = {"category": category, "name": name, "price": price}
        if category == "gear":
            product["sku"] = stem
        else:
            if off:
                size = rng.choice([s for s in _SIZES if s != preferred_size])
            elif preferred_size is not None and rng.random() < 0.75:
                size = preferred_size
            else:
                size = rng.choices(_SIZES, _SIZE_WEIGHTS)[0]
            product["sku"] = f"{stem}-{size}"
            product["size"] = size
        return product

    def browse_session(self, category, size, currency, *, login: bool, product: dict | None = None,
                       buy: bool | None = None) -> list[tuple[float, dict]]:
        """A web or mobile visit: (seconds from session start, event body) pairs."""
        rng = self.rng
        channel = "mobile" if rng.random() < 0.4 else "web"
        device = "phone" if channel == "mobile" and rng.random() < 0.85 else rng.choice(["desktop", "tablet"])
        if channel == "web" and device == "tablet" and rng.random() < 0.7:
            device = "desktop"
        out: list[tuple[float, dict]] = []
        t = 0.0

        def add(body: dict) -> None:
            nonlocal t
            body["channel"] = channel
            body["device"] = {"type": device}
            out.append((t, body))
            t += rng.uniform(8, 240)

        if login:
            add({"type": "login"})
        for _ in range(rng.choice([1, 1, 2, 3])):
            page: dict[str, Any] = {"type": "pageView", "page": {"url": "https://luma.com" + rng.choice(_PAGES)}}
            if rng.random() < 0.15:
                cid, cname = rng.choice(_CAMPAIGNS)
                page["campaign"] = {"id": cid, "name": cname}
            add(page)
        viewed = [product] if product is not None else []
        for _ in range(rng.choice([0, 1, 1, 2, 3, 4]) if product is None else rng.choice([0, 1])):
            viewed.append(self.product(category, size))
        for p in viewed:
            add({"type": "productView", "product": dict(p)})
        if not viewed:
            return out
        if product is not None:
            carted = [product]
        else:
            carted = [p for p in viewed if rng.random() < 0.3]
        for p in carted:
            add({"type": "addToCart", "product": {**p, "quantity": rng.choice([1, 1, 1, 2])}})
        if carted and rng.random() < 0.1:
            p = carted.pop()
            add({"type": "removeFromCart", "product": dict(p)})
        if not carted:
            return out
        if buy is None:
            buy = rng.random() < 0.45
        if not buy:
            return out
        add({"type": "checkout"})
        if rng.random() < 0.15:  # bought later, up to a few hours after the checkout
            t += rng.uniform(600, 6 * 3600)
        order_id = f"O-{rng.randrange(16 ** 10):010x}"
        total = round(sum(p["price"] for p in carted), 2)
        for p in carted:  # one purchase event per line of the order
            add({"type": "purchase", "product": dict(p),
                 "order": {"id": order_id, "total": total, "currency": currency}})
        return out

    def email_session(self) -> list[tuple[float, dict]]:
        rng = self.rng
        cid, cname = rng.choice(_CAMPAIGNS)
        campaign = {"id": cid, "name": cname}
        out: list[tuple[float, dict]] = [(0.0, {"type": "emailSent", "channel": "email", "campaign": dict(campaign)})]
        if rng.random() < 0.4:
            t = rng.uniform(300, 2 * _DAY_SECONDS)
            out.append((t, {"type": "emailOpen", "channel": "email", "campaign": dict(campaign)}))
            if rng.random() < 0.3:
                t += rng.uniform(5, 120)
                out.append((t, {"type": "emailClick", "channel": "email", "campaign": dict(campaign)}))
                t += rng.uniform(2, 30)
                out.append((t, {"type": "pageView", "channel": "web", "device": {"type": "desktop"},
                                "page": {"url": "https://luma.com/sale"}, "campaign": dict(campaign)}))
        return out

    def store_session(self, category, size, currency) -> list[tuple[float, dict]]:
        rng = self.rng
        order_id = f"S-{rng.randrange(16 ** 10):010x}"
        items = [self.product(category, size) for _ in range(rng.choice([1, 1, 2]))]
        total = round(sum(p["price"] for p in items), 2)
        return [(float(k), {"type": "purchase", "channel": "pos", "product": p,
                            "order": {"id": order_id, "total": total, "currency": currency}})
                for k, p in enumerate(items)]

    def events(self, pid: str, country, category, size, member: bool) -> list[dict]:
        rng = self.rng
        currency = _CURRENCY.get(country, "USD")
        budget = self.event_count()
        sessions: list[tuple[float, list[tuple[float, dict]]]] = []  # (start, seconds before as_of)

        # gift-giving: an off-category, off-size cart in the last 7 days, left there (or not)
        if member and category is not None and size is not None and budget > 0:
            roll = rng.random()
            if roll < 0.07:
                gift = self.product(category, size, off=True)
                session = self.browse_session(category, size, currency, login=rng.random() < 0.5,
                                              product=gift, buy=roll >= 0.04)
                sessions.append((rng.uniform(60, 7 * _DAY_SECONDS), session))
                budget = max(0, budget - len(session))

        while budget > 0:
            kind = rng.random()
            if kind < 0.62:
                session = self.browse_session(category, size, currency, login=rng.random() < 0.3)
            elif kind < 0.90:
                session = self.email_session()
            elif kind < 0.97:
                session = self.store_session(category, size, currency)
            else:
                session = [(0.0, {"type": "callCenter", "channel": "call_center"})]
            session = session[:budget]  # the last session may be cut short, as a visit would be
            budget -= len(session)
            sessions.append((rng.uniform(0, HISTORY_DAYS * _DAY_SECONDS), session))

        stamped: list[tuple[int, dict]] = []
        lowest = self.as_of_s - HISTORY_DAYS * _DAY_SECONDS + 1
        for back, session in sessions:
            length = session[-1][0] if session else 0.0
            # the whole session lies in (as_of − 120 days, as_of]: start `back` seconds ago,
            # or earlier when the session would otherwise run past as_of
            start = max(lowest, self.as_of_s - int(max(back, length + 1)))
            for offset, body in session:
                stamped.append((start + int(offset), body))
        stamped.sort(key=lambda pair: pair[0])
        out = []
        for k, (t, body) in enumerate(stamped, start=1):
            event = {"id": f"{pid}-e{k:03d}", "type": body.pop("type"), "timestamp": _iso(t)}
            event.update(body)
            out.append(event)
        return out


def _ascii(name: str) -> str:
    return name.replace("ü", "ue").replace("'", "")


def generate_profiles(count: int, *, seed: int = 42, as_of: datetime = DEFAULT_AS_OF,
                      events_per_profile: float = 10) -> Iterator[dict[str, Any]]:
    """Yield ``count`` Luma profile documents (SPEC.md), deterministically from ``seed``.

    ``as_of`` is the instant the data is "as of": every event lies in the 120 days before it,
    and never after it. ``events_per_profile`` is the mean number of events per profile (the
    count per profile is skewed; 0 gives profiles without events). Each document is a fresh
    dict the caller may keep or change.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    maker = _ProfileMaker(random.Random(seed), as_of, events_per_profile)
    for index in range(1, count + 1):
        yield maker.profile(index)


def write_jsonl(out: IO[str], count: int, **options: Any) -> int:
    """Write ``generate_profiles(count, **options)`` as JSON Lines; returns the number written."""
    written = 0
    for document in generate_profiles(count, **options):
        out.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdp.demo.generator",
                                     description="Write generated Luma profile documents as JSON Lines.")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", default=None, help="ISO 8601 instant (default 2026-11-28T12:00:00Z)")
    parser.add_argument("--events-per-profile", type=float, default=10)
    args = parser.parse_args(argv)
    as_of = DEFAULT_AS_OF
    if args.as_of:
        as_of = datetime.fromisoformat(args.as_of)
        as_of = as_of.replace(tzinfo=timezone.utc) if as_of.tzinfo is None else as_of.astimezone(timezone.utc)
    try:
        write_jsonl(sys.stdout, args.count, seed=args.seed, as_of=as_of, events_per_profile=args.events_per_profile)
        sys.stdout.flush()
    except BrokenPipeError:  # `… | head`: the reader has all it wanted
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
