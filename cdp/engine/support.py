"""What each backend can run: one error type, and the check made before anything runs.

A function lives in its registry record (cdp/functions); a backend can run it when the record has
a form for it (memory: the Python form; SQLite, PostgreSQL: an SQL form for the dialect or a
default one). An expression using a function that a backend lacks fails when it is checked for
that backend — with ``UnsupportedOnBackend`` and the call's span — never with a database error
at run time.
"""

from __future__ import annotations

from typing import Mapping

from cdp.dsl import ast, check, parse
from cdp.dsl.errors import Span
from cdp.functions import BACKENDS, all_functions, lookup


class UnsupportedOnBackend(Exception):
    """A backend cannot run something the language allows: one error type, with the reason."""

    code = "unsupported"

    def __init__(self, backend: str, reason: str, span: Span | None = None):
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason
        self.span = span


def unsupported(tree: ast.Node, backend: str) -> list[UnsupportedOnBackend]:
    """Every call in a (checked) tree that the backend has no form for."""
    if backend not in BACKENDS:
        return [UnsupportedOnBackend(backend, f"unknown backend; the backends are {', '.join(BACKENDS)}")]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = lookup(node.function)
            if function is not None and not function.supports(backend):
                problems.append(UnsupportedOnBackend(
                    backend, f"the function {function.name}() has no form for {backend}; "
                             f"it runs on {', '.join(b for b in BACKENDS if function.supports(b))}", node.span))
    return problems


def require_support(tree: ast.Node, backend: str, segments: Mapping[str, object] | None = None) -> None:
    """Raise UnsupportedOnBackend for the first thing the backend cannot run, in the tree or in
    the segments it refers to (given as checked trees or texts)."""
    problems = unsupported(tree, backend)
    if problems:
        raise problems[0]
    if not segments:
        return

    pending, seen = sorted(ast.segment_references(tree)), set()
    while pending:
        key = pending.pop()
        definition = segments.get(key)
        if key in seen or definition is None:
            continue
        seen.add(key)
        inner = parse(definition) if isinstance(definition, str) else definition
        found = unsupported(inner, backend)
        if found:
            raise UnsupportedOnBackend(backend, f'in segment "{key}": {found[0].reason}', found[0].span)
        pending.extend(sorted(ast.segment_references(inner)))


def check_for_backend(text_or_tree, backend: str, schema=None, *, segments: Mapping[str, str] | None = None):
    """``cdp.dsl.check`` and then whether ``backend`` can run the expression: the typed tree, or
    PqlError (language errors) or UnsupportedOnBackend (the backend lacks a form)."""

    typed = check(text_or_tree, schema, segments=segments)
    require_support(typed, backend, segments)
    return typed


def support_matrix() -> list[tuple[str, dict[str, bool]]]:
    """(function, {backend: supported}) for every registered function (docs/language.md)."""
    return [(f.name, {b: f.supports(b) for b in BACKENDS}) for f in all_functions()]
