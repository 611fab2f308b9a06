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
from cdp.storage.memberships import MEMBER, hour_of, record_history, record_history_many  # noqa: F401 - hour_of: the package's name
from cdp.storage.models import membership_changes, memberships, profiles, segments

log = logging.getLogger("cdp.segments")



@dataclass(frozen=True)
class SegmentRef:
    pk: int
    key: str


def apply_verdicts(connection: sa.Connection, *, sandbox: str, profile_pk: int, verdicts: Mapping[SegmentRef, bool],
                   now: datetime, source: str, members: Set[int] | None = None,
                   profile_id: str | None = None) -> dict[str, str]:
    """Bring one profile's memberships in line with ``verdicts`` (segment → qualifies now):
    entries and exits written with their outbox rows and history. Unchanged memberships are not
    touched: when nothing changes, nothing is written. Returns key → "realized" | "exited" for
    the memberships that changed.

    ``members``: the segments the profile is a current member of, when the caller read them
    already (streaming reads them with its due instants in one statement); otherwise read here.
    ``profile_id``: its external id, when the caller has it."""
    if not verdicts:
        return {}
    if members is None:
        members = set(connection.execute(_MEMBERS, {"b_profile": profile_pk,
                                                    "b_segments": sorted(s.pk for s in verdicts)}).scalars())
    changed: dict[str, str] = {}
    outbox = []
    entered, exited = [], []
    for segment, qualifies in sorted(verdicts.items(), key=lambda item: item[0].pk):  # one order for every writer
        is_member = segment.pk in members
        if qualifies and not is_member:
            entered.append({"b_segment": segment.pk, "b_profile": profile_pk, "b_now": now})
            changed[segment.key] = "realized"
            outbox.append((segment, "entered"))
        elif is_member and not qualifies:
            exited.append({"b_segment": segment.pk, "b_profile": profile_pk, "b_now": now})
            changed[segment.key] = "exited"
            outbox.append((segment, "exited"))
    if not outbox:
        return changed
    if entered:  # a first entry inserts the row; a re-entry updates the row kept since the exit
        connection.execute(_enter(connection.dialect.name), entered)
    if exited:
        connection.execute(_EXIT, exited)
    if profile_id is None:
        profile_id = connection.execute(_EXTERNAL_ID, {"b_profile": profile_pk}).scalar_one()
    connection.execute(membership_changes.insert(), [
        {"sandbox": sandbox, "segment_pk": segment.pk, "segment_key": segment.key, "profile_pk": profile_pk,
         "profile_id": profile_id, "status": status, "at": now, "source": source} for segment, status in outbox])
    record_history_many(connection, at=now, changes={
        segment.pk: (int(status == "entered"), int(status == "exited")) for segment, status in outbox})
    return changed


# built once (SQLAlchemy then compiles each once and reuses its cache key): apply_verdicts runs on
# every streaming evaluation
_MEMBERS = sa.select(memberships.c.segment_pk).where(
    memberships.c.profile_pk == sa.bindparam("b_profile"), memberships.c.status.in_(MEMBER),
    memberships.c.segment_pk.in_(sa.bindparam("b_segments", expanding=True)))
_THIS = sa.and_(memberships.c.segment_pk == sa.bindparam("b_segment"),
                memberships.c.profile_pk == sa.bindparam("b_profile"))
_EXIT = memberships.update().where(_THIS).values(status="exited", exited_at=sa.bindparam("b_now"),
                                                 updated_at=sa.bindparam("b_now"))
_EXTERNAL_ID = sa.select(profiles.c.external_id).where(profiles.c.pk == sa.bindparam("b_profile"))
_ENTERS: dict[str, sa.Executable] = {}


def _enter(dialect: str) -> sa.Executable:
    """INSERT … ON CONFLICT (segment, profile) DO UPDATE: an entry, first or again (the row of
    an exited membership is kept); SQLite and PostgreSQL both speak it."""
    found = _ENTERS.get(dialect)
    if found is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(memberships).values(segment_pk=sa.bindparam("b_segment"),
                                               profile_pk=sa.bindparam("b_profile"),
                                               status="realized", entered_at=sa.bindparam("b_now"), exited_at=None,
                                               updated_at=sa.bindparam("b_now"))
        found = _ENTERS[dialect] = statement.on_conflict_do_update(
            index_elements=[memberships.c.segment_pk, memberships.c.profile_pk],
            set_={"status": "realized", "entered_at": statement.excluded.entered_at, "exited_at": None,
                  "updated_at": statement.excluded.updated_at})
    return found


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
