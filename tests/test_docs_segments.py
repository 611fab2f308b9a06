"""Run the commands of docs/segments.md against a real `cdp serve`, in order, as a reader would.

The document's runnable blocks are ```sh (run with bash; `localhost:8000` is the test server, `$KEY`
its admin key, `cdp` the installed command with CDP_DATABASE_URL pointing at the server's
database). A ```json output or ```text output block right after one is its output: JSON must be
equal, where the string "…" stands for any value; text must be equal line by line, where "…"
stands for any characters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.test_server import KEY, Server, _environment
from tests.test_docs_examples import read_blocks

DOC = Path(__file__).resolve().parents[1] / "docs" / "segments.md"
BLOCKS = read_blocks(DOC.read_text(encoding="utf-8"))
PLACEHOLDER = "…"


def matches(documented, actual) -> bool:
    if documented == PLACEHOLDER:
        return True
    if isinstance(documented, dict):
        return isinstance(actual, dict) and documented.keys() == actual.keys() and all(
            matches(documented[k], actual[k]) for k in documented)
    if isinstance(documented, list):
        return isinstance(actual, list) and len(documented) == len(actual) and all(
            matches(d, a) for d, a in zip(documented, actual))
    return documented == actual and type(documented) is type(actual)


def text_matches(documented: str, actual: str) -> bool:
    expected_lines, actual_lines = documented.strip("\n").split("\n"), actual.strip("\n").split("\n")
    return len(expected_lines) == len(actual_lines) and all(
        re.fullmatch(".*".join(map(re.escape, e.split(PLACEHOLDER))), a) for e, a in zip(expected_lines, actual_lines))


def test_matching_rules():
    assert matches({"a": "…", "b": [1, {"c": "…"}]}, {"a": 5, "b": [1, {"c": None}]})
    assert not matches({"a": 1}, {"a": 1, "b": 2}) and not matches([1], [1, 2]) and not matches({"a": 1}, {"a": True})
    assert text_matches("x … y\nz", "x 12 y\nz\n") and not text_matches("x … y", "x 12 z")


@pytest.fixture(scope="module")
def server(sqlite_url_factory, tmp_path_factory):
    running = Server(sqlite_url_factory(), tmp_path_factory.mktemp("docs") / "stderr.log")
    yield running
    running.stop()


def run_document_commands(server, document: str, blocks, *, at_least: int) -> None:
    """Every ```sh block of ``document`` runs against ``server`` (bash -e -o pipefail, KEY set to its
    admin key, localhost:8000 pointed at it); a ```json output or ```text output block right after
    one is what it must print (… stands for any value). Used by every document with shown outputs."""
    [key] = KEY.findall(server.stderr)
    env = {**_environment(server.url), "KEY": key,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    commands = [(i, b) for i, b in enumerate(blocks) if b.kind == "sh"]
    assert len(commands) >= at_least
    for index, block in commands:
        script = block.body.replace("localhost:8000", f"127.0.0.1:{server.port}")
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"{document}:{block.line}: exit {result.returncode}\n{result.stderr}"
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is None or following.info not in ("json output", "text output"):
            continue
        if following.info == "json output":
            actual = json.loads(result.stdout)
            assert matches(json.loads(following.body), actual), (
                f"{document}:{following.line}: the documented output differs; the real one is:\n"
                f"{json.dumps(actual, ensure_ascii=False)}")
        else:
            assert text_matches(following.body, result.stdout), (
                f"{document}:{following.line}: the documented output differs; the real one is:\n{result.stdout}")


def test_the_commands_of_the_document_run_and_print_what_it_shows(server):
    run_document_commands(server, "docs/segments.md", BLOCKS, at_least=10)


def test_segments_run_refuses_what_it_cannot_run(server):
    cdp = str(Path(sys.executable).parent / "cdp")
    env = _environment(server.url)
    result = subprocess.run([cdp, "segments", "run", "--segment", "no-such-segment"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("not_found: no segment 'no-such-segment'"), result.stderr
    result = subprocess.run([cdp, "segments", "run", "--sandbox", "bad name!"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.startswith("invalid_sandbox"), result.stderr
