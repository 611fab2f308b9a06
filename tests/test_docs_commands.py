"""Every command of README.md and docs/*.md runs, as written, against a real `cdp serve --demo`
(docs/language.md's examples run in tests/test_docs_examples.py).

Fenced blocks, by the info string of their fence:

* ```sh            run with bash, in order, in a working folder of their own where `.venv` (this
                   test run's environment) and `examples/` are at hand, as in the repository: the
                   server was started there by `.venv/bin/cdp serve --demo`, so `cdp` commands find
                   its database (`var/cdp.db`) as they would after `make run`; `KEY` holds the admin
                   key it printed; `curl` reaches it at `localhost:8000` (curl's own `--connect-to`
                   sends those requests to the server's free port). Every command must succeed, and
                   nothing printed may be an error (`{"error": …}`) or a curl failure.
* ```python        run with this environment's Python in the same folder; it must not raise.
* ```http          `METHOD PATH` then a JSON body: sent with the admin key, must not answer an error.
* ```json, ```text  not commands (shapes and answers): not run.
* ```sh no-test: REASON
                   not run; the reason says why (a block that cannot run is marked, never skipped
                   silently).

The documents run in the order of DOCUMENTS (later examples use what earlier ones created).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.api.test_server import KEY, Server

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "docs/ingestion.md", "docs/identity.md", "docs/jobs.md", "docs/web.md", "docs/backends.md",
             "docs/operations.md"]  # every *.md in docs/ but language.md
# documents whose commands run, with the outputs they show compared, in a test of their own
OWN_RUNNERS = {"docs/language.md": "tests/test_docs_examples.py", "docs/segments.md": "tests/test_docs_segments.py",
               "docs/governance.md": "tests/test_docs_governance.py", "docs/sources.md": "tests/test_sources_docs.py",
               "docs/activation.md": "tests/test_docs_activation.py"}
RUN = {"sh", "python", "http"}
NOT_COMMANDS = {"json", "text"}


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    info: str
    body: str

    @property
    def kind(self) -> str:
        return self.info.split()[0] if self.info else ""

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def read_blocks(document: str) -> list[Block]:
    blocks, lines, i = [], (ROOT / document).read_text(encoding="utf-8").split("\n"), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            start, info, body = i, lines[i][3:].strip(), []
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{document}:{start + 1}: code block is never closed"
            blocks.append(Block(document, start + 1, info, "\n".join(body)))
        i += 1
    return blocks


def _not_tested(block: Block) -> str | None:
    """The reason given by `no-test: REASON`, or None when the block runs."""
    match = re.match(r"\S+\s+no-test:\s*(.*)$", block.info)
    return match.group(1).strip() if match else None


def test_the_list_of_documents_is_complete():
    found = {"README.md"} | {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} - set(OWN_RUNNERS)
    assert found == set(DOCUMENTS), "add the new document to DOCUMENTS (in the order its examples build on)"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_block_is_run_or_says_why_not(document):
    for block in read_blocks(document):
        assert block.kind in RUN | NOT_COMMANDS, (
            f"{block.where}: a ```{block.info} block: use sh, python or http (run by this test), json or text "
            f"(not commands), or `sh no-test: REASON`")
        if "no-test" in block.info:
            assert _not_tested(block), f"{block.where}: `no-test:` needs a reason"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`cdp serve --demo` started in a fresh folder holding `.venv` and `examples/`, as after `make run`."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    (folder / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    server = Server(None, folder / "serve.log", cwd=folder, env=env, args=["--demo"], timeout=300)
    try:
        [key] = KEY.findall(server.stderr)
        yield folder, server, {**env, "KEY": key}
    finally:
        server.stop()


_ERROR = re.compile(r'\{"error":\s*\{')


def _run_sh(block: Block, folder: Path, server: Server, env: dict) -> str:
    script = ("set -euo pipefail\n"
              f"curl() {{ command curl --connect-to localhost:8000:127.0.0.1:{server.port} --show-error "
              f"--max-time 60 \"$@\"; }}\n" + block.body + "\n")
    result = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{block.where}: exit {result.returncode}:\n{block.body}\n---\n{output}"
    assert not _ERROR.search(result.stdout), f"{block.where}: an error answer:\n{block.body}\n---\n{output}"
    return output


def _run_python(block: Block, folder: Path, env: dict) -> str:
    result = subprocess.run([sys.executable, "-c", block.body], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{block.where}: exit {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def _run_http(block: Block, server: Server, key: str) -> str:
    request_line, _, body = block.body.partition("\n")
    method, path = request_line.split()
    response = httpx.request(method, server.base + path, headers={"Authorization": f"Bearer {key}"},
                             json=json.loads(body) if body.strip() else None, timeout=120)
    assert response.status_code < 400, f"{block.where}: {response.status_code}:\n{response.text}"
    return response.text


def test_every_command_runs_as_written(demo):
    if shutil.which("curl") is None:
        pytest.fail("the documentation's examples use curl: install it (apt-get install curl)")
    folder, server, env = demo
    ran = 0
    outputs = {}
    for document in DOCUMENTS:
        for block in read_blocks(document):
            if block.kind not in RUN or _not_tested(block) is not None:
                continue
            if block.kind == "sh":
                outputs[block.where] = _run_sh(block, folder, server, env)
            elif block.kind == "python":
                outputs[block.where] = _run_python(block, folder, env)
            else:
                outputs[block.where] = _run_http(block, server, env["KEY"])
            ran += 1
    assert ran >= 6, outputs
    # what the examples promise in their comments
    readme = "\n".join(v for k, v in outputs.items() if k.startswith("README.md"))
    assert "sarah-rose" in readme and '"canonical":"loyalty.points > 500"' in readme
    assert "True" in readme and "did you mean" in readme
    # the batch file of docs/ingestion.md (its mapping sent with --form-string) is applied
    job = json.loads(outputs[next(k for k in outputs if k.startswith("docs/ingestion.md") and "batches" in
                                  next(b.body for b in read_blocks("docs/ingestion.md") if b.where == k))])
    headers = {"Authorization": f"Bearer {env['KEY']}"}
    deadline = time.monotonic() + 60
    while (batch := httpx.get(f"{server.base}/v1/batches/{job['id']}", headers=headers).json())["status"] in (
            "queued", "processing"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
    assert (batch["status"], batch["accepted_rows"], batch["rejected_rows"]) == ("succeeded", 1, 0), batch
    rosa = httpx.get(f"{server.base}/v1/profiles/lookup", params={"namespace": "crm_id", "id": "C-2001"},
                     headers=headers).json()
    assert rosa["attributes"]["interests"] == ["yoga", "hiking"] and rosa["attributes"]["person"]["birth_date"] == \
        "1990-02-14"
