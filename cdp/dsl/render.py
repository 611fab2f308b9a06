"""The canonical text of a tree (DSL.md §12): ``parse(render(tree)) == tree``.

Keywords in lower case, single spaces, double-quoted strings, parentheses only where the
grammar needs them. One line.
"""

from __future__ import annotations

import re
from decimal import Decimal

from cdp.dsl import ast



def keywords() -> frozenset[str]:
    """Every reserved word: the grammar's keywords and the function registry's names (such names
    are written in backticks)."""
    from cdp.dsl.parser import keywords as reserved

    return reserved()


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Binding strength: higher binds tighter (DSL.md §4).
_OR, _AND, _NOT, _PREDICATE, _SUM, _PRODUCT, _UNARY, _ATOM = range(1, 9)


def render(node: ast.Node) -> str:
    """Canonical text of an expression tree."""
    return _Renderer().expr(node, minimum=_OR, open_ok=True)


def render_name_part(part: str, *, after_dot: bool = False) -> str:
    if "`" in part or "\n" in part or not part:
        raise ValueError(f"the name {part!r} cannot be written in PQL")
    if _IDENT.match(part) and (after_dot or part.lower() not in keywords()):
        return part
    return f"`{part}`"


def render_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_number(value: int | float) -> str:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value} cannot be written as a PQL number")
    text = format(Decimal(repr(value)), "f")
    if "." not in text:
        text += ".0"
    return text


def _unit(amount: int, unit: str) -> str:
    return f"{amount} {unit if amount == 1 else unit + 's'}"


def _level(node: ast.Node) -> int:
    if isinstance(node, ast.BoolChain):
        return _OR if node.op == "or" else _AND
    if isinstance(node, ast.Not):
        return _NOT
    if isinstance(node, (ast.Comparison, ast.InList, ast.Between, ast.IsNull, ast.StringTest, ast.Has,
                         ast.Exists, ast.NoEvent)):
        return _PREDICATE
    if isinstance(node, ast.Arithmetic):
        return _SUM if node.operators[0] in "+-" else _PRODUCT
    if isinstance(node, ast.Negate):
        return _UNARY
    if isinstance(node, ast.NumberLiteral) and node.value < 0:
        return _UNARY
    return _ATOM


def _is_open(node: ast.Node) -> bool:
    """Does the text of this node end in a `where` condition that would swallow what follows?"""
    while isinstance(node, ast.Not):
        node = node.operand
    if isinstance(node, ast.BoolChain):
        return _is_open(node.operands[-1])
    if isinstance(node, ast.Exists):
        last = node.steps[-1].filter if node.steps else node.filter
        return last.condition is not None and last.window is None
    if isinstance(node, ast.NoEvent):
        return node.filter.condition is not None and node.filter.window is None
    return False


class _Renderer:
    def expr(self, node: ast.Node, *, minimum: int, open_ok: bool) -> str:
        text = self.node(node, open_ok=open_ok)
        if _level(node) < minimum or (not open_ok and _is_open(node)):
            return f"({self.node(node, open_ok=True)})"
        return text

    def node(self, node: ast.Node, *, open_ok: bool) -> str:
        return getattr(self, f"r_{type(node).__name__}")(node, open_ok)

    # literals
    def r_StringLiteral(self, node, open_ok):
        return render_string(node.value)

    def r_NumberLiteral(self, node, open_ok):
        return render_number(node.value)

    def r_BooleanLiteral(self, node, open_ok):
        return "true" if node.value else "false"

    def r_NullLiteral(self, node, open_ok):
        return "null"

    def r_DurationLiteral(self, node, open_ok):
        return _unit(node.amount, node.unit)

    def r_ListLiteral(self, node, open_ok):
        return "[" + ", ".join(self.expr(i, minimum=_OR, open_ok=True) for i in node.items) + "]"

    # names, calls
    def r_Name(self, node, open_ok):
        # After a dot only a name can follow, so keywords need no backticks there.
        parts = [render_name_part(node.path[0])] + [render_name_part(p, after_dot=True) for p in node.path[1:]]
        if not node.profile_prefix and len(node.path) > 1 and node.path[0] == "profile":
            parts[0] = "`profile`"
        return ("profile." if node.profile_prefix else "") + ".".join(parts)

    def r_Call(self, node, open_ok):
        name = node.function if node.function.lower() in keywords() else render_name_part(node.function)
        return f"{name}(" + ", ".join(self.expr(a, minimum=_OR, open_ok=True) for a in node.args) + ")"

    # operators
    def r_BoolChain(self, node, open_ok):
        level = _OR if node.op == "or" else _AND
        parts = []
        last = len(node.operands) - 1
        for i, operand in enumerate(node.operands):
            parts.append(self.expr(operand, minimum=level + 1, open_ok=open_ok and i == last))
        return f" {node.op} ".join(parts)

    def r_Not(self, node, open_ok):
        return "not " + self.expr(node.operand, minimum=_NOT, open_ok=open_ok)

    def r_Negate(self, node, open_ok):
        inner = self.expr(node.operand, minimum=_UNARY, open_ok=False)
        return "- " + inner if inner.startswith("-") else "-" + inner

    def r_Arithmetic(self, node, open_ok):
        level = _SUM if node.operators[0] in "+-" else _PRODUCT
        parts = [self.expr(node.operands[0], minimum=level + 1, open_ok=False)]
        for op, operand in zip(node.operators, node.operands[1:]):
            parts.append(op)
            parts.append(self.expr(operand, minimum=level + 1, open_ok=False))
        return " ".join(parts)

    def _operand(self, node):
        return self.expr(node, minimum=_SUM, open_ok=False)

    def r_Comparison(self, node, open_ok):
        return f"{self._operand(node.left)} {node.op} {self._operand(node.right)}"

    def r_InList(self, node, open_ok):
        keyword = "not in" if node.negated else "in"
        return f"{self._operand(node.value)} {keyword} {self._operand(node.items)}"

    def r_Between(self, node, open_ok):
        keyword = "not between" if node.negated else "between"
        return f"{self._operand(node.value)} {keyword} {self._operand(node.low)} and {self._operand(node.high)}"

    def r_IsNull(self, node, open_ok):
        return f"{self._operand(node.value)} is {'not null' if node.negated else 'null'}"

    def r_StringTest(self, node, open_ok):
        return f"{self._operand(node.value)} {node.op} {self._operand(node.pattern)}"

    def r_Has(self, node, open_ok):
        return f"{self._operand(node.value)} {node.op} {self._operand(node.other)}"

    def r_SegmentRef(self, node, open_ok):
        return f"in segment {render_string(node.key)}"

    # events
    def window(self, window) -> str:
        if isinstance(window, ast.WithinLast):
            return f"within last {_unit(window.amount, window.unit)}"
        if isinstance(window, ast.WithinGap):
            return f"within {_unit(window.amount, window.unit)}"
        if isinstance(window, ast.WithinPeriod):
            return "within today" if window.period == "today" else f"within this {window.period}"
        if isinstance(window, ast.Since):
            return f"since {self._operand(window.bound)}"
        if isinstance(window, ast.Before):
            return f"before {self._operand(window.bound)}"
        if isinstance(window, ast.FromTo):
            return f"from {self._operand(window.start)} to {self._operand(window.end)}"
        raise TypeError(f"not a window: {window!r}")

    def filter_tail(self, flt: ast.EventFilter) -> str:
        parts = []
        if flt.alias is not None:
            parts.append(f"as {render_name_part(flt.alias)}")
        if flt.condition is not None:
            parts.append("where " + self.condition(flt.condition))
        if flt.window is not None:
            parts.append(self.window(flt.window))
        return (" " + " ".join(parts)) if parts else ""

    def condition(self, node: ast.Node) -> str:
        # An event term inside a `where` is a syntax error; parenthesised it at least reads back
        # as one and gets the parser's clear message.
        if isinstance(node, (ast.Exists, ast.NoEvent)):
            return f"({self.node(node, open_ok=True)})"
        return self.expr(node, minimum=_OR, open_ok=True)

    def r_Exists(self, node, open_ok):
        text = "exists event" + self.filter_tail(node.filter)
        for step in node.steps:
            text += " then " + ("no event" if step.negated else "event") + self.filter_tail(step.filter)
        return text

    def r_NoEvent(self, node, open_ok):
        return "no event" + self.filter_tail(node.filter)

    def r_Aggregate(self, node, open_ok):
        if node.path is None:
            return f"{node.function}(event{self.filter_tail(node.filter)})"
        path = ".".join(render_name_part(p, after_dot=True) for p in node.path)
        return f"{node.function}(event.{path}{self.filter_tail(node.filter)})"
