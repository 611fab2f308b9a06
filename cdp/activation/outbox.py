"""How far the outbox of membership changes can be read without missing a row.

``membership_changes.pk`` comes from a sequence, but on PostgreSQL transactions commit in any
order: a reader that saw pk 12 may later see pk 11 appear (its transaction took the number
first and committed last). A cursor that had moved past 11 would miss it. :class:`Horizon`
therefore only moves over a gap in the numbers once no transaction that could still fill it is
running. Each time it meets a gap it notes a *mark*: the highest pk it can see and a fresh
transaction id (``pg_current_xact_id()``, which gives the reader one: every transaction that had an
id by then is below it). A snapshot's ``xmax`` is not such a bound — it is one past the highest
*completed* id, and a transaction still running can be above it (a stress test of concurrent
writers skipped rows that way). Every number at or below the mark's pk that is still missing
belongs to a transaction below the mark's id, so all those gaps are settled together once the
oldest running transaction (the snapshot's ``xmin``) is at or past it — and at least
``settle_seconds`` later, for the instant between a transaction's sequence number and its id. One
mark covers every gap seen at once: under concurrent writers, settling gaps one by one (a second
or more each) let the horizon fall minutes behind (the soak of issue 22: a delivery lag of 51 s at
the median). A gap that never fills (a rolled-back transaction) is passed over the same way.
SQLite has one writer at a time, so numbers commit in order and a gap is never filled later.

Every activation reads the rows of its segment up to the horizon (its own cursor below it).
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from cdp.storage.models import membership_changes

SCAN = 5_000


class Horizon:
    """The largest pk such that every row with a smaller or equal pk that will ever exist is
    visible now. One per process (state: the marks being waited on)."""

    def __init__(self, *, settle_seconds: float = 1.0):
        self.safe: int | None = None
        self.settle_seconds = settle_seconds
        self._marks: list[tuple[int, int, float]] = []  # (highest pk seen, a new xid then, when), oldest first

    def start(self, at: int) -> None:
        if self.safe is None or at < self.safe:
            self.safe = at

    def advance(self, connection: sa.Connection) -> int:
        if self.safe is None:
            self.safe = 0
        postgres = connection.dialect.name == "postgresql"
        settled_through: int | None = None  # every gap at or below it is settled; read once per call
        try:
            while True:
                pks = connection.execute(sa.select(membership_changes.c.pk).where(membership_changes.c.pk > self.safe)
                                         .order_by(membership_changes.c.pk).limit(SCAN)).scalars().all()
                expected = self.safe + 1
                for pk in pks:
                    if pk != expected and postgres:
                        if settled_through is None:
                            settled_through = self._settled_through(connection, highest_seen=pks[-1])
                        if pk - 1 > settled_through:  # the gap expected … pk-1 may still fill
                            return self.safe
                    self.safe = pk
                    expected = pk + 1
                if len(pks) < SCAN:
                    return self.safe
        finally:
            while self._marks and self._marks[0][0] <= self.safe:  # covers nothing the horizon has not passed
                self._marks.pop(0)

    def _settled_through(self, connection: sa.Connection, *, highest_seen: int) -> int:
        """The highest pk of a settled mark (0 if none), after noting a new mark for the gaps seen
        now if no mark covers them yet."""
        now = time.monotonic()
        settled, xmin = 0, None
        for seen, bound, when in self._marks:
            if now - when < self.settle_seconds:
                break  # marks are in time order: the rest are younger
            if xmin is None:
                xmin = connection.execute(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                                          ).scalar_one()
            if xmin >= bound:
                settled = max(settled, seen)
        if not self._marks or self._marks[-1][0] < highest_seen:
            # The reader's own id, taken at once; its transaction ends with this advance.
            bound = connection.execute(sa.text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
            self._marks.append((highest_seen, bound, now))
        return settled
