"""Memberships of profiles in segments, and the two records every change leaves.

Statuses (API.md): ``realized`` — entered at ``entered_at``; ``existing`` — still a member (a
batch run turns realized into existing); ``exited`` — left at ``exited_at``. A profile that
qualifies and was not a member (or had exited) is realized now; a member that no longer
qualifies exits now. A membership row is kept after an exit (with its times), so a re-entry
updates it.

Every entry and exit is written to the outbox ``membership_changes`` in the same transaction as
the membership (delivery reads it), and counted in the segment's hourly ``segment_history``.

Two writers: batch runs, set-wise in SQL (cdp/segments/batch.py), and :func:`apply_verdicts`
for one profile whose answers were computed in memory — after a profile merge today
(:class:`MembershipRefresher`, cdp/identity), and streaming evaluation on ingest later: that
writer only has to say, per segment, whether the profile qualifies now.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.engine import compile_predicate, load_profile
from cdp.profiles.documents import profile_document
from cdp.schema_registry.service import get_schema
from cdp.storage.memberships import MEMBER, hour_of, record_history, record_history_many  # noqa: F401 - hour_of: the package's name
from cdp.storage.models import membership_changes, memberships, profiles, segments

log = logging.getLogger("cdp.segments")



@dataclass(frozen=True)
class SegmentRef:
    pk: int
    key: str


def apply_verdicts(connection: sa.Connection, *, sandbox: str, profile_pk: int, verdicts: Mapping[SegmentRef, bool],
                   now: datetime, source: str) -> dict[str, str]:
    """Bring one profile's memberships in line with ``verdicts`` (segment → qualifies now):
    entries and exits written with their outbox rows and history. Unchanged memberships are not
    touched. Returns key → "realized" | "exited" for the memberships that changed."""
    if not verdicts:
        return {}
    current = {row.segment_pk: row.status for row in connection.execute(
        sa.select(memberships.c.segment_pk, memberships.c.status).where(
            memberships.c.profile_pk == profile_pk, memberships.c.segment_pk.in_([s.pk for s in verdicts])))}
    changed: dict[str, str] = {}
    outbox = []
    inserted, entered, exited = [], [], []
    for segment, qualifies in sorted(verdicts.items(), key=lambda item: item[0].pk):  # one order for every writer
        status = current.get(segment.pk)
        is_member = status in MEMBER
        if qualifies and not is_member:
            (inserted if status is None else entered).append({"b_segment": segment.pk})
            changed[segment.key] = "realized"
            outbox.append((segment, "entered"))
        elif is_member and not qualifies:
            exited.append({"b_segment": segment.pk})
            changed[segment.key] = "exited"
            outbox.append((segment, "exited"))
    if not outbox:
        return changed
    if inserted:
        connection.execute(memberships.insert().values(
            segment_pk=sa.bindparam("b_segment"), profile_pk=profile_pk, status="realized", entered_at=now,
            exited_at=None, updated_at=now), inserted)
    this = sa.and_(memberships.c.segment_pk == sa.bindparam("b_segment"), memberships.c.profile_pk == profile_pk)
    if entered:  # a re-entry: the row kept since the exit
        connection.execute(memberships.update().where(this).values(status="realized", entered_at=now, exited_at=None,
                                                                   updated_at=now), entered)
    if exited:
        connection.execute(memberships.update().where(this).values(status="exited", exited_at=now, updated_at=now),
                           exited)
    profile_id = connection.execute(sa.select(profiles.c.external_id).where(profiles.c.pk == profile_pk)).scalar_one()
    connection.execute(membership_changes.insert(), [
        {"sandbox": sandbox, "segment_pk": segment.pk, "segment_key": segment.key, "profile_pk": profile_pk,
         "profile_id": profile_id, "status": status, "at": now, "source": source} for segment, status in outbox])
    record_history_many(connection, at=now, changes={
        segment.pk: (int(status == "entered"), int(status == "exited")) for segment, status in outbox})
    return changed


class MembershipRefresher:
    """Re-evaluates profiles' memberships in memory on one connection (reads the sandbox's
    segments once): a merged profile's memberships are computed afresh from its merged data,
    never unioned from the profiles it was made of. Only active segments are evaluated; one
    whose expression no longer checks against the schema in force is skipped (and logged), not
    guessed."""

    def __init__(self, connection: sa.Connection, *, sandbox: str):
        self.connection = connection
        self.sandbox = sandbox
        self._segments: list | None = None

    def _load(self) -> list:
        if self._segments is None:
            self._segments = self.connection.execute(
                sa.select(segments.c.pk, segments.c.key, segments.c.expression, segments.c.status)
                .where(segments.c.sandbox == self.sandbox)).all()
        return self._segments

    def refresh(self, profile_pk: int, now: datetime, *, source: str = "merge") -> dict[str, str]:
        """Re-evaluate every active segment of the sandbox on the profile; returns key → new
        status for the memberships that changed."""
        defined = self._load()
        active = [row for row in defined if row.status == "active"]
        if not active:
            return {}
        schema = get_schema(connection=self.connection, sandbox=self.sandbox)
        profile = load_profile(profile_document(self.connection, profile_pk, schema=schema), schema,
                               allowed_values=False)  # stored: may predate the allowed values
        catalogue = {row.key: row.expression for row in defined}
        verdicts: dict[SegmentRef, bool] = {}
        for segment in active:
            try:
                verdicts[SegmentRef(segment.pk, segment.key)] = bool(
                    compile_predicate(segment.expression, schema, segments=catalogue)(profile, now))
            except PqlError as error:
                log.warning("segment %r of sandbox %r skipped: %s", segment.key, self.sandbox, error)
        return apply_verdicts(self.connection, sandbox=self.sandbox, profile_pk=profile_pk, verdicts=verdicts,
                              now=now, source=source)
