"""The suite cannot pass by testing less than it claims: a deleted snapshot fails, and a required
component (PostgreSQL) that is missing fails instead of skipping. Both are proven by running
pytest in a subprocess on a copy of this test suite, as CI would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.components import component_required, require_component
from tests.snapshots import assert_snapshot

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path("tests") / "snapshots" / "sql" / "attributes.sqlite.sql"
SNAPSHOT_TEST = "tests/test_sql_engine.py::test_generated_sql_snapshot[attributes-sqlite]"
POSTGRES_TEST = "tests/test_cli.py::test_backend_errors_are_clear"
BROWSER_TEST = "tests/web/test_web_browser.py::test_a_wrong_key_shows_the_structured_error"


# ---- the helpers themselves ---------------------------------------------------------------------

def test_a_missing_snapshot_fails_and_is_written_only_on_request(tmp_path):
    path = tmp_path / "sub" / "x.sql"
    with pytest.raises(pytest.fail.Exception, match="is missing.*--snapshot-update"):
        assert_snapshot(path, "SELECT 1\n", update=False)
    assert not path.exists()
    assert_snapshot(path, "SELECT 1\n", update=True)
    assert path.read_text() == "SELECT 1\n"
    assert_snapshot(path, "SELECT 1\n", update=False)
    with pytest.raises(AssertionError, match="changed against the snapshot"):
        assert_snapshot(path, "SELECT 2\n", update=False)
    assert path.read_text() == "SELECT 1\n"


def test_a_component_is_required_by_its_flag_or_in_ci():
    assert not component_required("postgres", {})
    assert not component_required("postgres", {"CDP_REQUIRE_POSTGRES": "0", "CI": "false"})
    assert component_required("postgres", {"CDP_REQUIRE_POSTGRES": "1"})
    assert component_required("postgres", {"CDP_REQUIRE_POSTGRES": "true"})
    assert component_required("browser", {"CI": "true"})
    assert not component_required("browser", {"CDP_REQUIRE_POSTGRES": "1"})  # one flag per component


def _unavailable():
    raise RuntimeError("not installed")


def test_an_unavailable_component_skips_or_fails(monkeypatch):
    for name in ("CI", "CDP_REQUIRE_WIDGET"):
        monkeypatch.delenv(name, raising=False)
    assert require_component("widget", lambda: 42) == 42
    with pytest.raises(pytest.skip.Exception, match="widget unavailable: not installed.*CDP_REQUIRE_WIDGET=1"):
        require_component("widget", _unavailable)
    monkeypatch.setenv("CDP_REQUIRE_WIDGET", "1")
    with pytest.raises(pytest.fail.Exception, match="widget unavailable: not installed"):
        require_component("widget", _unavailable)
    monkeypatch.delenv("CDP_REQUIRE_WIDGET")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="widget is required here"):
        require_component("widget", _unavailable)


# ---- the whole suite, in a subprocess -----------------------------------------------------------

@pytest.fixture(scope="module")
def suite_copy(tmp_path_factory) -> Path:
    """tests/ and examples/ copied to a temporary folder (with an empty pytest configuration),
    so snapshots can be deleted without touching the real ones."""
    copy = tmp_path_factory.mktemp("suite")
    for folder in ("tests", "examples"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: long\n    install: slow\n")
    return copy


def _pytest(copy: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("CDP_REQUIRE_")}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
                          cwd=copy, env=environment, capture_output=True, text=True, timeout=300)


def test_a_deleted_snapshot_fails_the_suite(suite_copy):
    snapshot = suite_copy / SNAPSHOT
    original = snapshot.read_text()
    assert _pytest(suite_copy, SNAPSHOT_TEST).returncode == 0
    snapshot.unlink()
    result = _pytest(suite_copy, SNAPSHOT_TEST)
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout and "is missing" in result.stdout
    assert not snapshot.exists(), "a run without the update flag must not write the snapshot"
    result = _pytest(suite_copy, SNAPSHOT_TEST, "--snapshot-update")
    assert result.returncode == 0, result.stdout
    assert snapshot.read_text() == original
    snapshot.unlink()
    assert _pytest(suite_copy, SNAPSHOT_TEST, CDP_UPDATE_SNAPSHOTS="1").returncode == 0
    assert snapshot.read_text() == original


def test_missing_postgresql_skips_only_where_it_is_not_required(suite_copy):
    missing = {"CDP_PG_BIN": str(suite_copy / "no-postgresql-here")}
    result = _pytest(suite_copy, POSTGRES_TEST, **missing)
    assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout
    assert "SKIPPING postgres tests" in result.stdout and "CDP_REQUIRE_POSTGRES=1" in result.stdout
    for required in ({"CDP_REQUIRE_POSTGRES": "1"}, {"CI": "true"}):
        result = _pytest(suite_copy, POSTGRES_TEST, **missing, **required)
        assert result.returncode == 1 and "1 error" in result.stdout, (required, result.stdout)
        assert "postgres unavailable: PostgreSQL server programs (initdb, pg_ctl) not found" in result.stdout


def test_missing_browser_skips_only_where_it_is_not_required(suite_copy):
    missing = {"CDP_CHROMIUM": str(suite_copy / "no-chromium-here")}
    result = _pytest(suite_copy, BROWSER_TEST, **missing)
    assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout
    assert "SKIPPING browser tests" in result.stdout and "CDP_REQUIRE_BROWSER=1" in result.stdout
    for required in ({"CDP_REQUIRE_BROWSER": "1"}, {"CI": "true"}):
        result = _pytest(suite_copy, BROWSER_TEST, **missing, **required)
        assert result.returncode == 1 and "1 error" in result.stdout, (required, result.stdout)
        assert "browser unavailable: no Chromium at" in result.stdout


def _installed_chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise FileNotFoundError("neither chromium nor chromium-browser is on PATH")
    return path


def test_ci_script_finds_chromium_or_says_why_not():
    chromium = require_component("browser", _installed_chromium)  # the script would install it, as root
    found = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--browser-only"], capture_output=True, text=True,
                           timeout=600, env={k: v for k, v in os.environ.items() if k != "CDP_CHROMIUM"})
    assert found.returncode == 0 and f"ci: Chromium: {chromium} (" in found.stderr, found.stderr
    result = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--browser-only"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "CDP_CHROMIUM": "/nonexistent"})
    assert result.returncode == 1
    assert "ci: ERROR: CDP_CHROMIUM=/nonexistent is not a program" in result.stderr


def test_ci_script_says_which_postgresql_it_found(postgres_cluster):
    result = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--postgres-only"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "CDP_PG_BIN": str(postgres_cluster.bin_dir)})
    assert result.returncode == 0, result.stderr
    assert f"ci: PostgreSQL server programs: {postgres_cluster.bin_dir} (initdb (PostgreSQL) " in result.stderr
    found = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--postgres-only"], capture_output=True, text=True,
                           timeout=120, env={k: v for k, v in os.environ.items() if k != "CDP_PG_BIN"})
    assert found.returncode == 0 and "ci: PostgreSQL server programs: /" in found.stderr, found.stderr
    result = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--postgres-only"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "CDP_PG_BIN": "/nonexistent"})
    assert result.returncode == 1
    assert "ci: ERROR: CDP_PG_BIN=/nonexistent has no initdb and pg_ctl" in result.stderr
