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
import threading
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.engine.memory import CompiledCatalogue
from cdp.profiles.documents import stored_profile
from cdp.schema import Schema
from cdp.schema_registry.service import get_schema
from cdp.storage.memberships import MEMBER, hour_of, record_history, write_profile  # noqa: F401 - hour_of: the package's name
from cdp.storage.models import memberships, profiles, segments

log = logging.getLogger("cdp.segments")



@dataclass(frozen=True)
class SegmentRef:
    pk: int
    key: str


def verdict_changes(verdicts: Mapping[SegmentRef, bool], members: Set[int]) -> list[tuple[SegmentRef, bool]]:
    """The memberships ``verdicts`` (segment → qualifies now) change, given the segments the
    profile is a current member of: (segment, entered) in segment order — one order for every
    writer."""
    return [(segment, qualifies) for segment, qualifies in sorted(verdicts.items(), key=lambda item: item[0].pk)
            if qualifies != (segment.pk in members)]


def apply_verdicts(connection: sa.Connection, *, sandbox: str, profile_pk: int, verdicts: Mapping[SegmentRef, bool],
                   now: datetime, source: str, members: Set[int] | None = None,
                   profile_id: str | None = None) -> dict[str, str]:
    """Bring one profile's memberships in line with ``verdicts`` (segment → qualifies now):
    entries and exits written with their outbox rows and history (:func:`write_profile`, set-wise).
    Unchanged memberships are not touched: when nothing changes, nothing is written. Returns key →
    "realized" | "exited" for the memberships that changed.

    ``members``: the segments the profile is a current member of, when the caller read them
    already; otherwise read here. ``profile_id``: its external id, when the caller has it."""
    if not verdicts:
        return {}
    if members is None:
        members = set(connection.execute(_MEMBERS, {"b_profile": profile_pk,
                                                    "b_segments": sorted(s.pk for s in verdicts)}).scalars())
    changes = verdict_changes(verdicts, members)
    if not changes:
        return {}
    if profile_id is None:
        profile_id = connection.execute(_EXTERNAL_ID, {"b_profile": profile_pk}).scalar_one()
    write_profile(connection, sandbox=sandbox, profile_pk=profile_pk, profile_id=profile_id, now=now, source=source,
                  changes=[(segment.pk, segment.key, entered) for segment, entered in changes])
    return changed_statuses(changes)


def changed_statuses(changes: list[tuple[SegmentRef, bool]]) -> dict[str, str]:
    """key → "realized" | "exited": what :func:`apply_verdicts` returns."""
    return {segment.key: "realized" if entered else "exited" for segment, entered in changes}


# built once (SQLAlchemy then compiles each once and reuses its cache key): apply_verdicts runs on
# every streaming evaluation
_MEMBERS = sa.select(memberships.c.segment_pk).where(
    memberships.c.profile_pk == sa.bindparam("b_profile"), memberships.c.status.in_(MEMBER),
    memberships.c.segment_pk.in_(sa.bindparam("b_segments", expanding=True)))
_EXTERNAL_ID = sa.select(profiles.c.external_id).where(profiles.c.pk == sa.bindparam("b_profile"))


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
        compiled = compiled_catalogue({row.key: row.expression for row in defined}, schema)
        # stored: may predate the allowed values (not checked again)
        profile = stored_profile(self.connection, profile_pk, schema=schema)
        verdicts: dict[SegmentRef, bool] = {}
        memo: dict = {}  # a referenced segment evaluated once for all that reference it
        for segment in active:
            try:
                verdicts[SegmentRef(segment.pk, segment.key)] = memo[segment.key] = bool(
                    compiled.predicate(segment.key)(profile, now, memo))
            except PqlError as error:
                log.warning("segment %r of sandbox %r skipped: %s", segment.key, self.sandbox, error)
        return apply_verdicts(self.connection, sandbox=self.sandbox, profile_pk=profile_pk, verdicts=verdicts,
                              now=now, source=source)


_catalogues: dict[tuple, CompiledCatalogue] = {}
_catalogues_lock = threading.Lock()


def compiled_catalogue(catalogue: Mapping[str, str], schema: Schema) -> CompiledCatalogue:
    """The catalogue compiled once per content and schema (each definition checked and compiled
    once, references shared), kept across requests: compile_predicate with a catalogue checks
    the whole catalogue again for every segment."""
    key = (schema.fingerprint, tuple(sorted(catalogue.items())))
    found = _catalogues.get(key)
    if found is None:
        found = CompiledCatalogue(catalogue, schema)
        with _catalogues_lock:
            if len(_catalogues) > 100:
                _catalogues.clear()
            _catalogues[key] = found
    return found
