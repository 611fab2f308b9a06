"""How far the outbox of membership changes can be read without missing a row.

``membership_changes.pk`` comes from a sequence, but on PostgreSQL transactions commit in any
order: a reader that saw pk 12 may later see pk 11 appear (its transaction took the number
first and committed last). A cursor that had moved past 11 would miss it. :class:`Horizon`
therefore only moves over a gap in the numbers once no transaction that could still fill it is
running: when the gap is first seen it notes the snapshot's ``xmax`` (every transaction that had
an id by then is below it), and the gap is settled when the oldest running transaction
(``xmin``) is at or past that mark — and at least ``settle_seconds`` later, for the instant
between a transaction's sequence number and its id. A gap that never fills (a rolled-back
transaction) is passed over that way too. SQLite has one writer at a time, so numbers commit in
order and a gap is never filled later.

Every activation reads the rows of its segment up to the horizon (its own cursor below it).
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from cdp.storage.models import membership_changes

SCAN = 5_000


class Horizon:
    """The largest pk such that every row with a smaller or equal pk that will ever exist is
    visible now. One per process (state: the gaps being waited on)."""

    def __init__(self, *, settle_seconds: float = 1.0):
        self.safe: int | None = None
        self.settle_seconds = settle_seconds
        self._gaps: dict[int, tuple[int, float]] = {}  # first missing pk → (xmax when seen, when seen)

    def start(self, at: int) -> None:
        if self.safe is None or at < self.safe:
            self.safe = at

    def advance(self, connection: sa.Connection) -> int:
        if self.safe is None:
            self.safe = 0
        postgres = connection.dialect.name == "postgresql"
        while True:
            pks = connection.execute(sa.select(membership_changes.c.pk).where(membership_changes.c.pk > self.safe)
                                     .order_by(membership_changes.c.pk).limit(SCAN)).scalars().all()
            expected = self.safe + 1
            for pk in pks:
                if pk != expected and postgres and not self._settled(connection, expected):
                    return self.safe
                self._gaps.pop(expected, None)
                self.safe = pk
                expected = pk + 1
            if len(pks) < SCAN:
                return self.safe

    def _settled(self, connection: sa.Connection, missing: int) -> bool:
        seen = self._gaps.get(missing)
        if seen is None:
            xmax = connection.execute(sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                                      ).scalar_one()
            self._gaps[missing] = (xmax, time.monotonic())
            return False
        xmax, when = seen
        if time.monotonic() - when < self.settle_seconds:
            return False
        xmin = connection.execute(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")).scalar_one()
        return xmin >= xmax
