"""The SQL dialects: what each overrides of the common compiler, in a snapshot a reviewer reads
(tests/snapshots/dialects/<name>.txt), and that each answers every hook the base leaves open."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from cdp.engine.sql import DIALECTS, SqlCompiler
from cdp.functions import all_functions
from cdp.functions.registry import SQL_DIALECTS
from tests.snapshots import assert_snapshot

SNAPSHOTS = Path(__file__).parent / "snapshots" / "dialects"


def _open_hooks() -> list[str]:
    """The base's methods that raise NotImplementedError: every dialect must say these."""
    hooks = []
    for name, member in vars(SqlCompiler).items():
        if inspect.isfunction(member) and "raise NotImplementedError" in inspect.getsource(member):
            hooks.append(name)
    return sorted(hooks)


def overrides(dialect: type[SqlCompiler]) -> str:
    """Everything a dialect says differently from the base: transforms, methods, and the
    functions whose SQL form is keyed by its name rather than "default"."""
    lines = [f"dialect {dialect.name} ({dialect.__module__}.{dialect.__qualname__})", "", "transforms:"]
    for key, form in sorted(dialect.TRANSFORMS.items()):
        if SqlCompiler.TRANSFORMS.get(key) is not form:
            lines.append(f"  {key}")
    lines += ["", "methods:"]
    for cls in dialect.__mro__:
        if cls is SqlCompiler:
            break
        for name, member in sorted(vars(cls).items()):
            function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
            if not inspect.isfunction(function):
                continue
            kind = "new" if not hasattr(SqlCompiler, name) else "override"
            lines.append(f"  {name} ({kind})")
    lines += ["", "functions with a form of their own:"]
    lines += [f"  {f.name}" for f in all_functions() if dialect.name in f.sql]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_dialect_overrides_snapshot(name, snapshot_update):
    assert_snapshot(SNAPSHOTS / f"{name}.txt", overrides(DIALECTS[name]), update=snapshot_update)


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_dialect_answers_every_open_hook(name):
    dialect = DIALECTS[name]
    missing = [hook for hook in _open_hooks() if getattr(dialect, hook) is getattr(SqlCompiler, hook)]
    assert not missing, f"{name} leaves {missing} to the base, which has no common answer"


def test_the_function_records_know_every_dialect():
    assert set(SQL_DIALECTS) == set(DIALECTS)


def test_every_dialect_runs_every_function_or_says_why():
    """A record's SQL form is found by dialect name, then "default"; a dialect without either
    is an `unsupported` answer (cdp.engine.support), never a database error."""
    for function in all_functions():
        for name in DIALECTS:
            assert function.supports(name) == (function.sql_form(name) is not None)
