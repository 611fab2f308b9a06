"""The data the server starts with on ``make run`` (``cdp serve --demo``): Luma's sources
(:mod:`cdp.demo.luma`) loaded over HTTP (:mod:`cdp.demo.load`) into the empty ``prod`` sandbox
on first start — with Sarah Rose's browsing, cart and login of yesterday, so she is in the
gift-giving segment — plus the demo policies and segments, saved and evaluated.

The caller serves the app somewhere (``cdp serve`` runs it on a loopback port of its own for the
while, cdp/api/local.py) and gives its URL; this module makes the key the loader uses (an admin
key of ``prod`` only, revoked when the load is done)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import sqlalchemy as sa

from cdp.auth import Role
from cdp.auth.service import create_key
from cdp.demo.client import Client
from cdp.demo.load import Loaded, load_luma
from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, profiles

DEMO_PROFILES = 2000


def is_empty(engine: sa.Engine, *, sandbox: str = "prod") -> bool:
    """No profile and no dataset yet: the demo data has not been loaded (nor anything else)."""
    with engine.connect() as connection:
        return not any(connection.execute(sa.select(table.c.pk).where(table.c.sandbox == sandbox).limit(1)).first()
                       for table in (profiles, datasets))


def loader_key(engine: sa.Engine, *, sandbox: str = "prod") -> tuple[str, str]:
    """(id, key) of a new admin key bound to ``sandbox`` for the loader."""
    with write_transaction(engine) as connection:
        created = create_key(connection=connection, name="demo data loader (revoked after the first start)",
                             role=Role.admin, sandbox=sandbox)
    return created.id, created.key


def seed_over_http(base_url: str, key_id: str, key: str, *, count: int = DEMO_PROFILES, sandbox: str = "prod",
                   as_of: datetime | None = None, progress: Callable[[str], None] = lambda _t: None) -> Loaded:
    """Load the demo data through the service at ``base_url``; the loader's key is revoked after."""
    client = Client(base_url, key, sandbox=sandbox)
    now = as_of or datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    try:
        loaded, _sources = load_luma(client, count=count, as_of=now, story=True, progress=progress)
    finally:
        client.delete(f"/v1/keys/{key_id}")
    return loaded
