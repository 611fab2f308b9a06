"""The PQL language front end: parse, check, render, JSON form (../shared/DSL.md); and what the
language means at run time (runtime.py) and its regular expressions (regex.py: RE2, `like`).
It imports only the rest of the language: the types (cdp.pqltypes), the function registry and
schemas.

    tree = parse('loyalty.tier = "gold"')
    typed = check(tree)                 # or check(text); raises PqlError with every error
    text = render(tree)                 # canonical text; parse(render(t)) == t
    data = to_json(tree); from_json(data) == tree
"""

from __future__ import annotations

from typing import Mapping

from cdp.dsl import ast
from cdp.dsl.catalogue import cycle_errors, prefix_errors, reference_graph
from cdp.dsl.checker import Checker
from cdp.dsl.errors import Diagnostic, PqlError, Span
from cdp.dsl.json_form import from_json, to_json
from cdp.dsl.parser import parse
from cdp.dsl.render import render
from cdp.schema import Schema, luma_schema

__all__ = [
    "ast", "check", "check_catalogue", "parse", "render", "to_json", "from_json",
    "Diagnostic", "PqlError", "Span",
]


def check(text_or_tree: str | ast.Node, schema: Schema | None = None, *,
          segments: Mapping[str, str | ast.Node] | None = None, key: str | None = None) -> ast.Node:
    """Parse (if given text) and type-check against the schema (default: Luma).

    With ``segments`` (a catalogue key → definition), ``in segment`` references must name a
    segment of the catalogue and must not close a cycle, and every definition of the catalogue
    is checked too. ``key`` names the segment being defined, so a reference to itself is a cycle.
    Returns the typed tree; raises PqlError carrying every error found.
    """
    schema = schema or luma_schema()
    if isinstance(text_or_tree, str):
        text = text_or_tree
        tree = parse(text)
    else:
        text, tree = "", text_or_tree
    names = None if segments is None else set(segments) | ({key} if key else set())
    checker = Checker(text, schema, names)
    typed = checker.check_root(tree)
    errors = list(checker.errors)
    if segments is not None:
        try:
            checked = check_catalogue(segments, schema)
        except PqlError as exc:
            errors.extend(exc.errors)
            checked = {}
            for seg_key, definition in segments.items():
                try:
                    checked[seg_key] = _check_one(definition, schema, names)
                except PqlError:
                    pass
        errors.extend(cycle_errors(text, tree, reference_graph(checked), key))
    if errors:
        raise PqlError(errors)
    return typed


def _check_one(definition: str | ast.Node, schema: Schema, names: set[str]) -> ast.Node:
    if isinstance(definition, str):
        text, tree = definition, parse(definition)
    else:
        text, tree = "", definition
    checker = Checker(text, schema, names)
    typed = checker.check_root(tree)
    if checker.errors:
        raise PqlError(checker.errors)
    return typed


def check_catalogue(segments: Mapping[str, str | ast.Node], schema: Schema | None = None) -> dict[str, ast.Node]:
    """Check every definition of a catalogue; unknown references and cycles are errors."""
    schema = schema or luma_schema()
    names = set(segments)
    checked: dict[str, ast.Node] = {}
    errors: list[Diagnostic] = []
    for seg_key, definition in segments.items():
        try:
            checked[seg_key] = _check_one(definition, schema, names)
        except PqlError as exc:
            errors.extend(prefix_errors(seg_key, exc))
    graph = reference_graph(checked)
    reported: set[frozenset] = set()
    for seg_key, tree in checked.items():
        text = segments[seg_key] if isinstance(segments[seg_key], str) else ""
        for diagnostic in cycle_errors(text, tree, {k: v for k, v in graph.items() if k != seg_key}, seg_key):
            members = frozenset(diagnostic.message.split(": ", 1)[1].split(" → "))
            if members in reported:
                continue
            reported.add(members)
            errors.append(Diagnostic(diagnostic.code, f'in segment "{seg_key}": {diagnostic.message}',
                                     diagnostic.span, hint=diagnostic.hint, source=diagnostic.source))
    if errors:
        raise PqlError(errors)
    return checked
