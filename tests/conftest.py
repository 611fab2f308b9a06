"""Shared fixtures: real databases. SQLite files in a temporary folder; a throwaway PostgreSQL
cluster started once per test run and stopped at the end.

`make test` runs the suite on two workers (pytest-xdist, `-n 2`). The run still
starts each real component once: the first worker to need PostgreSQL starts the cluster and the
other attaches to it (its address in a folder the controller shares with the workers), and the
controller stops it when the run ends; every test that uses Spark, and every browser test, is put
in one group that runs on one worker, so one JVM and one browser start; every other module is a
group of its own, so its module-scoped fixtures (a demo server, a loaded database) are built once.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

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


# Set by the controller of a run on several workers (pytest_configure below): a folder the workers
# share, where the first of them to start PostgreSQL leaves the cluster's address for the others.
SHARED = "CDP_TEST_SHARED_FOLDER"


def _worker(config) -> str:
    """This process's worker id in a run on several workers, else "". From the run's own
    configuration, not the environment: a pytest that a test starts inherits the environment
    (PYTEST_XDIST_WORKER, the shared folder) but is a run of its own (tests/test_suite_guards.py)."""
    return config.workerinput["workerid"] if hasattr(config, "workerinput") else ""


def _started_cluster():
    from cdp.devtools.postgres import start_cluster

    return require_component("postgres", start_cluster,
                             hint="install the PostgreSQL server (Debian: apt-get install postgresql) "
                                  "or point CDP_PG_BIN at its bin folder")


def _raise(exc: Exception):
    raise exc


def _shared_cluster(folder: Path):
    """The run's one cluster, started by the first worker that asks (under a lock) and found by
    the others; the controller stops it (pytest_unconfigure)."""
    from filelock import FileLock

    from cdp.devtools.postgres import Cluster

    record = folder / "postgres.json"
    with FileLock(str(folder / "postgres.lock")):
        if record.exists():
            found = json.loads(record.read_text())
            if "unavailable" in found:  # the first worker could not start it: the same answer here
                require_component("postgres", lambda: _raise(RuntimeError(found["unavailable"])))
            return Cluster(Path(found["directory"]), found["port"], Path(found["bin_dir"]), found["as_user"],
                           found["options"])
        try:
            cluster = _started_cluster()
        except BaseException as exc:
            record.write_text(json.dumps({"unavailable": str(exc)}))
            raise
        record.write_text(json.dumps({"directory": str(cluster.directory), "port": cluster.port,
                                      "bin_dir": str(cluster.bin_dir), "as_user": cluster.as_user,
                                      "options": cluster.options}))
        return cluster


@pytest.fixture(scope="session")
def postgres_cluster(pytestconfig):
    """The throwaway cluster. Without PostgreSQL the tests using it are skipped — or fail, when
    PostgreSQL is required (CDP_REQUIRE_POSTGRES=1, set by .ci/run, or CI=true)."""
    shared = os.environ.get(SHARED)
    if _worker(pytestconfig) and shared:
        yield _shared_cluster(Path(shared))  # stopped by the controller, after every worker is done
        return
    cluster = _started_cluster()
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
def postgres_url_factory(postgres_cluster, pytestconfig):
    """A new empty database on the shared cluster per call."""
    # the workers of one run share the cluster: each names its databases with its own id
    prefix = f"cdp_test_{_worker(pytestconfig) or 'main'}"
    return lambda: postgres_cluster.create_database(f"{prefix}_{next(_DATABASES)}")


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


SPARK_FIXTURES = {"spark_session", "spark_tables"}
SPARK_PARAMETERS = ("spark", "spark_json")
TESTS = Path(__file__).parent


def worker_group(nodeid: str) -> str:
    """The group of workers' work a test belongs to (see the module doc), from its id alone — the
    scheduler sees only ids: "spark" for a module that uses the Spark session and for a test with a
    Spark backend among its parameters, "browser" for the browser tests, else its module."""
    path = nodeid.split("::", 1)[0]
    parameters = nodeid.rsplit("[", 1)[1].rstrip("]").split("-") if nodeid.endswith("]") else []
    if any(name in SPARK_PARAMETERS for name in parameters) or _uses_spark(path):
        return "spark"
    if path.startswith("tests/web/"):
        return "browser"
    return path


_SPARK_MODULES: dict[str, bool] = {}


def _uses_spark(path: str) -> bool:
    if path not in _SPARK_MODULES:
        file = TESTS.parent / path
        text = file.read_text() if file.is_file() else ""
        _SPARK_MODULES[path] = any(name in text for name in SPARK_FIXTURES)
    return _SPARK_MODULES[path]


def pytest_xdist_make_scheduler(config, log):
    """Whole groups to one worker each (pytest-xdist's own `xdist_group` marks do not reach its
    scheduler under pytest 9.2, which no longer reads the node id the worker rewrites)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkerGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByWorkerGroup(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """On a worker, a test that uses Spark but would not be in the "spark" group (a Spark fixture
    reached through another fixture, in a module that does not name one) stops the run: a second
    worker would start a second Spark. Tests marked slow (long property runs) run only when asked:
    `-m slow` or CDP_SLOW=1."""
    if hasattr(config, "workerinput"):
        strays = [item.nodeid for item in items
                  if "spark_session" in item.fixturenames and worker_group(item.nodeid) != "spark"]
        if strays:
            raise pytest.UsageError(f"tests using Spark outside the spark group (tests/conftest.py SPARK_FIXTURES): "
                                    f"{strays[:5]}")
    if os.environ.get("CDP_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or CDP_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _controls_workers(config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config):
    if _controls_workers(config) and SHARED not in os.environ:
        # before the workers start, so that they inherit it
        os.environ[SHARED] = config._cdp_shared_folder = tempfile.mkdtemp(prefix="cdp-test-shared-")
    # the PQL tree strategies (tests/strategies.py) are large; Hypothesis builds their repr once
    config.addinivalue_line("filterwarnings", "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")


def pytest_unconfigure(config):
    """The controller of a run on several workers stops the cluster its workers shared."""
    folder = getattr(config, "_cdp_shared_folder", None)
    if folder is None:
        return
    record = Path(folder) / "postgres.json"
    if record.exists():
        from cdp.devtools.postgres import Cluster

        found = json.loads(record.read_text())
        if "unavailable" not in found:
            Cluster(Path(found["directory"]), found["port"], Path(found["bin_dir"]), found["as_user"],
                    found["options"]).stop()
    shutil.rmtree(folder, ignore_errors=True)
    os.environ.pop(SHARED, None)
