"""Migrations applied from code (on start of the service, by tests). The Alembic scripts are
package data of cdp.storage (cdp/storage/migrations), found with importlib.resources, so an
installed wheel migrates exactly as a source checkout does."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory


def migrations_directory() -> Path:
    """The folder of the Alembic environment and its revisions inside the installed package.
    Alembic reads scripts from the file system, so cdp must be installed as files (a wheel, a
    source checkout), not imported from a zip archive."""
    location = resources.files("cdp.storage").joinpath("migrations")
    if not isinstance(location, Path) or not (location / "env.py").is_file():
        raise RuntimeError(f"cdp's migration scripts are not on the file system ({location}); "
                           "install cdp from its wheel or a source checkout")
    return location


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
