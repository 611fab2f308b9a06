"""Start-up: migrations applied (or the start refused, saying why) and the bootstrap admin key."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.api.conftest import ADMIN_KEY, make_settings


def _start(settings):
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    with TestClient(create_app(settings)) as client:
        return client.get("/healthz").status_code


def test_migrations_are_applied_on_start(database_url):
    from cdp.storage.migrate import head_revision

    # the session's database was migrated by the app of the `service` fixture or is migrated here
    assert _start(make_settings(database_url)) == 200
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import current_revision

    engine = create_engine(database_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def _at_revision(url: str, revision: str | None) -> None:
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(url)
    if revision:
        upgrade(engine, revision)
    engine.dispose()


def test_refuses_an_old_database_when_told_not_to_migrate(sqlite_url_factory):
    from cdp.api.startup import StartupError

    url = sqlite_url_factory()
    _at_revision(url, "0001")
    from cdp.storage.migrate import head_revision

    with pytest.raises(StartupError, match=rf"at migration 0001, this cdp needs '{head_revision()}'.*"
                                           r"CDP_MIGRATE_ON_START=true"):
        _start(make_settings(url, migrate_on_start=False))
    assert _start(make_settings(url)) == 200  # and upgrades it when allowed


def test_refuses_a_database_from_a_newer_cdp(sqlite_url_factory):
    from cdp.api.startup import StartupError
    from cdp.storage.database import create_engine

    url = sqlite_url_factory()
    assert _start(make_settings(url)) == 200
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StartupError, match="'9999', which this version of cdp does not know"):
        _start(make_settings(url))


def test_bootstrap_key_is_printed_once(sqlite_url_factory, capsys):
    from cdp.settings import Settings

    url = sqlite_url_factory()
    assert _start(Settings(database_url=url)) == 200
    printed = capsys.readouterr().err
    [key] = re.findall(r"cdp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", printed)
    assert "shown only this once" in printed
    assert _start(Settings(database_url=url)) == 200
    assert "cdp_" not in capsys.readouterr().err
    from fastapi.testclient import TestClient

    from cdp.api import create_app

    with TestClient(create_app(Settings(database_url=url))) as client:
        assert client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_fixed_bootstrap_key_is_not_printed_and_must_be_well_formed(sqlite_url_factory, capsys):
    from cdp.api.startup import StartupError

    url = sqlite_url_factory()
    assert _start(make_settings(url)) == 200
    err = capsys.readouterr().err
    assert ADMIN_KEY not in err and "registered from CDP_BOOTSTRAP_ADMIN_KEY" in err
    with pytest.raises(StartupError, match="bootstrap admin key"):
        _start(make_settings(sqlite_url_factory(), bootstrap_admin_key="too-simple"))


def test_settings_from_the_environment(monkeypatch, tmp_path):
    from cdp.settings import Settings

    monkeypatch.setenv("CDP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CDP_MAX_BODY_BYTES", "4096")
    settings = Settings()
    assert settings.max_body_bytes == 4096
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'data' / 'cdp.db'}"
    monkeypatch.setenv("CDP_DATABASE_URL", "postgresql://u@localhost/db")
    assert Settings().resolved_database_url() == "postgresql+psycopg://u@localhost/db"
    monkeypatch.setenv("CDP_DATABASE_URL", "mysql://u@localhost/db")
    with pytest.raises(ValueError, match="unsupported database URL"):
        Settings()
