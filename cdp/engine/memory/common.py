"""What the in-memory code generator's parts share: the generation context, small code
helpers, and the Kleene connectives and `like` translation the generated code calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from cdp.dsl import ast
from cdp.dsl import runtime
from cdp.engine.profile import parse_timestamp

PY_COMPARE = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
INLINE_CHAIN = 8  # longer arithmetic chains fold at run time (Python's parser nests ≤ 200 deep)


@dataclass
class Ctx:
    """Where code is being generated: the name of the current event variable and aliases."""

    event: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # alias → Python expression
    in_condition: bool = False
    hoisted: dict[str, str] = field(default_factory=dict)  # profile attribute → local variable



def checked_result(python: Callable, double: bool) -> Callable:
    """A numeric function's result, null out of range (DSL.md §9); a `number` as a double."""
    if double:
        return lambda *args: runtime.checked(runtime.as_double(python(*args)))
    return lambda *args: runtime.checked(python(*args))


def guarded(gen, code: str, nullable: bool, function: str) -> str:
    if not nullable:
        return f"{function}({code})"
    t = gen.temp()
    return f"(None if ({t} := {code}) is None else {function}({t}))"


def is_literal(node: ast.Node) -> bool:
    return isinstance(node, (ast.StringLiteral, ast.NumberLiteral, ast.BooleanLiteral, ast.NullLiteral,
                             ast.DurationLiteral, ast.ListLiteral))


def kleene_and(values: tuple) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def kleene_or(values: tuple) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def as_instant(as_of: Any) -> datetime:
    """``as_of`` as predicates take it: an aware datetime, a naive one (UTC), or ISO 8601 text
    (``"2026-11-28T12:00:00Z"``; no offset means UTC). TypeError for anything else."""
    if not isinstance(as_of, (datetime, str)):
        raise TypeError(f"as_of must be a datetime or ISO 8601 text, not {type(as_of).__name__}")
    try:
        return parse_timestamp(as_of)
    except ValueError as exc:
        raise ValueError(f"as_of: {exc}") from None
