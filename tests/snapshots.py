"""Snapshot files: what a test's output must be, reviewed and committed. A missing snapshot is a
failure like a changed one; snapshots are written only when asked: ``pytest --snapshot-update``
or ``CDP_UPDATE_SNAPSHOTS=1`` (then review the diff and commit it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

UPDATE_HINT = "rerun with `pytest --snapshot-update` (or CDP_UPDATE_SNAPSHOTS=1), review the file and commit it"


def update_requested(config: pytest.Config | None = None) -> bool:
    from_option = bool(config is not None and config.getoption("snapshot_update", default=False))
    return from_option or os.environ.get("CDP_UPDATE_SNAPSHOTS", "").strip().lower() in {"1", "true", "yes"}


def assert_snapshot(path: Path, text: str, *, update: bool) -> None:
    """``text`` must equal the snapshot at ``path``; with ``update`` the snapshot is (re)written."""
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"snapshot {path} is missing: {UPDATE_HINT}", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"output changed against the snapshot {path}; if that is intended, {UPDATE_HINT}"
