"""Shared fixtures: real databases. SQLite files in a temporary folder; a throwaway PostgreSQL
cluster started once per test run and stopped at the end."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

import pytest

from tests.components import require_component
from tests.snapshots import update_requested


AS_OF = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--snapshot-update", action="store_true", default=False,
                     help="write snapshot files (tests/snapshots/) instead of failing on a missing or changed one")


@pytest.fixture(scope="session")
def snapshot_update(pytestconfig) -> bool:
    """True when snapshots are to be written (--snapshot-update or CDP_UPDATE_SNAPSHOTS=1)."""
    return update_requested(pytestconfig)


@pytest.fixture
def as_of() -> datetime:
    return AS_OF


@pytest.fixture(scope="session")
def postgres_cluster():
    """The throwaway cluster. Without PostgreSQL the tests using it are skipped — or fail, when
    PostgreSQL is required (CDP_REQUIRE_POSTGRES=1, set by .ci/run, or CI=true)."""
    from cdp.devtools.postgres import start_cluster

    cluster = require_component("postgres", start_cluster,
                                hint="install the PostgreSQL server (Debian: apt-get install postgresql) "
                                     "or point CDP_PG_BIN at its bin folder")
    yield cluster
    cluster.stop()


def _start_spark():
    import shutil
    import subprocess

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise RuntimeError("no Java (Spark needs Java 17 or newer)")
    subprocess.run(["java", "-version"], check=True, capture_output=True)  # a broken Java says so here
    from cdp.engine.sql.spark_session import SparkSession

    # tiny relations: adaptive execution and several shuffle partitions cost more than they save
    return SparkSession(master="local[2]", conf={"spark.sql.adaptive.enabled": "false",
                                                 "spark.sql.shuffle.partitions": "1"})


@pytest.fixture(scope="session")
def spark_session():
    """ONE Spark (local[2]) for the whole run: starting it takes seconds. Without Java or PySpark
    the tests using it are skipped — or fail, when Spark is required (CDP_REQUIRE_SPARK=1, set by
    .ci/run, or CI=true)."""
    session = require_component("spark", _start_spark,
                                hint="pip install 'cdp[spark]' and a Java 17 runtime (Debian: apt-get install "
                                     "default-jre-headless)")
    yield session
    session.close()
    from cdp.engine.sql.spark_session import stop

    stop()


_DATABASES = iter(range(1, 10_000))


@pytest.fixture(scope="session")
def postgres_url_factory(postgres_cluster):
    """A new empty database on the shared cluster per call."""
    return lambda: postgres_cluster.create_database(f"cdp_test_{next(_DATABASES)}")


@pytest.fixture(scope="session")
def sqlite_url_factory(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sqlite")
    return lambda: f"sqlite:///{folder}/cdp_{next(_DATABASES)}.db"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated_engine(request, sqlite_url_factory):
    """An engine on a new database at the newest migration, on SQLite and on PostgreSQL (one per
    test module and backend)."""
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def pytest_collection_modifyitems(config, items):
    """Tests marked slow (long property runs) run only when asked: `-m slow` or CDP_SLOW=1."""
    if os.environ.get("CDP_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or CDP_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    # the PQL tree strategies (tests/strategies.py) are large; Hypothesis builds their repr once
    config.addinivalue_line("filterwarnings", "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")
