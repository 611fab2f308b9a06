"""What happens before the service answers: the database is brought to the newest migration (or
the start is refused, saying why), and the first admin key is created when there is none.

``CDP_MIGRATE_ON_START`` (default true) upgrades the database; when false, a database that is
not at the newest revision stops the start with the revision found and the one expected. A
database at a revision this code does not know (written by a newer cdp) always stops it.
"""

from __future__ import annotations

import logging
import sys

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from cdp.auth.service import ensure_bootstrap_admin
from cdp.errors import CdpError
from cdp.storage.database import MissingDriverError, create_engine
from cdp.storage.migrate import alembic_config, current_revision, head_revision, upgrade

log = logging.getLogger("cdp.api")


class StartupError(RuntimeError):
    """The service cannot start; the message says why and what to do."""


def _redacted(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def prepare_database(url: str, *, migrate: bool) -> sa.Engine:
    """An engine on a database at the newest revision; StartupError otherwise."""
    try:
        engine = create_engine(url)
        found = current_revision(engine)
    except MissingDriverError as exc:
        raise StartupError(str(exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        raise StartupError(f"cannot open the database {_redacted(url)}: "
                           f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from None
    head = head_revision()
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if found is not None and found not in known:
        engine.dispose()
        raise StartupError(f"the database {_redacted(url)} is at migration {found!r}, which this version of cdp "
                           f"does not know (newest known: {head!r}); was it written by a newer cdp?")
    if found == head:
        log.info("database at migration %s (newest)", head)
        return engine
    if not migrate:
        engine.dispose()
        raise StartupError(f"the database {_redacted(url)} is at migration {found or 'none (empty)'}, this cdp needs "
                           f"{head!r}; start with CDP_MIGRATE_ON_START=true to upgrade it")
    try:
        upgrade(engine)
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        raise StartupError(f"upgrading the database {_redacted(url)} from {found or 'empty'} to {head!r} failed: "
                           f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from None
    log.info("database upgraded from migration %s to %s", found or "none", head)
    print(f"cdp: database upgraded from migration {found or 'none (empty)'} to {head}", file=sys.stderr)
    return engine


def bootstrap_admin(engine: sa.Engine, fixed_key: str | None) -> str | None:
    """Create the first admin key when none exists; print a generated one once to stderr and
    return it (None when none was generated now)."""
    try:
        with engine.begin() as connection:
            created = ensure_bootstrap_admin(connection=connection, fixed_key=fixed_key)
    except CdpError as exc:
        raise StartupError(f"cannot create the bootstrap admin key (CDP_BOOTSTRAP_ADMIN_KEY): {exc.message}") from None
    if created is None:
        return None
    if fixed_key:
        print(f"cdp: bootstrap admin key {created.id} registered from CDP_BOOTSTRAP_ADMIN_KEY", file=sys.stderr)
        return None
    print("cdp: created the bootstrap admin key (valid in every sandbox). It is shown only this once; store it now:\n"
          f"cdp:     {created.key}", file=sys.stderr, flush=True)
    return created.key
