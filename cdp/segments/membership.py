"""Memberships of one profile, re-evaluated in memory after its data changed in a way no event
describes — today a profile merge (cdp/identity/graph.py): the merged profile's memberships are
computed afresh from its merged data, never unioned from the profiles it was made of.

Statuses (SPEC.md): ``realized`` — entered at ``entered_at``; ``existing`` — still a member (kept
as is); ``exited`` — left at ``exited_at``. A profile that qualifies and was not a member (or had
exited) is realized now; a member that no longer qualifies exits now. Segments whose expression
no longer checks against the schema in force are skipped (and logged), not guessed.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.engine import compile_predicate, load_profile
from cdp.profiles.documents import profile_document
from cdp.schema_registry.service import get_schema
from cdp.storage.models import memberships, segments

log = logging.getLogger("cdp.segments")


class MembershipRefresher:
    """Re-evaluates profiles' memberships on one connection; reads the sandbox's segments once."""

    def __init__(self, connection: sa.Connection, *, sandbox: str):
        self.connection = connection
        self.sandbox = sandbox
        self._segments: list | None = None

    def _load(self) -> list:
        if self._segments is None:
            self._segments = self.connection.execute(sa.select(segments.c.pk, segments.c.key, segments.c.expression)
                                                     .where(segments.c.sandbox == self.sandbox)).all()
        return self._segments

    def refresh(self, profile_pk: int, now: datetime) -> dict[str, str]:
        """Re-evaluate every segment of the sandbox on the profile; returns key → new status for
        the memberships that changed."""
        defined = self._load()
        if not defined:
            return {}
        schema = get_schema(connection=self.connection, sandbox=self.sandbox)
        profile = load_profile(profile_document(self.connection, profile_pk, schema=schema), schema,
                               allowed_values=False)  # stored: may predate the allowed values
        catalogue = {row.key: row.expression for row in defined}
        current = {row.segment_pk: row for row in self.connection.execute(
            sa.select(memberships).where(memberships.c.profile_pk == profile_pk))}
        changed: dict[str, str] = {}
        for segment in defined:
            try:
                qualifies = bool(compile_predicate(segment.expression, schema, segments=catalogue)(profile, now))
            except PqlError as error:
                log.warning("segment %r of sandbox %r skipped: %s", segment.key, self.sandbox, error)
                continue
            member = current.get(segment.pk)
            is_member = member is not None and member.status in ("realized", "existing")
            if qualifies and not is_member:
                values = {"status": "realized", "entered_at": now, "exited_at": None, "updated_at": now}
                if member is None:
                    self.connection.execute(memberships.insert().values(segment_pk=segment.pk, profile_pk=profile_pk,
                                                                        **values))
                else:
                    self.connection.execute(memberships.update().where(
                        memberships.c.segment_pk == segment.pk, memberships.c.profile_pk == profile_pk).values(**values))
                changed[segment.key] = "realized"
            elif is_member and not qualifies:
                self.connection.execute(memberships.update().where(
                    memberships.c.segment_pk == segment.pk, memberships.c.profile_pk == profile_pk).values(
                    status="exited", exited_at=now, updated_at=now))
                changed[segment.key] = "exited"
        return changed
