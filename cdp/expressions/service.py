"""Checking expressions against a sandbox's schema and segment catalogue."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from cdp.dsl import PqlError, ast, check, render, to_json
from cdp.dsl.value_warnings import value_warnings
from cdp.errors import Unprocessable
from cdp.schema import Schema
from cdp.storage.models import segments


def stored_catalogue(*, connection: sa.Connection, sandbox: str) -> dict[str, str]:
    """The segments stored in the sandbox, key → expression."""
    rows = connection.execute(sa.select(segments.c.key, segments.c.expression).where(segments.c.sandbox == sandbox))
    return {row.key: row.expression for row in rows}


def invalid_expression(error: PqlError) -> Unprocessable:
    """The API form of a language error: 422 ``invalid_expression`` with every diagnostic."""
    first = error.errors[0]
    more = f" (and {len(error.errors) - 1} more)" if len(error.errors) > 1 else ""
    return Unprocessable(f"invalid expression: {first.message}{more}", code="invalid_expression",
                         details={"errors": [d.to_dict() for d in error.errors]})


def check_expression(*, expression: str, schema: Schema, catalogue: Mapping[str, str]) -> ast.Node:
    """The typed tree; Unprocessable (``invalid_expression``) with every diagnostic otherwise."""
    try:
        return check(expression, schema, segments=catalogue)
    except PqlError as error:
        raise invalid_expression(error) from None


def describe(tree: ast.Node, *, schema: Schema, text: str) -> dict:

    return {"ok": True, "canonical": render(tree), "json": to_json(tree),
            "warnings": [w.to_dict() for w in value_warnings(tree, schema, text)]}


def functions() -> list[dict]:
    """The language's functions, for an editor's completion: name, signature, documentation and
    example, from the function registry (the same records docs/language.md is generated from)."""
    from cdp.functions.registry import all_functions

    return [{"name": f.name, "signature": f.signature(), "doc": f.doc, "example": f.example} for f in all_functions()]
