"""The typing rules the checker applies that read best as functions: arithmetic result types,
comparability, `like` and regex patterns, and the words of messages and hints."""

from __future__ import annotations

from cdp.dsl import ast
from cdp.dsl.errors import Span
from cdp.pqltypes import DATE, DATETIME, DURATION, INTEGER, NUMBER, STRING, PqlType, comparable, family

DATE_UNITS = ("day", "week", "month", "year")  # the units a date moves by (a datetime: any)
ORDERED_FAMILIES = ("numeric", "temporal", "string")  # the families `<`, `min`, `max` order


def with_article(t: object) -> str:
    """`a string`, `an integer`: the article for a type name in messages."""
    text = str(t)
    return ("an " if text[:1] in "aeiou" else "a ") + text



def is_constant(node: ast.Node) -> bool:
    for n in ast.walk(node):
        if isinstance(n, (ast.Name, ast.Exists, ast.NoEvent, ast.Aggregate, ast.SegmentRef)):
            return False
    return True


def arithmetic_type(left: PqlType, op: str, right: PqlType, right_node: ast.Node,
                     left_node: ast.Node | None = None) -> PqlType | str:
    if left.is_numeric and right.is_numeric:
        if op == "/":
            return NUMBER
        return INTEGER if left == INTEGER and right == INTEGER else NUMBER
    if op in ("+", "-") and left.is_temporal and right == DURATION:
        if left == DATE:
            unit = right_node.unit if isinstance(right_node, ast.DurationLiteral) else "day"
            if unit not in DATE_UNITS:
                return f"a date {op} {unit}s is not a date: only days, weeks, months and years apply to a date"
            return DATE
        return DATETIME
    if op == "+" and left == DURATION and right.is_temporal:
        # the same unit rule as `date + duration`; a duration value is always a literal
        unit = left_node.unit if isinstance(left_node, ast.DurationLiteral) else "day"
        if right == DATE and unit not in DATE_UNITS:
            return f"{unit}s + a date is not a date: only days, weeks, months and years apply to a date"
        return right
    return f"cannot apply `{op}` to {with_article(left)} and {with_article(right)}"


def arithmetic_hint(left: PqlType, op: str, right: PqlType, right_node: ast.Node) -> str | None:
    if DATE in (left, right) and DURATION in (left, right):
        return "add days, weeks, months or years to a date; for hours, start from a datetime such as `now()`"
    if right == DURATION or left == DURATION:
        return "durations apply to dates and datetimes: `now() - 30 days`"
    if STRING in (left, right):
        return "to join strings use `concat(a, b)`"
    return None


def comparison_problem(left: PqlType, op: str, right: PqlType) -> str | None:
    if left.is_null or right.is_null:
        return None
    if left.is_list or right.is_list:
        return f"cannot compare {with_article(left)} with {with_article(right)}; test lists with `has`, `has any`, `has all`"
    if DURATION in (left, right):
        return f"cannot compare {with_article(left)} with {with_article(right)}"
    if not comparable(left, right):
        return f"cannot compare {with_article(left)} with {with_article(right)}"
    if op not in ("=", "!=") and family(left) not in ORDERED_FAMILIES:
        return f"`{op}` does not order {left} values; use `=` or `!=`"
    return None


def conversion_hint(left: ast.Node, right: ast.Node) -> str | None:
    for a, b in ((left, right), (right, left)):
        if a.type is not None and a.type.is_numeric and isinstance(b, ast.StringLiteral) and is_number(b.value):
            return f"there is no implicit conversion: write the number without quotes, {b.value.strip()}"
        if a.type is not None and a.type.is_temporal and isinstance(b, ast.StringLiteral):
            return f'write a date literal: date("{b.value}") or datetime("{b.value}")'
    return None


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def like_problem(pattern: str) -> str | None:
    escaped = False
    for ch in pattern:
        escaped = (not escaped) and ch == "\\"
    if escaped:
        return "a `like` pattern may not end in a lone `\\`"
    return None


def regex_problem(pattern: str) -> str | None:
    from cdp.dsl.regex import compile_regex  # RE2: the one regex dialect of the language

    try:
        compile_regex(pattern)
    except ValueError as exc:
        return str(exc)
    return None


def path_span(node: ast.Aggregate) -> Span:
    return node.path_span if node.path_span.line else node.span


def short(text: str, span: Span) -> str:
    if span.start < span.end <= len(text):
        return text[span.start:span.end]
    return "x"


def compared_as_doubles(left: PqlType | None, right: PqlType | None) -> bool:
    """Whether a comparison (or `in`, `between`, a list test) of values of these types compares
    doubles: when a `number` meets an `integer` or a `number`. A `number` is a double (as SQL holds
    it, also where the data wrote a whole number), and an integer meeting one becomes a double
    first — as SQL converts the exact operand to the approximate type, and as `/` already does —
    so `9007199254740993 = 9007199254740992.0` is TRUE on every backend. Two integers compare
    exactly. (docs/language.md, "Integers and numbers".)"""
    return NUMBER in (left, right) and left in (INTEGER, NUMBER) and right in (INTEGER, NUMBER)
