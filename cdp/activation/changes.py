"""Membership changes as a destination receives them, with consent applied.

Every change of an activation goes through :func:`apply_changes`, which keeps what the
destination holds of each profile in ``activation_members``:

* an entry of a profile with the destination's consent (its consent attribute is ``"y"``) is
  sent with the mapped identities and attributes, and the profile is ``exported`` (with the
  identities sent, so its removal can name them even after the profile is gone);
* an entry without consent is not sent: the profile is ``excluded`` and counted;
* an exit is sent (a removal) only for an ``exported`` profile — the destination never heard of
  the others; the row goes;
* a second entry of an exported profile, or an exit of one not there, sends nothing: so a
  change seen twice (a backfill overlapping the outbox, a retried pump) is harmless.

:func:`consent_changes` finds the exported members whose consent was withdrawn (a removal) and
the excluded ones who gave it (an entry).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from cdp.profiles.documents import api_value
from cdp.schema import Schema
from cdp.storage.models import activation_members, identities, memberships, profiles

MEMBER = ("realized", "existing")


@dataclass(frozen=True)
class Change:
    profile_pk: int
    profile_id: str
    status: str  # entered | exited
    at: datetime
    withdrawn: bool = False  # an exit for a consent withdrawn: the profile stays, excluded


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def leaves(attributes: Sequence[str], schema: Schema) -> list[str]:
    """Leaf paths of the mapped attributes (an object path stands for the fields under it)."""
    found: list[str] = []
    for path in attributes:
        if path in schema.profile:
            found.append(path)
        elif path in schema.profile_objects:
            found += sorted(k for k in schema.profile if k.startswith(path + "."))
    return list(dict.fromkeys(found))


def _profiles(connection: sa.Connection, pks: Iterable[int]) -> dict[int, Any]:
    pks = sorted(set(pks))
    found: dict[int, Any] = {}
    for start in range(0, len(pks), 2000):
        chunk = pks[start:start + 2000]
        for row in connection.execute(sa.select(profiles.c.pk, profiles.c.external_id, profiles.c.attributes)
                                      .where(profiles.c.pk.in_(chunk))):
            found[row.pk] = row
    return found


def identities_of(connection: sa.Connection, pks: Iterable[int], namespaces: Sequence[str]) -> dict[int, dict]:
    pks = sorted(set(pks))
    found: dict[int, dict[str, list[str]]] = {}
    if not namespaces:
        return found
    for start in range(0, len(pks), 2000):
        chunk = pks[start:start + 2000]
        for row in connection.execute(sa.select(identities.c.profile_pk, identities.c.namespace, identities.c.value)
                                      .where(identities.c.profile_pk.in_(chunk),
                                             identities.c.namespace.in_(list(namespaces)))
                                      .order_by(identities.c.pk)):
            found.setdefault(row.profile_pk, {}).setdefault(row.namespace, []).append(row.value)
    return found


def consented(attributes: dict | None, consent: str | None) -> bool:
    return consent is None or (attributes or {}).get(consent) == "y"


def apply_changes(connection: sa.Connection, *, activation, consent: str | None, segment_key: str, schema: Schema,
                  changes: Sequence[Change], now: datetime) -> tuple[list[dict], int]:
    """The changes to send (the API's change shape) and how many were left out for want of
    consent; ``activation_members`` follows (see the module doc)."""
    pks = [c.profile_pk for c in changes]
    held = {row.profile_pk: row for row in connection.execute(
        sa.select(activation_members).where(activation_members.c.activation_pk == activation.pk,
                                            activation_members.c.profile_pk.in_(sorted(set(pks)))))} if pks else {}
    original = set(held)
    touched: set[int] = set()
    entering = [c.profile_pk for c in changes if c.status == "entered"]
    rows = _profiles(connection, entering)
    ids = identities_of(connection, entering, activation.identities)
    paths = leaves(activation.attributes, schema)
    types = {p: str(schema.profile_type(p)) for p in paths}
    out: list[dict] = []
    excluded = 0
    for change in changes:
        current = held.get(change.profile_pk)
        state = current.state if current is not None else None
        if change.status == "entered":
            profile = rows.get(change.profile_pk)
            if profile is None or state == "exported":
                continue  # gone since (its exit follows), or there already
            touched.add(change.profile_pk)
            if not consented(profile.attributes, consent):
                excluded += 1
                held[change.profile_pk] = _Held("excluded", None)
                continue
            sent_ids = ids.get(change.profile_pk, {})
            values = profile.attributes or {}
            out.append({"profile_id": change.profile_id, "segment": segment_key, "status": "entered",
                        "at": iso(change.at), "identities": sent_ids,
                        "attributes": {p: api_value(values[p], types[p]) for p in paths if values.get(p) is not None}})
            held[change.profile_pk] = _Held("exported", sent_ids)
        else:
            if state is None:
                continue
            touched.add(change.profile_pk)
            if change.withdrawn:
                held[change.profile_pk] = _Held("excluded", None)
            else:
                held.pop(change.profile_pk, None)
            if state == "exported":
                out.append({"profile_id": change.profile_id, "segment": segment_key, "status": "exited",
                            "at": iso(change.at), "identities": current.identities or {}, "attributes": {}})
    # what the destination holds now, written set-wise: the rows touched go, their new states come
    gone = sorted(touched & original)
    for start in range(0, len(gone), 500):
        connection.execute(activation_members.delete().where(activation_members.c.activation_pk == activation.pk,
                                                             activation_members.c.profile_pk.in_(gone[start:start + 500])))
    kept = [{"activation_pk": activation.pk, "profile_pk": pk, "state": held[pk].state,
             "identities": held[pk].identities, "updated_at": now} for pk in sorted(touched) if pk in held]
    if kept:
        connection.execute(activation_members.insert(), kept)
    return out, excluded


@dataclass(frozen=True)
class _Held:
    state: str
    identities: dict | None


def backfill_page(connection: sa.Connection, *, segment_pk: int, after: int, limit: int) -> list[Change]:
    """The segment's members after profile pk ``after``, as entries (when they entered)."""
    rows = connection.execute(
        sa.select(memberships.c.profile_pk, profiles.c.external_id, memberships.c.entered_at)
        .join(profiles, profiles.c.pk == memberships.c.profile_pk)
        .where(memberships.c.segment_pk == segment_pk, memberships.c.status.in_(MEMBER),
               memberships.c.profile_pk > after).order_by(memberships.c.profile_pk).limit(limit)).all()
    return [Change(r.profile_pk, r.external_id, "entered", r.entered_at) for r in rows]


def consent_changes(connection: sa.Connection, *, activation, consent: str, since: datetime | None,
                    now: datetime, limit: int = 10_000) -> list[Change]:
    """Exported members whose consent is no longer "y" (exits) and excluded members, still in the
    segment, whose consent is "y" now (entries); only profiles changed since ``since`` (None: all)."""
    query = (sa.select(activation_members.c.profile_pk, activation_members.c.state, profiles.c.external_id,
                       profiles.c.attributes)
             .join(profiles, profiles.c.pk == activation_members.c.profile_pk)
             .where(activation_members.c.activation_pk == activation.pk))
    if since is not None:
        query = query.where(profiles.c.updated_at >= since)
    found: list[Change] = []
    excluded_now_consenting = []
    for row in connection.execute(query.order_by(activation_members.c.profile_pk).limit(limit)):
        ok = consented(row.attributes, consent)
        if row.state == "exported" and not ok:
            found.append(Change(row.profile_pk, row.external_id, "exited", now, withdrawn=True))
        elif row.state == "excluded" and ok:
            excluded_now_consenting.append(row)
    if excluded_now_consenting:
        members = set(connection.execute(sa.select(memberships.c.profile_pk).where(
            memberships.c.segment_pk == activation.segment_pk, memberships.c.status.in_(MEMBER),
            memberships.c.profile_pk.in_([r.profile_pk for r in excluded_now_consenting]))).scalars())
        for row in excluded_now_consenting:
            if row.profile_pk in members:
                # the excluded row goes first, so the entry is sent (not skipped as "excluded")
                connection.execute(activation_members.delete().where(
                    activation_members.c.activation_pk == activation.pk,
                    activation_members.c.profile_pk == row.profile_pk))
                found.append(Change(row.profile_pk, row.external_id, "entered", now))
    return found
