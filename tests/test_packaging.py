"""cdp as a user installs it: the sdist and the wheel built from a clean copy of the checkout
(only the files git tracks), the wheel installed into a fresh virtual environment — its
dependencies resolved by pip, nothing shared with the project's own environment — and run from a
folder outside the source tree: `cdp --version`, `cdp check`, `cdp evaluate` (memory and SQLite),
a `cdp serve` start-up that migrates an empty database; without the `postgresql` extra a
PostgreSQL URL is refused with what to install, and with it PostgreSQL works too.

Slow (a build, then pip installing the dependencies: a minute or two, mostly from pip's cache),
and part of the normal suite: this is what proves a wheel works anywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
AS_OF = "2026-11-28T12:00:00Z"
GIFT = (ROOT / "examples" / "gift_giving_cart_abandoners.pql").read_text()


def _run(command: list[str], *, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return result


def _checked(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = _run(command, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _clean_environment() -> dict:
    """The environment of a user's shell: none of the project's venv, no CDP_* settings."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CDP_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, "PATH": path}


def _tracked_files() -> list[str]:
    result = _run(["git", "ls-files", "-z"], cwd=ROOT)
    if result.returncode != 0:
        pytest.fail(f"the packaging test builds from the files git tracks; git ls-files failed: {result.stderr}")
    return [name for name in result.stdout.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built by `python -m build` (the wheel from the sdist) out of a
    copy of the tracked files: what a clean checkout builds."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "checkout"
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = base / "dist"
    _checked([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], cwd=base,
             env=_clean_environment(), timeout=900)
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    return {"base": base, "wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def venv(built) -> Path:
    """A fresh virtual environment with the wheel installed (no extras); its bin folder."""
    target = built["base"] / "venv"
    env = _clean_environment()
    _checked([sys.executable, "-m", "venv", str(target)], cwd=built["base"], env=env)
    _checked([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              str(built["wheel"])], cwd=built["base"], env=env, timeout=900)
    return target / "bin"


@pytest.fixture(scope="module")
def outside(built) -> Path:
    """A working folder far from the source tree (no grammars/, no migrations/, no cdp/ here)."""
    folder = built["base"] / "elsewhere"
    folder.mkdir()
    shutil.copy2(ROOT / "examples" / "luma_profiles.jsonl", folder / "profiles.jsonl")
    return folder


def test_the_wheel_holds_the_grammar_the_migrations_the_web_files_and_the_license(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        assert wheel.read("cdp/dsl/pql.lark") == (ROOT / "cdp" / "dsl" / "pql.lark").read_bytes()
        assert wheel.read("cdp/governance/policy.lark") == (ROOT / "cdp" / "governance" / "policy.lark").read_bytes()
        migrations = ROOT / "cdp" / "storage" / "migrations"
        for script in [migrations / "env.py", migrations / "script.py.mako", *migrations.glob("versions/*.py")]:
            assert wheel.read(script.relative_to(ROOT).as_posix()) == script.read_bytes(), script
        static = sorted(path for path in (ROOT / "cdp" / "web" / "static").rglob("*") if path.is_file())
        assert {path.relative_to(ROOT / "cdp" / "web" / "static").as_posix() for path in static} >= {
            "index.html", "app.js", "app.css", "vendor/codemirror.js", "vendor/chartjs.js", "vendor/cytoscape.js",
            "vendor/LICENSES.txt"}
        for path in static:  # the web interface's files (docs/web.md)
            assert wheel.read(path.relative_to(ROOT).as_posix()) == path.read_bytes(), path
        info = f"cdp-{VERSION}.dist-info"
        assert wheel.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nLicense-Expression: Apache-2.0\n" in metadata
    assert re.search(r"^Requires-Dist: psycopg\[binary\]>=3\.1; extra == \"postgresql\"$", metadata, re.M), metadata
    assert not re.search(r"^Requires-Dist: psycopg[^;]*$", metadata, re.M), "psycopg must not be a core dependency"
    assert "\nClassifier: Programming Language :: Python :: 3.11\n" in metadata
    # nothing of the tests or the benchmarks is installed
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_installed_cdp_comes_from_the_venv_and_needs_no_postgresql_driver(venv, outside):
    result = _checked([str(venv / "python"), "-c",
                       "import importlib.util, cdp, cdp.dsl, cdp.api, cdp.storage.migrate as m;"
                       "print(cdp.__file__); print(m.migrations_directory());"
                       "print(importlib.util.find_spec('psycopg') is None)"],
                      cwd=outside, env=_clean_environment())
    package, migrations, no_psycopg = result.stdout.splitlines()
    assert package.startswith(str(venv.parent)) and not package.startswith(str(ROOT))
    assert migrations.startswith(str(venv.parent))
    assert no_psycopg == "True"


def test_version_matches_the_package(venv, outside):
    result = _checked([str(venv / "cdp"), "--version"], cwd=outside, env=_clean_environment())
    assert result.stdout.strip() == f"cdp, version {VERSION}"
    result = _checked([str(venv / "python"), "-c", "import cdp; print(cdp.__version__)"], cwd=outside,
                      env=_clean_environment())
    assert result.stdout.strip() == VERSION


def test_check_and_evaluate_run_outside_the_source_tree(venv, outside):
    env = _clean_environment()
    result = _checked([str(venv / "cdp"), "check", "--json", "loyalty.points > 500 AND email_opt_in"], cwd=outside,
                      env=env)
    assert json.loads(result.stdout) == {"ok": True, "canonical": "loyalty.points > 500 and email_opt_in", "warnings": []}
    for backend in ("memory", "sqlite"):
        result = _checked([str(venv / "cdp"), "evaluate", GIFT, "--profiles", "profiles.jsonl", "--as-of", AS_OF,
                           "--backend", backend], cwd=outside, env=env)
        assert result.stdout.splitlines() == ["sarah-rose"], backend


def test_a_postgresql_url_without_the_driver_says_what_to_install(venv, outside):
    env = _clean_environment()
    result = _run([str(venv / "cdp"), "evaluate", "email_opt_in", "--profiles", "profiles.jsonl", "--backend",
                   "postgresql", "--database-url", "postgresql://nobody@127.0.0.1:1/none"], cwd=outside, env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("missing_driver:") and "pip install 'cdp[postgresql]'" in result.stderr
    assert "Traceback" not in result.stderr
    result = _run([str(venv / "cdp"), "serve", "--database-url", "postgresql://nobody@127.0.0.1:1/none"],
                  cwd=outside, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("cannot_start:") and "pip install 'cdp[postgresql]'" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_start_up(venv: Path, cwd: Path, url: str | None) -> str:
    """`cdp serve` until /healthz answers; its stderr (the migration and bootstrap lines)."""
    import httpx2 as httpx

    port = _free_port()
    log = cwd / f"serve-{port}.log"
    env = _clean_environment()
    if url:
        env["CDP_DATABASE_URL"] = url
    with open(log, "w") as stderr:
        process = subprocess.Popen([str(venv / "cdp"), "serve", "--port", str(port), "--log-level", "warning"],
                                   cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"cdp serve exited {process.returncode}: {log.read_text()}"
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                if response.status_code == 200:
                    return log.read_text()
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"cdp serve did not answer within 60 s: {log.read_text()}"
            time.sleep(0.1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _head_revision() -> str:
    from cdp.storage.migrate import head_revision

    return head_revision()


def test_serve_starts_and_migrates_the_embedded_database(venv, outside):
    stderr = _serve_start_up(venv, outside, None)
    assert f"cdp: database upgraded from migration none (empty) to {_head_revision()}" in stderr
    assert "created the bootstrap admin key" in stderr
    assert (outside / "var" / "cdp.db").is_file()  # the embedded default, under the working folder


def test_with_the_postgresql_extra_postgresql_works(built, venv, outside, postgres_url_factory):
    env = _clean_environment()
    _checked([str(venv / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              f"cdp[postgresql] @ {built['wheel'].as_uri()}"], cwd=outside, env=env, timeout=900)
    url = postgres_url_factory().replace("postgresql+psycopg://", "postgresql://")
    result = _checked([str(venv / "cdp"), "evaluate", GIFT, "--profiles", "profiles.jsonl", "--as-of", AS_OF,
                       "--backend", "postgresql", "--database-url", url], cwd=outside, env=env)
    assert result.stdout.splitlines() == ["sarah-rose"]
    stderr = _serve_start_up(venv, outside, url)
    assert f"cdp: database upgraded from migration none (empty) to {_head_revision()}" in stderr
