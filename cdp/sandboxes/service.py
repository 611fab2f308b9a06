"""What a sandbox holds, for the rules that depend on it (schema compatibility, later deletes)."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.storage.models import events, profiles


def stored_record_counts(*, connection: sa.Connection, sandbox: str) -> dict[str, int]:
    """``{"profiles": n, "events": m}`` stored in the sandbox."""
    profile_count = connection.execute(
        sa.select(sa.func.count()).select_from(profiles).where(profiles.c.sandbox == sandbox)).scalar_one()
    event_count = 0
    if profile_count:
        event_count = connection.execute(
            sa.select(sa.func.count()).select_from(events.join(profiles, events.c.profile_pk == profiles.c.pk))
            .where(profiles.c.sandbox == sandbox)).scalar_one()
    return {"profiles": profile_count, "events": event_count}
