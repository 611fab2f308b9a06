"""Webhook delivery from the outbox of membership changes: at least once, in order per profile,
retried with backoff, dead after a limit.

Two steps, each durable in the database, so a restart (or a kill) resumes where it was:

1. :func:`pump` — for each active webhook activation, the changes of its segment past its
   cursor (up to the outbox :class:`~cdp.activation.outbox.Horizon`) — first, once, the members
   the segment had when the activation started — become a ``deliveries`` row (consent applied:
   cdp/activation/changes.py), and the cursor moves, in one transaction. A row made is a row
   that will be sent.
2. :func:`send_next` — a destination's oldest delivery not yet delivered or dead is POSTed
   (``X-CDP-Signature: sha256=<HMAC-SHA256 of the body with the secret>``). 2xx: delivered.
   Anything else — a refused connection, a timeout, another status — is an attempt: the
   delivery waits ``backoff × 2^(attempts−1)`` (at most ``max_backoff``), scaled by a random
   50–100 % (jitter), and is tried again; after ``max_attempts`` it is ``dead`` and the next one
   goes (``POST /v1/destinations/{id}/redeliver`` sends it again). A destination sends one
   delivery at a time, oldest first, so a profile's changes arrive in order; a POST whose answer
   was lost is sent again with the same ``delivery_id`` — receivers deduplicate by it.

:class:`DeliveryWorker` (cdp/activation/worker.py) runs both in threads of the service, apart
from the request threads: a slow or dead receiver never holds a transaction, so it never slows
ingestion.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa

from cdp.activation.changes import Change, apply_changes, backfill_page, consent_changes
from cdp.activation.settings import ActivationSettings
from cdp.schema_registry.service import get_schema
from cdp.storage.database import write_transaction
from cdp.storage.models import activations, deliveries, destinations, membership_changes, segments

log = logging.getLogger("cdp.activation")
SIGNATURE_HEADER = "X-CDP-Signature"
READ_BATCHES = 10  # a pump transaction reads up to this many deliveries' worth of changes


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _locked_activation(connection: sa.Connection, activation_pk: int):
    query = (sa.select(activations, segments.c.key.label("segment_key"), destinations.c.consent,
                       destinations.c.type.label("destination_type"))
             .join(segments, segments.c.pk == activations.c.segment_pk)
             .join(destinations, destinations.c.pk == activations.c.destination_pk)
             .where(activations.c.pk == activation_pk))
    if connection.dialect.name == "postgresql":  # two servers never make the same delivery twice
        query = query.with_for_update(of=activations)
    return connection.execute(query).first()


def record(connection: sa.Connection, activation, changes: list[dict], excluded: int, now: datetime,
           batch_size: int) -> None:
    """Delivery rows for ``changes``, ``batch_size`` to a row (nothing when there are none: the
    exclusions are counted on the activation; a delivery's own count is on its first row)."""
    rows = [changes[at:at + batch_size] for at in range(0, len(changes), batch_size)]
    if not rows:
        return
    connection.execute(deliveries.insert(), [{
        "sandbox": activation.sandbox, "destination_pk": activation.destination_pk, "activation_pk": activation.pk,
        "delivery_id": str(uuid.uuid4()), "status": "pending", "attempts": 0, "changes": part,
        "change_count": len(part), "excluded_no_consent": excluded if n == 0 else 0, "next_attempt_at": now,
        "created_at": now, "updated_at": now} for n, part in enumerate(rows)])


def pump_activation(engine: sa.Engine, activation_pk: int, *, horizon: int, now: datetime,
                    settings: ActivationSettings, consent_since: datetime | None | bool = False) -> int:
    """Up to ``READ_BATCHES`` batches of one activation turned into deliveries, in one
    transaction; how many changes it read (fewer than the limit: caught up). ``consent_since``:
    also look for consent changes of profiles changed since then (None: all; False: not now)."""
    limit = settings.batch_size * READ_BATCHES
    with write_transaction(engine) as connection:
        activation = _locked_activation(connection, activation_pk)
        if activation is None or activation.status != "active" or activation.destination_type != "webhook":
            return 0
        schema = get_schema(connection=connection, sandbox=activation.sandbox)
        values: dict = {}
        if activation.backfill_after is not None:
            found = backfill_page(connection, segment_pk=activation.segment_pk, after=activation.backfill_after,
                                  limit=limit)
            values["backfill_after"] = found[-1].profile_pk if len(found) == limit else None
        else:
            rows = connection.execute(
                sa.select(membership_changes).where(membership_changes.c.segment_pk == activation.segment_pk,
                                                    membership_changes.c.pk > activation.cursor,
                                                    membership_changes.c.pk <= horizon)
                .order_by(membership_changes.c.pk).limit(limit)).all()
            found = [Change(r.profile_pk, r.profile_id, r.status, r.at) for r in rows]
            if rows and rows[-1].pk != activation.cursor:
                values["cursor"] = rows[-1].pk
            if consent_since is not False and activation.consent and len(rows) < limit:
                found += consent_changes(connection, activation=activation, consent=activation.consent,
                                         since=consent_since, now=now)
        changes, excluded = apply_changes(connection, activation=activation, consent=activation.consent,
                                          segment_key=activation.segment_key, schema=schema, changes=found, now=now)
        record(connection, activation, changes, excluded, now, settings.batch_size)
        if values:
            connection.execute(activations.update().where(activations.c.pk == activation.pk).values(**values))
        return len(found)


def pump(engine: sa.Engine, *, horizon: int, now: datetime, settings: ActivationSettings,
         consent_since: datetime | None | bool = False) -> int:
    """Every due webhook activation with something to do, until caught up; how many changes were
    read. Finding out is a read, so an idle pump never takes a write lock."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(activations.c.pk, activations.c.segment_pk, activations.c.cursor, activations.c.backfill_after,
                      destinations.c.consent).join(destinations, destinations.c.pk == activations.c.destination_pk)
            .where(activations.c.status == "active", activations.c.start_at <= now, activations.c.end_at > now,
                   destinations.c.type == "webhook").order_by(activations.c.pk)).all()
        due = [row.pk for row in rows if row.backfill_after is not None
               or (consent_since is not False and row.consent)
               or connection.execute(sa.select(membership_changes.c.pk).where(
                   membership_changes.c.segment_pk == row.segment_pk, membership_changes.c.pk > row.cursor,
                   membership_changes.c.pk <= horizon).limit(1)).first() is not None]
    total = 0
    for pk in due:
        first = True
        while True:
            read = pump_activation(engine, pk, horizon=horizon, now=now, settings=settings,
                                   consent_since=consent_since if first else False)
            first = False
            total += read
            if read < settings.batch_size * READ_BATCHES:
                break
    return total


# ---- sending -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    status: int | None
    error: str | None


class Poster:
    """One kept-alive HTTP connection to a receiver (a new one after any failure)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._origin: tuple | None = None

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname, parts.port)
        if self._connection is None or self._origin != origin:
            self.close()
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            self._connection = kind(parts.hostname or "", parts.port, timeout=self.timeout)
            self._origin = origin
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            self._connection.request("POST", path, body=body, headers=headers)
            response = self._connection.getresponse()
            response.read(65536)
            if response.will_close:
                self.close()
            status = response.status
            return Outcome(200 <= status < 300, status, None if 200 <= status < 300 else f"HTTP {status} "
                                                                                       f"{response.reason}")
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return Outcome(False, None, f"{type(error).__name__}: {error}"[:500])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None


def backoff(attempts: int, settings: ActivationSettings) -> timedelta:
    wait = min(settings.backoff_seconds * 2 ** max(attempts - 1, 0), settings.max_backoff_seconds)
    return timedelta(seconds=wait * random.uniform(0.5, 1.0))


def next_due(connection: sa.Connection, destination_pk: int):
    return connection.execute(sa.select(deliveries).where(deliveries.c.destination_pk == destination_pk,
                                                          deliveries.c.status.in_(("pending", "retrying")))
                              .order_by(deliveries.c.pk).limit(1)).first()


def send_next(engine: sa.Engine, destination_pk: int, *, poster: Poster, now_fn, settings: ActivationSettings
              ) -> datetime | None | bool:
    """Send the destination's oldest open delivery if it is due. True: one was attempted (look
    again); a datetime: the next is due then; None: nothing open."""
    with engine.connect() as connection:
        head = next_due(connection, destination_pk)
        if head is None:
            return None
        if head.next_attempt_at is not None and head.next_attempt_at > now_fn():
            return head.next_attempt_at
        destination = connection.execute(sa.select(destinations.c.pk, destinations.c.config, destinations.c.secret)
                                         .where(destinations.c.pk == destination_pk)).first()
    body = json.dumps({"destination": destination.pk, "delivery_id": head.delivery_id, "changes": head.changes},
                      separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "cdp-activation",
               "X-CDP-Delivery": head.delivery_id}
    if destination.secret:
        headers[SIGNATURE_HEADER] = signature(destination.secret, body)
    outcome = poster.post(destination.config["url"], body, headers)
    now = now_fn()
    attempts = head.attempts + 1
    if outcome.ok:
        values = {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
    elif attempts >= settings.max_attempts:
        values = {"status": "dead", "next_attempt_at": None}
        log.warning("delivery %s to destination %s is dead after %s attempts: %s", head.delivery_id, destination_pk,
                    attempts, outcome.error)
    else:
        values = {"status": "retrying", "next_attempt_at": now + backoff(attempts, settings)}
    with write_transaction(engine) as connection:
        # only if nobody else (a redelivery, another server) changed it meanwhile
        connection.execute(deliveries.update().where(deliveries.c.pk == head.pk,
                                                     deliveries.c.attempts == head.attempts,
                                                     deliveries.c.status == head.status).values(
            attempts=attempts, response_status=outcome.status, error=outcome.error, updated_at=now, **values))
    return True


def open_destinations(connection: sa.Connection) -> list[int]:
    """Webhook destinations with deliveries not yet delivered or dead."""
    return connection.execute(sa.select(deliveries.c.destination_pk).where(
        deliveries.c.status.in_(("pending", "retrying"))).distinct()).scalars().all()
