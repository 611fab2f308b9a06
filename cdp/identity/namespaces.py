"""Identity namespaces: the built-in ones, custom ones per sandbox, and how each namespace's values
are normalised and validated (pure functions, except the lookups of a sandbox's custom ones).

Every namespace has a *kind* — ``cookie`` (a browser or app cookie: many per person, short-lived),
``device`` (a device id: a few per person) or ``person`` (an id of the person: email, phone, CRM
id…). The kind decides what the graph limit drops first (cdp/identity/graph.py).

Normalisation (so that one person's identity is one value, however sources spell it):

* ``email`` — trimmed, lower-cased; must look like ``local@domain.tld`` (one ``@``, no spaces);
* ``phone`` — to E.164 (``+14155550123``): spaces, dots, dashes and brackets ignored; a number
  needs its country code (``+`` or ``00``) unless a default region is configured
  (``CDP_DEFAULT_PHONE_REGION``, e.g. ``US``); numbers the numbering plan does not allow are
  rejected;
* every other namespace — trimmed (case is kept: cookie and CRM ids are case-sensitive).

Rejected everywhere: an empty value, one over 512 characters, control characters, and
placeholder values sources send when they know nothing (``null``, ``none``, ``undefined``,
``anonymous``, ``unknown``, ``n/a``, ``-``, ``0``), in any case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
import sqlalchemy as sa

MAX_IDENTITY_LENGTH = 512
PLACEHOLDERS = frozenset({"null", "none", "nil", "undefined", "anonymous", "unknown", "n/a", "na", "-", "0"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_CODE = re.compile(r"[a-z][a-z0-9_]{1,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class NamespaceKind(StrEnum):
    cookie = "cookie"
    device = "device"
    person = "person"


# what the graph limit drops first: lower rank first
KIND_RANK = {NamespaceKind.cookie: 0, NamespaceKind.device: 1, NamespaceKind.person: 2}


@dataclass(frozen=True)
class Namespace:
    code: str
    name: str
    kind: NamespaceKind
    builtin: bool
    description: str | None = None


BUILTIN_NAMESPACES: dict[str, Namespace] = {ns.code: ns for ns in (
    Namespace("ecid", "Experience Cloud ID (web or mobile cookie)", NamespaceKind.cookie, True),
    Namespace("email", "Email address", NamespaceKind.person, True),
    Namespace("phone", "Phone number (E.164)", NamespaceKind.person, True),
    Namespace("crm_id", "CRM id", NamespaceKind.person, True),
    Namespace("loyalty_id", "Loyalty program id", NamespaceKind.person, True),
)}


class IdentityValueError(ValueError):
    """A value a namespace does not accept; the message says why (quoting the value, for the
    sender of a record), ``reason`` says why without the value (for messages that end up in logs:
    identities are personal data)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def valid_code(code: str) -> bool:
    return bool(_CODE.fullmatch(code))


def normalize(namespace: str, value: object, *, default_phone_region: str | None = None) -> str:
    """The value as stored for ``namespace``; IdentityValueError when it is not acceptable."""
    if not isinstance(value, str):
        raise IdentityValueError(f"an identity id is a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise IdentityValueError("an identity id must not be empty")
    if len(text) > MAX_IDENTITY_LENGTH:
        raise IdentityValueError(f"an identity id is at most {MAX_IDENTITY_LENGTH} characters (got {len(text)})")
    if _CONTROL.search(text):
        raise IdentityValueError("an identity id must not contain control characters")
    if text.lower() in PLACEHOLDERS:
        raise IdentityValueError(f"{text!r} is a placeholder, not an identity (send no identity instead)",
                                 "the value is a placeholder, not an identity")
    if namespace == "email":
        text = text.lower()
        if not _EMAIL.fullmatch(text):
            raise IdentityValueError(f"{text[:80]!r} is not an email address (local@domain.tld)",
                                     "the value is not an email address (local@domain.tld)")
    elif namespace == "phone":
        text = _e164(text, default_phone_region)
    return text


def _e164(text: str, default_region: str | None) -> str:
    candidate = "+" + text[2:] if text.startswith("00") else text
    if not candidate.startswith("+") and default_region is None:
        raise IdentityValueError(f"{text[:40]!r}: a phone number needs its country code (+44 20 7946 0958); no "
                                 f"default region is configured (CDP_DEFAULT_PHONE_REGION)",
                                 "a phone number needs its country code (+44 20 7946 0958)")
    try:
        number = phonenumbers.parse(candidate, None if candidate.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise IdentityValueError(f"{text[:40]!r} is not a phone number ({exc._msg})",
                                 "the value is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise IdentityValueError(f"{text[:40]!r} is not a possible phone number (wrong length for its country)",
                                 "the value is not a possible phone number (wrong length for its country)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_CUSTOM = None


def sandbox_namespaces(*, connection: sa.Connection, sandbox: str) -> Mapping[str, Namespace]:
    """The namespaces of a sandbox: the built-in ones and its custom ones, by code."""
    global _CUSTOM
    if _CUSTOM is None:  # built once (building a Core statement costs more than running it)
        from cdp.storage.models import identity_namespaces as table

        _CUSTOM = sa.select(table).where(table.c.sandbox == sa.bindparam("b_sandbox")).order_by(table.c.code)
    found = dict(BUILTIN_NAMESPACES)
    for row in connection.execute(_CUSTOM, {"b_sandbox": sandbox}):
        found[row.code] = Namespace(row.code, row.name, NamespaceKind(row.kind), False, row.description)
    return found


def namespace_codes(*, connection: sa.Connection, sandbox: str) -> tuple[str, ...]:
    """The namespace codes a record may use in this sandbox (built-in first)."""
    return tuple(sandbox_namespaces(connection=connection, sandbox=sandbox))
