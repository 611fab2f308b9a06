"""Warnings of a checked tree: string literals that are not among a field's allowed values."""

from __future__ import annotations

from cdp.dsl import ast
from cdp.dsl.errors import Diagnostic
from cdp.schema import Schema
from cdp.schema.model import closest_value, describe_allowed




def value_warnings(tree: ast.Node, schema: Schema, text: str = "") -> list[Diagnostic]:
    """``unlisted_value`` warnings of a checked tree: a string literal compared with a field
    (``=``, ``!=``, ``in``, ``not in``, ``has``, ``has any``, ``has all``; a field, or the
    ``first``/``last``/``min``/``max`` of an event field) that is not one of the field's allowed
    values (the schema's ``enums``). A warning, not an error: the expression is valid, and a
    segment stays valid when a value leaves the list (stored data may still hold it) — but as
    written it can only match data from before the list changed. Span: the literal."""
    found: list[Diagnostic] = []

    def field_of(node: ast.Node) -> str | None:
        if isinstance(node, ast.Name) and node.binding is not None:
            return ".".join(node.path[1:]) if node.binding == "alias" else node.dotted
        if isinstance(node, ast.Aggregate) and node.function in ("first", "last", "min", "max") and node.path:
            return ".".join(node.path)
        return None

    def literals(node: ast.Node) -> list[ast.StringLiteral]:
        if isinstance(node, ast.StringLiteral):
            return [node]
        if isinstance(node, ast.ListLiteral):
            return [item for item in node.items if isinstance(item, ast.StringLiteral)]
        return []

    def flag(path: str | None, values: list[ast.StringLiteral]) -> None:
        allowed = schema.enums.get(path) if path else None
        if not allowed:
            return
        for literal in values:
            if literal.value in allowed:
                continue
            suggestion = closest_value(literal.value, tuple(allowed))
            listed = describe_allowed(tuple(allowed))
            hint = (f'did you mean "{suggestion}"? ' if suggestion else "") + f"the allowed values: {listed}"
            found.append(Diagnostic(
                "unlisted_value",
                f'"{literal.value}" is not an allowed value of `{path}`: only data stored before the schema '
                f"listed its values can hold it",
                literal.span, hint=hint, source=text))

    for node in ast.walk(tree):
        if isinstance(node, ast.Comparison) and node.op in ("=", "!="):
            flag(field_of(node.left), literals(node.right))
            flag(field_of(node.right), literals(node.left))
        elif isinstance(node, ast.InList):
            flag(field_of(node.value), literals(node.items))
        elif isinstance(node, ast.Has):
            flag(field_of(node.value), literals(node.other))
    return found
