"""docs/sources.md runs as written: its ```sh blocks (and its ```python block, in the same
environment) in order, in one bash session against a real `cdp serve` on SQLite, with `CDP` and
`KEY` set as the document says; then what they printed is checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.test_server import KEY, Server, _environment

DOC = Path(__file__).resolve().parents[1] / "docs" / "sources.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def script_of(text: str) -> str:
    parts = ["set -euo pipefail"]
    for info, body in FENCE.findall(text):
        if info == "sh":
            parts.append(body)
        elif info == "python":
            parts.append(f'"$PYTHON" - <<\'PYTHON_EXAMPLE\'\n{body}PYTHON_EXAMPLE\n')
        else:
            raise AssertionError(f"docs/sources.md: a ```{info} block: only sh and python blocks run here")
    return "\n".join(parts)


def test_the_document_has_runnable_blocks():
    kinds = [info for info, _ in FENCE.findall(DOC.read_text())]
    assert kinds.count("sh") >= 8 and kinds.count("python") == 1


@pytest.fixture
def server(sqlite_url_factory, tmp_path):
    running = Server(sqlite_url_factory(), tmp_path / "serve.log")
    yield running
    running.stop()


def test_the_commands_of_docs_sources_md(server, tmp_path):
    from tests.components import require_component

    def tools() -> None:
        missing = [tool for tool in ("curl", "jq", "sqlite3") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"docs/sources.md uses {', '.join(missing)}, not installed")

    require_component("doc_tools", tools, hint="apt-get install curl jq sqlite3")
    [key] = KEY.findall(server.stderr)
    work = tmp_path / "work"
    work.mkdir()
    env = {**_environment(server.url), "CDP": server.base, "KEY": key, "PYTHON": sys.executable}
    result = subprocess.run(["bash", "-c", script_of(DOC.read_text())], cwd=work, env=env, capture_output=True,
                            text=True, timeout=240)
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{out}\nstderr:\n{result.stderr}"
    lines = out.splitlines()
    assert "tracking_api: Analytics SDKs (tracking API)" in lines and "file_drop: File drop" in lines
    assert "/sources/segment" in lines and '{"success":true}' in lines
    assert '{"accepted":4,"rejected":1,"duplicate":0,' in out  # page, track, identify, the order; not the wishlist
    assert any(line.startswith("m-78: event 'Wishlist Shared' is not mapped") for line in lines)
    assert '["crm_id","ecid","email"]' in lines
    assert '{"tier":"loyalty.tier","plan":null}' in lines
    assert any(line.startswith('{"ok":true,"columns":["crm_id","email","first_name","tier","updated_at"]')
               for line in lines)
    assert '{"row_number":2,"errors":["attributes.loyalty.tier: \'diamond\' is not an allowed value' in out
    assert ('{"status":"succeeded","rows_read":3,"counts":{"total_rows":3,"accepted_rows":2,"rejected_rows":1,'
            '"duplicate_rows":0}}') in lines
    assert any(line.startswith("row 2: ") and "diamond" in line for line in lines)
    runs = [line for line in lines if line.startswith('{"id":') and '"rows_read"' in line]
    assert '"rows_read":1,"from":"2026-12-01 09:10:00","to":"2026-12-02 08:00:00"' in runs[0]
    assert '"status":"succeeded","rows_read":3,"from":null,"to":"2026-12-01 09:10:00"' in runs[1]
    [moved] = [line for line in lines if line.endswith("-loyalty-2026-12-06.csv")]
    job = moved.split("-", 1)[0]
    assert f'{{"name":"loyalty-2026-12-06.csv","status":"done","job_id":{job}}}' in lines
    assert not (work / "drop" / "loyalty-2026-12-06.csv").exists()
    assert os.path.exists(work / "drop" / "done" / moved)
