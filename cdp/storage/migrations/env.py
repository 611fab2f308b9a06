"""Alembic environment: the target is cdp.storage.models.metadata; the connection is handed in
by cdp.storage.migrate (or built from the URL given on the alembic command line)."""

from alembic import context

from cdp.storage.database import create_engine
from cdp.storage.models import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("cdp migrations run online only: pass a database URL")
run_migrations_online()
