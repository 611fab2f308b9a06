"""The delivery log of a destination, newest first by cursor, and redelivery of dead letters."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.activation.models import DeliveryPage, DeliveryRead, DeliveryStatus
from cdp.activation.service import destination_row
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.storage.models import deliveries


def _cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(f"d:{pk}".encode()).decode().rstrip("=")


def _before(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        prefix, value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":", 1)
        if prefix != "d":
            raise ValueError(prefix)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise Unprocessable("invalid cursor: pass the `next` of the previous page", code="invalid_cursor",
                            details={"cursor": cursor[:64]}) from None


def delivery_read(row) -> DeliveryRead:
    return DeliveryRead(id=row.delivery_id, at=row.created_at, status=row.status, attempts=row.attempts,
                        changes=row.change_count, excluded_no_consent=row.excluded_no_consent,
                        activation=row.activation_pk, response_status=row.response_status, error=row.error,
                        next_attempt_at=row.next_attempt_at if row.status in ("pending", "retrying") else None,
                        delivered_at=row.delivered_at, file=row.file)


def list_deliveries(*, connection: sa.Connection, sandbox: str, destination_id: int, limit: int,
                    cursor: str | None = None, statuses: list[DeliveryStatus] | None = None) -> DeliveryPage:
    row = destination_row(connection, sandbox, destination_id)
    before = _before(cursor)
    query = sa.select(deliveries).where(deliveries.c.destination_pk == row.pk)
    if before is not None:
        query = query.where(deliveries.c.pk < before)
    if statuses:
        query = query.where(deliveries.c.status.in_([s.value for s in statuses]))
    rows = connection.execute(query.order_by(deliveries.c.pk.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(items=[delivery_read(r) for r in rows], next=_cursor(rows[-1].pk) if more else None)


def get_delivery(*, connection: sa.Connection, sandbox: str, destination_id: int, delivery_id: str):
    row = destination_row(connection, sandbox, destination_id)
    found = connection.execute(sa.select(deliveries).where(deliveries.c.destination_pk == row.pk,
                                                           deliveries.c.delivery_id == delivery_id)).first()
    if found is None:
        raise NotFound.resource("delivery", delivery_id, sandbox)
    return found


def redeliver(*, connection: sa.Connection, sandbox: str, destination_id: int, delivery_id: str | None = None,
              now: datetime | None = None) -> int:
    """Dead deliveries of the destination (or the one named) go back in the queue, with their
    attempts counted afresh and the same delivery id. Returns how many."""
    now = now or datetime.now(timezone.utc)
    row = destination_row(connection, sandbox, destination_id)
    if row.type != "webhook":
        raise Conflict(f"destination {row.pk} writes files: POST /v1/destinations/{row.pk}/export exports again",
                       code="not_redeliverable", details={"destination": row.pk})
    condition = [deliveries.c.destination_pk == row.pk, deliveries.c.status == "dead"]
    if delivery_id is not None:
        found = get_delivery(connection=connection, sandbox=sandbox, destination_id=destination_id,
                             delivery_id=delivery_id)
        condition.append(deliveries.c.pk == found.pk)
    result = connection.execute(deliveries.update().where(*condition).values(
        status="retrying", attempts=0, next_attempt_at=now, updated_at=now))
    return result.rowcount
