"""The in-memory code generator: one visitor over the checked tree, its node families in mixins
(values, predicates, event terms), assembled here into one Python module per expression."""

from __future__ import annotations

import itertools
import warnings
from bisect import bisect_left, bisect_right
from datetime import datetime, timezone
from typing import Any, Callable

from cdp.dsl import ast, render
from cdp.pqltypes import BOOLEAN
from cdp.dsl import runtime
from cdp.engine.memory.common import Ctx, as_instant, is_literal, kleene_and, kleene_or
from cdp.engine.memory.events import EventNodes
from cdp.engine.memory.predicates import PredicateNodes
from cdp.engine.memory.values import ValueNodes

_EMPTY = ([], [])
_MISSING = object()


def _shared(key: tuple, function: Callable, p: Any, A: Any, C: tuple, memo: dict | None) -> Any:
    """An event term's value, computed once per evaluation memo (see EventNodes._event_function).
    Looked up with ``dict.get``: most terms of a catalogue are computed once, so a lookup is
    mostly a miss, and a miss through ``memo[key]`` raised and caught a KeyError (~0.3 µs)."""
    if memo is None:
        return function(p, A, C, memo)
    value = memo.get(key, _MISSING)
    if value is _MISSING:
        value = memo[key] = function(p, A, C, memo)
    return value


class Codegen(ValueNodes, PredicateNodes, EventNodes):
    def __init__(self, *, trace: bool = False):
        self.trace = trace
        self.namespace: dict[str, Any] = {
            "_rt": runtime,
            "_shared": _shared,
            "_EMPTY": _EMPTY,
            "_div": runtime.divide,
            "_chk": runtime.checked,
            "_flt": runtime.as_double,
            "_mod": runtime.modulo,
            "_to_dt": runtime.to_datetime,
            "_add": runtime.add_duration,
            "_seq": runtime.sequence_exists,
            "_Step": runtime.Step,
            "_br": bisect_right,
            "_bl": bisect_left,
            "_MAX_T": datetime.max.replace(tzinfo=timezone.utc),
        }
        self.functions: list[str] = []  # generated helper functions (source)
        self.refresh: list[str] = []  # expressions of as_of, in order: C[1], C[2], …
        self.window_deltas: dict[tuple[int, str], str] = {}  # (amount, unit) → its timedelta's name ("": none)
        self.counter = itertools.count(1)
        self.traced: list[tuple[int, str, bool]] = []  # (depth, text, is_boolean)
        self.uses_segments = False
        self.depth = 0

    # ---- names for generated things ---------------------------------------------------------

    def temp(self) -> str:
        return f"_t{next(self.counter)}"

    def const(self, value: Any, hint: str = "k") -> str:
        name = f"_{hint}{next(self.counter)}"
        self.namespace[name] = value
        return name

    def as_of_constant(self, expression: str) -> str:
        """A value computed once per as_of (windows, now(), today()); the same one shared."""
        if expression not in self.refresh:
            self.refresh.append(expression)
        return f"C[{self.refresh.index(expression) + 1}]"

    # ---- modes ------------------------------------------------------------------------------

    def value(self, node: ast.Node, ctx: Ctx) -> str:
        if self.trace and not ctx.in_condition and not is_literal(node):
            index = len(self.traced)
            self.traced.append((self.depth, render(node), node.type == BOOLEAN))
            self.depth += 1
            try:
                inner = self._value(node, ctx)
            finally:
                self.depth -= 1
            return f"_tr({index}, {inner})"
        return self._value(node, ctx)

    def _value(self, node: ast.Node, ctx: Ctx) -> str:
        method = getattr(self, f"v_{type(node).__name__}", None)
        if method is not None:
            return method(node, ctx)
        if node.type == BOOLEAN:  # boolean nodes defined by their truth and falsity
            return f"(True if {self.truth(node, ctx)} else (False if {self.falsity(node, ctx)} else None))"
        raise TypeError(f"cannot compile {type(node).__name__} as a value")

    def truth(self, node: ast.Node, ctx: Ctx) -> str:
        if self.trace and not ctx.in_condition:
            return f"({self.value(node, ctx)} is True)"
        method = getattr(self, f"t_{type(node).__name__}", None)
        if method is not None:
            return method(node, ctx)
        code = self.value(node, ctx)
        return code if not node.nullable else f"({code} is True)"

    def falsity(self, node: ast.Node, ctx: Ctx) -> str:
        method = getattr(self, f"f_{type(node).__name__}", None)
        if method is not None:
            return method(node, ctx)
        code = self.value(node, ctx)
        return f"(not {code})" if not node.nullable else f"({code} is False)"

    # ---- assembly ---------------------------------------------------------------------------

    def module(self, root: ast.Node) -> tuple[str, Callable]:
        ctx = Ctx()
        body = self.truth(root, ctx) if not self.trace else f"({self.value(root, ctx)} is True)"
        refresh_items = "".join(f"    _C_.append({e})\n" for e in self.refresh)
        refresh = (
            "\n\n_cache = [(None,)]\n\n"
            "def _refresh(as_of):\n"
            "    _C_ = [as_of]\n"
            f"{refresh_items}"
            "    C = tuple(_C_)\n"
            "    _cache[0] = C\n"
            "    return C\n\n"
        ) if self.refresh else "\n\n"
        source = "\n\n".join(self.functions) + refresh + (
            "def predicate(p, as_of, memo=None):\n"
            # an aware datetime passes with one class check; ISO text or a naive datetime (UTC) is converted
            "    if as_of.__class__ is not _datetime or as_of.tzinfo is None:\n"
            "        as_of = _instant(as_of)\n"
            + ("    C = _cache[0]\n"
               "    if C[0] != as_of:\n"
               "        C = _refresh(as_of)\n" if self.refresh else "    C = (as_of,)\n")
            + "    A = p.attributes\n"
            + ("    if memo is None:\n        memo = {}\n" if self.uses_segments else "")
            + f"    return {body}\n"
        )
        self.namespace["_datetime"] = datetime
        self.namespace["_instant"] = as_instant
        self.namespace["_rt_kleene_and"] = kleene_and
        self.namespace["_rt_kleene_or"] = kleene_or
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # `5 is None`-style tests are meant
            code = compile(source, "<pql>", "exec")
        exec(code, self.namespace)  # noqa: S102 - our own generated code from a checked tree
        return source, self.namespace["predicate"]
