"""The JSON form of a tree (DSL.md §12), for tools and user interfaces.

Every node is an object with a ``kind`` and the node's fields under their own names;
``from_json(to_json(tree)) == tree``. ``from_json`` validates what it reads and raises PqlError
(``syntax_error``, with the JSON path of the problem) instead of building a malformed tree.
"""

from __future__ import annotations

from typing import Any

from cdp.dsl import ast
from cdp.dsl.errors import Diagnostic, PqlError, Span

MAX_JSON_DEPTH = 256

# kind → (node class, {field: shape}). Shapes: node, nodes, opt_node, str, opt_str, bool, int,
# number, strs, opt_strs, filter, opt_window, window, steps.
_SPECS: dict[str, tuple[type, dict[str, str]]] = {
    "string": (ast.StringLiteral, {"value": "str"}),
    "number": (ast.NumberLiteral, {"value": "number"}),
    "boolean": (ast.BooleanLiteral, {"value": "bool"}),
    "null": (ast.NullLiteral, {}),
    "duration": (ast.DurationLiteral, {"amount": "int", "unit": "unit"}),
    "list": (ast.ListLiteral, {"items": "nodes"}),
    "name": (ast.Name, {"path": "strs", "profile_prefix": "bool"}),
    "call": (ast.Call, {"function": "str", "args": "nodes"}),
    "bool_chain": (ast.BoolChain, {"op": "bool_op", "operands": "nodes"}),
    "not": (ast.Not, {"operand": "node"}),
    "negate": (ast.Negate, {"operand": "node"}),
    "arithmetic": (ast.Arithmetic, {"operands": "nodes", "operators": "arith_ops"}),
    "comparison": (ast.Comparison, {"left": "node", "op": "compare_op", "right": "node"}),
    "in_list": (ast.InList, {"value": "node", "items": "node", "negated": "bool"}),
    "between": (ast.Between, {"value": "node", "low": "node", "high": "node", "negated": "bool"}),
    "is_null": (ast.IsNull, {"value": "node", "negated": "bool"}),
    "string_test": (ast.StringTest, {"op": "string_op", "value": "node", "pattern": "node"}),
    "has": (ast.Has, {"op": "has_op", "value": "node", "other": "node"}),
    "in_segment": (ast.SegmentRef, {"key": "str"}),
    "exists": (ast.Exists, {"filter": "filter", "steps": "steps"}),
    "no_event": (ast.NoEvent, {"filter": "filter"}),
    "aggregate": (ast.Aggregate, {"function": "aggregate", "path": "opt_strs", "filter": "filter"}),
    # not expressions, but parts of event terms
    "filter": (ast.EventFilter, {"alias": "opt_str", "condition": "opt_node", "window": "opt_window"}),
    "step": (ast.SequenceStep, {"negated": "bool", "filter": "filter"}),
    "within_last": (ast.WithinLast, {"amount": "int", "unit": "unit"}),
    "within_gap": (ast.WithinGap, {"amount": "int", "unit": "unit"}),
    "within_period": (ast.WithinPeriod, {"period": "period"}),
    "since": (ast.Since, {"bound": "node"}),
    "before": (ast.Before, {"bound": "node"}),
    "from_to": (ast.FromTo, {"start": "node", "end": "node"}),
}
_KIND_OF = {cls: kind for kind, (cls, _fields) in _SPECS.items()}
_EXPRESSION_KINDS = {k for k in _SPECS if k not in ("filter", "step", "within_last", "within_gap",
                                                    "within_period", "since", "before", "from_to")}
_WINDOW_KINDS = ("within_last", "within_gap", "within_period", "since", "before", "from_to")
_ENUMS = {
    "bool_op": ("and", "or"),
    "compare_op": ("=", "!=", "<", "<=", ">", ">="),
    "string_op": ("contains", "starts with", "ends with", "like", "matches"),
    "has_op": ("has", "has any", "has all"),
    "unit": ast.DURATION_UNITS,
    "period": ("today", "week", "month", "year"),
    "aggregate": ast.AGGREGATES,
}


def to_json(node: ast.Node) -> dict:
    """The JSON form (plain dicts, lists, strings, numbers, booleans, None)."""
    kind = _KIND_OF[type(node)]
    out: dict[str, Any] = {"kind": kind}
    for name, shape in _SPECS[kind][1].items():
        value = getattr(node, name)
        if isinstance(value, ast.Node):
            out[name] = to_json(value)
        elif isinstance(value, tuple):
            out[name] = [to_json(v) if isinstance(v, ast.Node) else v for v in value]
        else:
            out[name] = value
    return out


def from_json(data: Any) -> ast.Node:
    """A tree from its JSON form; raises PqlError on anything malformed.

    The tree must also have a text form: it is rendered and parsed again, so the JSON form obeys
    every rule the text form does (limits, sequence rules, no event term inside a `where` …).
    """
    from cdp.dsl.parser import parse
    from cdp.dsl.render import render

    tree = _Reader().expression(data, "$", 0)
    try:
        text = render(tree)
    except ValueError as exc:
        raise PqlError([Diagnostic("syntax_error", f"invalid JSON form: {exc}", Span(1, 1, 1, 1))]) from None
    try:
        reparsed = parse(text)
    except PqlError as exc:
        raise PqlError([
            Diagnostic(d.code, f"the JSON form breaks a rule of the language: {d.message}", d.span, hint=d.hint,
                       source=d.source)
            for d in exc.errors
        ]) from None
    if reparsed != tree:
        raise PqlError([Diagnostic("syntax_error", "the JSON form has no text form (ambiguous structure)",
                                   Span(1, 1, 1, 1))])
    return tree


class _Reader:
    def fail(self, path: str, message: str) -> None:
        raise PqlError([Diagnostic("syntax_error", f"invalid JSON form at {path}: {message}", Span(1, 1, 1, 1))])

    def expression(self, data: Any, path: str, depth: int) -> ast.Node:
        node = self.node(data, path, depth)
        if _KIND_OF[type(node)] not in _EXPRESSION_KINDS:
            self.fail(path, f"a {_KIND_OF[type(node)]} is not an expression")
        return node

    def node(self, data: Any, path: str, depth: int, allowed: tuple[str, ...] | None = None) -> ast.Node:
        if depth > MAX_JSON_DEPTH:
            raise PqlError([Diagnostic("too_complex", f"the JSON form nests deeper than {MAX_JSON_DEPTH} levels",
                                       Span(1, 1, 1, 1))])
        if not isinstance(data, dict):
            self.fail(path, "expected an object with a `kind`")
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in _SPECS or (allowed is not None and kind not in allowed):
            choices = allowed or tuple(sorted(_EXPRESSION_KINDS))
            self.fail(path, f"unknown kind {kind!r}; expected one of {', '.join(choices)}")
        cls, spec = _SPECS[kind]
        extra = set(data) - set(spec) - {"kind"}
        if extra:
            self.fail(path, f"unexpected key(s) {', '.join(sorted(extra))} for kind {kind!r}")
        values = {}
        for name, shape in spec.items():
            if name not in data and not shape.startswith("opt_") and shape not in ("bool", "steps"):
                self.fail(path, f"missing key {name!r} for kind {kind!r}")
            values[name] = self.field(data.get(name), shape, f"{path}.{name}", depth + 1)
        if kind == "number" and values["value"] < 0:
            return ast.Negate(ast.NumberLiteral(-values["value"]))
        if kind == "bool_chain" and len(values["operands"]) < 2:
            self.fail(path, "a bool_chain needs at least two operands")
        if kind == "arithmetic":
            if len(values["operands"]) < 2 or len(values["operators"]) != len(values["operands"]) - 1:
                self.fail(path, "an arithmetic chain needs n ≥ 2 operands and n − 1 operators")
            groups = {op in "+-" for op in values["operators"]}
            if len(groups) != 1:
                self.fail(path, "one arithmetic chain holds either `+ -` or `* / %`, not both")
        if kind == "call":
            values["function"] = values["function"].lower()
        return cls(**values)

    def field(self, value: Any, shape: str, path: str, depth: int) -> Any:
        if shape == "node":
            return self.expression(value, path, depth)
        if shape == "opt_node":
            return None if value is None else self.expression(value, path, depth)
        if shape == "nodes":
            if not isinstance(value, list):
                self.fail(path, "expected a list")
            return tuple(self.expression(v, f"{path}[{i}]", depth) for i, v in enumerate(value))
        if shape == "filter":
            return self.node(value, path, depth, allowed=("filter",))
        if shape == "opt_window":
            return None if value is None else self.node(value, path, depth, allowed=_WINDOW_KINDS)
        if shape == "steps":
            value = [] if value is None else value
            if not isinstance(value, list):
                self.fail(path, "expected a list of steps")
            return tuple(self.node(v, f"{path}[{i}]", depth, allowed=("step",)) for i, v in enumerate(value))
        if shape in ("str", "opt_str"):
            if value is None and shape == "opt_str":
                return None
            if not isinstance(value, str):
                self.fail(path, "expected a string")
            return value
        if shape == "bool":
            value = False if value is None else value
            if not isinstance(value, bool):
                self.fail(path, "expected true or false")
            return value
        if shape == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self.fail(path, "expected a non-negative whole number")
            return value
        if shape == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(path, "expected a number")
            if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
                self.fail(path, "expected a finite number")
            return value
        if shape in ("strs", "opt_strs"):
            if value is None and shape == "opt_strs":
                return None
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                self.fail(path, "expected a non-empty list of non-empty strings")
            return tuple(value)
        if shape == "arith_ops":
            if not isinstance(value, list) or not all(v in ("+", "-", "*", "/", "%") for v in value):
                self.fail(path, "expected a list of `+`, `-`, `*`, `/`, `%`")
            return tuple(value)
        if shape in _ENUMS:
            if value not in _ENUMS[shape]:
                self.fail(path, f"expected one of {', '.join(map(str, _ENUMS[shape]))}")
            return value
        raise AssertionError(f"unknown shape {shape}")
