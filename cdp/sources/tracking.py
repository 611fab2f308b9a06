"""The tracking API of the analytics SDKs (the "Segment spec": identify, track, page, screen,
group, alias, and batch), as a source bound to a dataset pair.

An SDK posts ``{"batch": [message, ...], "sentAt"}`` (or one message to ``/v1/<type>``) with its
write key as the HTTP basic-auth user name. Each message becomes a streaming record and goes
through :func:`cdp.ingestion.service.ingest_records` — the very path of
``POST /v1/datasets/{id}/records`` (identity graph, merges, idempotent events):

* ``identify`` → a profile record: ``userId`` / ``anonymousId`` / ``traits.email`` → identities,
  traits → profile attributes (the mapping's ``traits`` table over the defaults below; a trait
  named like a profile field maps onto it);
* ``alias`` → a profile record linking ``userId`` and ``previousId`` (the graph merges their
  profiles) — unless both are identities of a unique namespace (by default both are ``crm_id``
  identities, and the linking rules keep one ``crm_id`` per graph): then the alias is rejected
  (:func:`alias_refused`) and the profiles stay apart;
* ``track`` → an event: its name through the ``events`` table (or itself when the schema has that
  event type), ``properties`` through the ``properties`` table; ``page`` / ``screen`` →
  ``pageView`` with ``page.url``;
* ``group`` → the group's id on the member's profile when the mapping says where
  (``group.group_id``), else rejected (the schema has no accounts);
* ``messageId`` → the event id, so an SDK's retry is a duplicate, not a second event;
* the time: ``timestamp + (receivedAt − sentAt)`` — the device clock's skew removed, as the spec
  says (``sentAt`` from the message or the batch); without ``timestamp``, ``receivedAt``.

Traits and properties that map onto nothing are reported (a warning kept with the message),
rejected, or ignored, as the mapping's ``unknown`` says. A message that cannot be stored is
rejected alone: the others of its batch are stored, and the SDK is answered
``{"success": true}`` — SDKs do not read per-message results, so they are kept per source
(``GET /v1/sources/{id}/messages``) and counted (``cdp_source_messages_total``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from cdp.schema import Schema

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_BATCH_BYTES = 500 * 1024  # the SDKs' own limit per request (after gzip is undone)
MAX_MESSAGE_BYTES = 32 * 1024  # per message
RAW_KEPT_BYTES = 2048

# Segment's reserved traits → the Luma schema (entries whose field the schema in force lacks are left out)
DEFAULT_TRAITS: dict[str, str] = {
    "email": "email", "phone": "phone",
    "firstName": "person.first_name", "first_name": "person.first_name",
    "lastName": "person.last_name", "last_name": "person.last_name",
    "birthday": "person.birth_date", "gender": "person.gender",
    "address.street": "home_address.street", "address.city": "home_address.city",
    "address.postalCode": "home_address.postal_code", "address.postal_code": "home_address.postal_code",
    "address.country": "home_address.country", "createdAt": "created_at", "created_at": "created_at",
}
# Segment's e-commerce spec event names → the Luma event types
DEFAULT_EVENTS: dict[str, str] = {
    "Product Viewed": "productView", "Product Added": "addToCart", "Product Removed": "removeFromCart",
    "Checkout Started": "checkout", "Order Completed": "purchase", "Signed In": "login",
    "Email Opened": "emailOpen", "Email Link Clicked": "emailClick",
}
# Segment's e-commerce spec properties → the Luma event fields
DEFAULT_PROPERTIES: dict[str, str] = {
    "url": "page.url", "sku": "product.sku", "product_id": "product.sku", "name": "product.name",
    "category": "product.category", "size": "product.size", "price": "product.price",
    "quantity": "product.quantity", "order_id": "order.id", "total": "order.total", "revenue": "order.total",
    "currency": "order.currency",
}
_MOBILE_OS = {"ios", "ipados", "android"}


@dataclass(frozen=True)
class Rules:
    """A tracking source's mapping, resolved against the schema in force."""

    user_ns: str
    anonymous_ns: str
    previous_ns: str
    email_ns: str | None
    traits: dict[str, str | None]
    events: dict[str, str | None]
    properties: dict[str, str | None]
    group_field: str | None
    unknown: str
    channel: str | None
    schema: Schema


def rules_of(mapping: Mapping[str, Any], config: Mapping[str, Any], schema: Schema) -> Rules:
    profile, event = schema.profile, schema.all_event_fields()
    return Rules(
        user_ns=mapping.get("user_id", "crm_id"), anonymous_ns=mapping.get("anonymous_id", "ecid"),
        previous_ns=mapping.get("previous_id") or mapping.get("user_id", "crm_id"),
        email_ns=mapping.get("email", "email"),
        traits={**{k: v for k, v in DEFAULT_TRAITS.items() if v in profile}, **mapping.get("traits", {})},
        events={**{k: v for k, v in DEFAULT_EVENTS.items() if v in schema.event_types}, **mapping.get("events", {})},
        properties={**{k: v for k, v in DEFAULT_PROPERTIES.items() if v in event}, **mapping.get("properties", {})},
        group_field=mapping.get("group", {}).get("group_id"), unknown=mapping.get("unknown", "report"),
        channel=config.get("channel", "web"), schema=schema)


def mapping_problems(mapping: Mapping[str, Any], schema: Schema, namespaces: list[str]) -> list[str]:
    """What is wrong with a tracking mapping against the schema and the sandbox's namespaces."""
    problems = []
    for key in ("user_id", "anonymous_id", "previous_id", "email"):
        value = mapping.get(key)
        if value is not None and value not in namespaces:
            problems.append(f"mapping.{key}: unknown namespace {value!r}; one of {', '.join(namespaces)}")
    for name, target in mapping.get("traits", {}).items():
        if target is not None and target not in schema.profile:
            problems.append(f"mapping.traits[{name!r}]: {target!r} is not a profile field of the schema in force")
    for name, target in mapping.get("events", {}).items():
        if target is not None and target not in schema.event_types:
            problems.append(f"mapping.events[{name!r}]: {target!r} is not an event type of the schema in force "
                            f"({', '.join(schema.event_types)})")
    fields = schema.all_event_fields()
    for name, target in mapping.get("properties", {}).items():
        if target is not None and (target not in fields or target in ("id", "type", "timestamp")):
            problems.append(f"mapping.properties[{name!r}]: {target!r} is not an event field of the schema in force")
    group_field = mapping.get("group", {}).get("group_id")
    if group_field is not None and group_field not in schema.profile:
        problems.append(f"mapping.group.group_id: {group_field!r} is not a profile field of the schema in force")
    return problems


# ---- one message ---------------------------------------------------------------------------------

@dataclass
class Translated:
    """A message as a record for one dataset kind, or its errors; ``warnings`` name what was left out."""

    kind: str | None = None  # "profile" | "event"
    record: dict | None = None
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    message_id: str | None = None
    type: str | None = None


def _err(path: str, message: str) -> dict:
    return {"path": path, "message": message}


def alias_refused(namespace: str) -> dict:
    """Why an alias of two identities of one unique namespace is rejected (the linking rules)."""
    return _err("previousId", f"alias refused by the identity linking rules: userId and previousId are two {namespace} "
                              f"identities and {namespace} is a unique namespace of this sandbox (a profile holds at "
                              f"most one; GET /v1/identity/settings), so their profiles stay apart. For aliases to "
                              f"merge them, take {namespace} out of unique_namespaces (PUT /v1/identity/settings)")


def parse_instant(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected an ISO 8601 time, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{path}: {value[:60]!r} is not an ISO 8601 time") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def corrected_time(message: Mapping, batch_sent_at: Any, received_at: datetime) -> datetime:
    """``timestamp + (receivedAt − sentAt)``: the device's clock skew removed (the Segment spec)."""
    raw = message.get("timestamp", message.get("originalTimestamp"))
    if raw is None:
        return received_at
    timestamp = parse_instant(raw, "timestamp")
    sent = message.get("sentAt", batch_sent_at)
    if sent is None:
        return timestamp
    return timestamp + (received_at - parse_instant(sent, "sentAt"))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value} if prefix else {}


def _nest(document: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        document = document.setdefault(part, {})
    document[parts[-1]] = value


def _fit(value: Any, type_name: str | None) -> Any:
    """SDK values as the schema wants them: an ISO datetime for a date field keeps its date;
    a date object (a Python SDK serialises it as text already) likewise."""
    if type_name == "date" and isinstance(value, str) and len(value) > 10 and value[4:5] == "-" and value[10] in "T ":
        return value[:10]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def _map(values: dict[str, Any], table: dict[str, str | None], fields: Mapping, where: str, rules: Rules,
         translated: Translated, skip: tuple[str, ...] = ()) -> dict:
    """Flattened ``values`` through ``table`` (then same-named fields) into a nested document;
    the rest reported / rejected / ignored as the rules say."""
    document: dict = {}
    unknown = []
    for path, value in _flatten(values).items():
        if path in skip:
            continue
        target = table[path] if path in table else (path if path in fields else "")
        if target is None:  # mapped to nothing on purpose
            continue
        if not target:
            # a dotted prefix may be mapped (address → home_address) only leaf by leaf; say which is unknown
            unknown.append(path)
            continue
        if value is None:
            continue
        type_ = fields.get(target)
        _nest(document, target, _fit(value, getattr(type_, "name", None)))
    if unknown and rules.unknown != "ignore":
        entry = _err(where, f"{len(unknown)} {where.split('.')[0]} map onto no field of the schema: "
                            f"{', '.join(map(repr, unknown[:20]))}" + (" …" if len(unknown) > 20 else "")
                     + " (map them in the source's mapping, or set unknown: ignore)")
        (translated.errors if rules.unknown == "reject" else translated.warnings).append(entry)
    return document


def _identity(namespace: str | None, value: Any) -> dict | None:
    if namespace is None or value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return {"namespace": namespace, "id": str(value)}


def message_id_of(message: Mapping) -> str:
    """``messageId``, or — for a client that sends none — a digest of the message, so that the
    same message sent twice is still one event."""
    given = message.get("messageId")
    if isinstance(given, (str, int)) and not isinstance(given, bool) and str(given):
        return str(given)[:256]
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def translate(message: Any, *, type_: str | None, batch_sent_at: Any, received_at: datetime, rules: Rules
              ) -> Translated:
    """One message of the tracking API as a streaming record (or why not)."""
    out = Translated()
    if not isinstance(message, dict):
        out.errors.append(_err("", f"a message is a JSON object, got {type(message).__name__}"))
        return out
    size = len(json.dumps(message, separators=(",", ":"), default=str).encode())
    kind = type_ or message.get("type")
    out.type = kind if isinstance(kind, str) else None
    out.message_id = message_id_of(message)
    if size > MAX_MESSAGE_BYTES:
        out.errors.append(_err("", f"message_too_large: {size:,} bytes; at most {MAX_MESSAGE_BYTES:,} per message"))
        return out
    if kind not in MESSAGE_TYPES:
        out.errors.append(_err("type", f"unknown message type {kind!r}; one of {', '.join(MESSAGE_TYPES)}"))
        return out
    try:
        when = corrected_time(message, batch_sent_at, received_at)
    except ValueError as exc:
        out.errors.append(_err(str(exc).split(":")[0], str(exc)))
        return out
    schema = rules.schema
    identities: list[dict] = []
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    # identify traits sit at the root (Segment) or in context.traits (RudderStack); other calls may
    # carry the user's traits in context.traits
    context_traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
    root_traits = message.get("traits") if isinstance(message.get("traits"), dict) else {}
    traits = {**context_traits, **root_traits} if kind == "identify" else (
        root_traits if kind == "group" else context_traits)
    try:
        pairs = [("userId", rules.user_ns, message.get("userId")),
                 ("anonymousId", rules.anonymous_ns, message.get("anonymousId"))]
        if kind == "alias":
            pairs.append(("previousId", rules.previous_ns, message.get("previousId")))
        if kind != "group":
            pairs.append(("traits.email", rules.email_ns, traits.get("email")))
        for path, namespace, value in pairs:
            try:
                identity = _identity(namespace, value)
            except ValueError as exc:
                out.errors.append(_err(path, str(exc)))
                continue
            if identity is not None and identity not in identities:
                identities.append(identity)
    except AttributeError:  # noqa - defensive: a non-dict traits was handled above
        pass
    if out.errors:
        return out
    if kind == "alias":
        if message.get("userId") in (None, "") or message.get("previousId") in (None, ""):
            out.errors.append(_err("previousId", "an alias needs userId and previousId"))
            return out
    elif message.get("userId") in (None, "") and message.get("anonymousId") in (None, ""):
        out.errors.append(_err("userId", "a message needs userId or anonymousId"))
        return out
    if kind in ("identify", "alias", "group"):
        out.kind = "profile"
        attributes: dict = {}
        if kind == "identify":
            attributes = _map(traits, rules.traits, schema.profile, "traits", rules, out)
        elif kind == "group":
            if rules.group_field is None:
                out.errors.append(_err("groupId", "group calls are not mapped: the schema has no accounts; set the "
                                                  "source's mapping.group.group_id to a profile field to keep the "
                                                  "group's id on the member's profile"))
                return out
            group_id = message.get("groupId")
            if group_id in (None, ""):
                out.errors.append(_err("groupId", "a group call needs groupId"))
                return out
            _nest(attributes, rules.group_field, str(group_id))
        if out.errors:
            return out
        out.record = {"identities": identities, "timestamp": when.isoformat(), "attributes": attributes}
        return out
    # events
    out.kind = "event"
    properties = message.get("properties") if isinstance(message.get("properties"), dict) else {}
    fields = schema.all_event_fields()
    if kind == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name:
            out.errors.append(_err("event", "a track call needs an event name"))
            return out
        if name in rules.events:
            event_type = rules.events[name]
            if event_type is None:  # the mapping says to ignore it: accepted, nothing stored
                out.kind = None
                return out
        elif name in schema.event_types:
            event_type = name
        else:
            out.errors.append(_err("event", f"event {name!r} is not mapped and is not an event type of the schema "
                                            f"({', '.join(schema.event_types)}); map it in the source's "
                                            f"mapping.events"))
            return out
    else:  # page, screen
        event_type = "pageView"
    event = _map(properties, rules.properties, fields, "properties", rules, out,
                 skip=("path", "referrer", "title", "search", "name", "category", "keywords") if kind in ("page", "screen")
                 else ())
    if out.errors:
        return out
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    if "page.url" in fields and "page" not in event and isinstance(page.get("url"), str):
        event["page"] = {"url": page["url"]}
    if rules.channel is not None and "channel" in fields and "channel" not in event:
        os_name = str((context.get("os") or {}).get("name", "")).lower() if isinstance(context.get("os"), dict) else ""
        event["channel"] = "mobile" if kind == "screen" or os_name in _MOBILE_OS else rules.channel
    event.update({"id": out.message_id, "type": event_type, "timestamp": when.isoformat()})
    out.record = {"identities": identities, "event": event}
    return out
