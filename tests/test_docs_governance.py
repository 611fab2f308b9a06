"""Run the commands of docs/governance.md against a real `cdp serve`, in order, as a reader would
(the rules of tests/test_docs_segments.py: a ```json output block after a command is its output,
"…" standing for any value); and check the document's tables of standard labels and core
marketing actions against the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.api.test_server import Server
from tests.test_docs_examples import read_blocks
from tests.test_docs_segments import run_document_commands

DOC = Path(__file__).resolve().parents[1] / "docs" / "governance.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = read_blocks(TEXT)


def _table_rows(first_cell: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in TEXT.split("\n")
            if re.match(rf"\| {first_cell} \|", line)]


def test_the_tables_say_what_the_code_says():
    from cdp.governance.actions import CORE_ACTIONS
    from cdp.governance.labels import STANDARD_LABELS, STANDARD_MEANINGS

    labels = {row[0]: row[1:] for row in _table_rows(r"[CIS]\d+")}
    assert labels == {name: [STANDARD_LABELS[name], *STANDARD_MEANINGS[name]] for name in STANDARD_LABELS}
    actions = {row[0].strip("`"): row[1:] for row in _table_rows(r"`[a-z_]+`")}
    assert actions == {key: list(value) for key, value in CORE_ACTIONS.items()}


@pytest.fixture(scope="module")
def server(sqlite_url_factory, tmp_path_factory):
    running = Server(sqlite_url_factory(), tmp_path_factory.mktemp("docs") / "stderr.log")
    yield running
    running.stop()


def test_the_commands_of_the_document_run_and_print_what_it_shows(server):
    run_document_commands(server, "docs/governance.md", BLOCKS, at_least=10)

