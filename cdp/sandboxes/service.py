"""Sandboxes: creating and listing them, the check that one exists, and what one holds (for the
rules that depend on it: schema compatibility, later deletes)."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.errors import Conflict, NotFound
from cdp.sandboxes.models import SandboxRead
from cdp.storage.models import events, profiles, sandboxes


def _read(row) -> SandboxRead:
    return SandboxRead(name=row.name, description=row.description, created_at=row.created_at)


def create_sandbox(*, connection: sa.Connection, name: str, description: str | None = None) -> SandboxRead:
    """A new, empty sandbox; Conflict (409 ``sandbox_exists``) when the name is taken. ``name``
    must be valid (cdp.sandboxes.validate_sandbox_name)."""
    if connection.execute(sa.select(sandboxes.c.name).where(sandboxes.c.name == name)).first():
        raise Conflict(f"sandbox {name!r} exists", code="sandbox_exists", details={"sandbox": name})
    now = datetime.now(timezone.utc)
    connection.execute(sandboxes.insert().values(name=name, description=description, created_at=now))
    return SandboxRead(name=name, description=description, created_at=now)


def list_sandboxes(*, connection: sa.Connection, only: str | None = None, limit: int,
                   offset: int) -> tuple[list[SandboxRead], int]:
    """Sandboxes by name (``only``: just that one, for a key bound to it)."""
    where = [sandboxes.c.name == only] if only is not None else []
    total = connection.execute(sa.select(sa.func.count()).select_from(sandboxes).where(*where)).scalar_one()
    rows = connection.execute(sa.select(sandboxes).where(*where).order_by(sandboxes.c.name)
                              .limit(limit).offset(offset)).all()
    return [_read(row) for row in rows], total


def require_sandbox(*, connection: sa.Connection, name: str) -> None:
    """NotFound (404 ``unknown_sandbox``) unless the sandbox exists."""
    if connection.execute(sa.select(sandboxes.c.name).where(sandboxes.c.name == name)).first() is None:
        raise NotFound(f"no sandbox {name!r}: an admin creates it first (POST /v1/sandboxes, or `cdp sandboxes "
                       f"create {name}`); GET /v1/sandboxes lists them", code="unknown_sandbox",
                       details={"resource": "sandbox", "sandbox": name})


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
