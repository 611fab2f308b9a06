"""Run the commands of docs/activation.md against a real `cdp serve`, in order, as a reader would
(the rules of tests/test_docs_segments.py: a ```json or ```text output block after a command is
its output, "…" standing for any value): the Luma story's steps 7 and 8 — the refused activation
with its lineage, the allowed one, consent left out and counted, the incremental file with
Sarah's entry and, after her purchase, her exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.test_server import Server, _environment
from tests.test_docs_examples import read_blocks
from tests.test_docs_segments import run_document_commands

DOC = Path(__file__).resolve().parents[1] / "docs" / "activation.md"
BLOCKS = read_blocks(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server(sqlite_url_factory, tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    url = sqlite_url_factory()
    running = Server(url, folder / "stderr.log",
                     env=_environment(url, CDP_ACTIVATION_EXPORT_ROOT=str(folder / "exports")))
    yield running
    running.stop()


def test_the_commands_of_the_document_run_and_print_what_it_shows(server):
    run_document_commands(server, "docs/activation.md", BLOCKS, at_least=10)
