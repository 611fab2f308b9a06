"""The web page's libraries (docs/web.md): the bundles committed in cdp/web/static/vendor are the
ones web/package-lock.json pins — each bundle names the packages and versions it was built from,
and they are the lockfile's — and every bundled package's license ships with them. No npm here:
this reads the committed files (rebuilding is `cd web && npm ci && npm run build`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "cdp" / "web" / "static" / "vendor"
LOCK = json.loads((ROOT / "web" / "package-lock.json").read_text())
PACKAGE = json.loads((ROOT / "web" / "package.json").read_text())


def _locked(name: str) -> str:
    return LOCK["packages"][f"node_modules/{name}"]["version"]


def test_the_bundles_are_built_from_the_lockfile():
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    assert set(manifest) == {"codemirror", "chartjs", "cytoscape"}
    for bundle, packages in manifest.items():
        text = (VENDOR / f"{bundle}.js").read_text(encoding="utf-8")
        banner = text.splitlines()[0]
        for name, version in packages.items():
            assert version == _locked(name), (bundle, name, version)  # rebuilt after every lockfile change
            assert f"{name}@{version}" in banner, (bundle, banner)
        assert "http://" not in banner and "https://" not in banner
    # what package.json asks for is exactly what is locked and bundled
    bundled = {name: version for packages in manifest.values() for name, version in packages.items()}
    for name, version in PACKAGE["dependencies"].items():
        assert bundled.get(name) == version == _locked(name), name


def test_every_bundled_package_ships_its_license():
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    notices = (VENDOR / "LICENSES.txt").read_text(encoding="utf-8")
    for packages in manifest.values():
        for name, version in packages.items():
            license_ = LOCK["packages"][f"node_modules/{name}"].get("license")
            assert re.search(rf"^{re.escape(name)}@{re.escape(version)} \({re.escape(license_)}\)$", notices, re.M), name
            assert license_ in {"MIT", "BSD-3-Clause", "ISC", "Apache-2.0"}, (name, license_)


def test_the_tests_accessibility_checker_is_the_locked_one():
    axe = ROOT / "tests" / "web" / "vendor"
    assert json.loads((axe / "manifest.json").read_text()) == {"axe-core": _locked("axe-core")}
    assert PACKAGE["devDependencies"]["axe-core"] == _locked("axe-core")
    assert f"axe v{_locked('axe-core')}" in (axe / "axe.min.js").read_text(encoding="utf-8")[:300]
    assert "Mozilla Public License" in (axe / "axe-core.LICENSE").read_text(encoding="utf-8")


def test_the_page_loads_only_shipped_files():
    page = (ROOT / "cdp" / "web" / "static" / "index.html").read_text(encoding="utf-8")
    modules = [page] + [path.read_text(encoding="utf-8") for path in (ROOT / "cdp" / "web" / "static").glob("*.js")]
    for text in modules:
        for target in re.findall(r'(?:src|href)="/ui/static/([^"]+)"|(?:from |import\()"\./([^"]+)"', text):
            name = next(t for t in target if t)
            assert (ROOT / "cdp" / "web" / "static" / name).is_file(), name
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"web/static/vendor/*"' in pyproject  # shipped in the wheel (tests/test_packaging.py checks it)
