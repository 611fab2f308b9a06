"""The in-memory backend: a checked tree → Python source → one compiled predicate.

Evaluation walks no tree. Each boolean node compiles in three modes so that SQL's three-valued
logic (DSL.md §9) costs nothing where it cannot matter:

* ``truth``   — a Python bool: is the node TRUE?
* ``falsity`` — a Python bool: is the node FALSE?
* ``value``   — True / False / None (UNKNOWN), for the places that need the third value.

``not a`` is TRUE exactly when ``a`` is FALSE, ``a and b`` is FALSE when either is FALSE, and so
on, so the top level asks only ``truth(root)`` and the generated code reads like the
hand-written function would. Non-boolean nodes compile to ``value`` (None is SQL's null).
"""

from __future__ import annotations

import itertools
import threading
from bisect import bisect_left, bisect_right
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from cdp.dsl import ast, check, render
from cdp.dsl.errors import Diagnostic, PqlError
from cdp.dsl.regex import compile_regex
from cdp.dsl.types import BOOLEAN, DATE, DATETIME, NUMBER
from cdp.engine import runtime
from cdp.engine.profile import LoadedProfile
from cdp.engine.support import require_support
from cdp.functions import lookup
from cdp.schema import Schema, luma_schema

_PY_COMPARE = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_EMPTY = ([], [])
_INLINE_CHAIN = 8  # longer arithmetic chains fold at run time (Python's parser nests ≤ 200 deep)


@dataclass
class _Ctx:
    """Where code is being generated: the name of the current event variable and aliases."""

    event: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # alias → Python expression
    in_condition: bool = False
    hoisted: dict[str, str] = field(default_factory=dict)  # profile attribute → local variable


class _Codegen:
    def __init__(self, *, trace: bool = False):
        self.trace = trace
        self.namespace: dict[str, Any] = {
            "_rt": runtime,
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

    def value(self, node: ast.Node, ctx: _Ctx) -> str:
        if self.trace and not ctx.in_condition and not _is_literal(node):
            index = len(self.traced)
            self.traced.append((self.depth, render(node), node.type == BOOLEAN))
            self.depth += 1
            try:
                inner = self._value(node, ctx)
            finally:
                self.depth -= 1
            return f"_tr({index}, {inner})"
        return self._value(node, ctx)

    def _value(self, node: ast.Node, ctx: _Ctx) -> str:
        method = getattr(self, f"v_{type(node).__name__}", None)
        if method is not None:
            return method(node, ctx)
        if node.type == BOOLEAN:  # boolean nodes defined by their truth and falsity
            return f"(True if {self.truth(node, ctx)} else (False if {self.falsity(node, ctx)} else None))"
        raise TypeError(f"cannot compile {type(node).__name__} as a value")

    def truth(self, node: ast.Node, ctx: _Ctx) -> str:
        if self.trace and not ctx.in_condition:
            return f"({self.value(node, ctx)} is True)"
        method = getattr(self, f"t_{type(node).__name__}", None)
        if method is not None:
            return method(node, ctx)
        code = self.value(node, ctx)
        return code if not node.nullable else f"({code} is True)"

    def falsity(self, node: ast.Node, ctx: _Ctx) -> str:
        method = getattr(self, f"f_{type(node).__name__}", None)
        if method is not None:
            return method(node, ctx)
        code = self.value(node, ctx)
        return f"(not {code})" if not node.nullable else f"({code} is False)"

    # ---- literals and names -----------------------------------------------------------------

    def v_StringLiteral(self, node, ctx):
        return repr(node.value)

    def v_NumberLiteral(self, node, ctx):
        return repr(node.value)

    def v_BooleanLiteral(self, node, ctx):
        return repr(node.value)

    def v_NullLiteral(self, node, ctx):
        return "None"

    def v_Name(self, node: ast.Name, ctx):
        if node.binding == "profile":
            return ctx.hoisted.get(node.dotted) or f"A.get({node.dotted!r})"
        if node.binding == "event":
            source = ctx.event
            key = node.dotted
        elif node.binding == "alias":
            source = ctx.aliases[node.path[0]]
            key = ".".join(node.path[1:])
        else:
            raise ValueError(f"unchecked name {node.dotted!r}: compile only checked trees")
        if key in ("id", "type", "timestamp"):
            return f"{source}[{key!r}]"
        return f"{source}.get({key!r})"

    # ---- calls ------------------------------------------------------------------------------

    def v_Call(self, node: ast.Call, ctx):
        function = lookup(node.function)
        impl = self.const(function.python, "f")
        if function.stage == "compile":  # date("…"), datetime("…"): literal arguments, folded now
            return self.const(function.python(*(a.value for a in node.args)))
        clock = ["C[0]"] if function.needs_clock else []
        if function.stage == "as_of":  # now(), today(): once per as_of
            return self.as_of_constant(f"{impl}({', '.join(['as_of'] + [self.value(a, ctx) for a in node.args])})"
                                       if function.needs_clock else f"{impl}()")
        args = []
        for arg, target in zip(node.args, function.argument_targets(node)):
            code = self.value(arg, ctx)
            if target == DATETIME and arg.type == DATE:  # declared by the record (DSL.md §2)
                t = self.temp()
                code = f"(None if ({t} := {code}) is None else _to_dt({t}))"
            args.append((code, arg.nullable))
        if node.type is not None and node.type.is_numeric:  # DSL.md §9: out of range is null
            impl = f"_chk_{impl}"
            self.namespace[impl] = _checked_result(function.python, double=node.type == NUMBER)
        if not function.null_propagating or not any(nullable for _c, nullable in args):
            return f"{impl}({', '.join(clock + [c for c, _n in args])})"
        names, guards = [], []
        for code, nullable in args:
            if nullable:
                t = self.temp()
                guards.append(f"({t} := {code}) is None")
                names.append(t)
            else:
                names.append(code)
        return f"(None if {' or '.join(guards)} else {impl}({', '.join(clock + names)}))"

    # ---- boolean structure ------------------------------------------------------------------

    def t_BoolChain(self, node: ast.BoolChain, ctx):
        joiner = " and " if node.op == "and" else " or "
        return "(" + joiner.join(self.truth(o, ctx) for o in node.operands) + ")"

    def f_BoolChain(self, node: ast.BoolChain, ctx):
        joiner = " or " if node.op == "and" else " and "
        return "(" + joiner.join(self.falsity(o, ctx) for o in node.operands) + ")"

    def v_BoolChain(self, node: ast.BoolChain, ctx):
        if self.trace and not ctx.in_condition:
            values = ", ".join(self.value(o, ctx) for o in node.operands)
            return f"_rt_kleene_{node.op}(({values},))"
        if not node.nullable:
            joiner = f" {node.op} "
            return "(" + joiner.join(self.value(o, ctx) for o in node.operands) + ")"
        if node.op == "and":
            return f"(False if {self.f_BoolChain(node, ctx)} else (True if {self.t_BoolChain(node, ctx)} else None))"
        return f"(True if {self.t_BoolChain(node, ctx)} else (False if {self.f_BoolChain(node, ctx)} else None))"

    def t_Not(self, node: ast.Not, ctx):
        return self.falsity(node.operand, ctx)

    def f_Not(self, node: ast.Not, ctx):
        return self.truth(node.operand, ctx)

    def v_Not(self, node: ast.Not, ctx):
        inner = self.value(node.operand, ctx)
        if not node.operand.nullable:
            return f"(not {inner})"
        t = self.temp()
        return f"(None if ({t} := {inner}) is None else not {t})"

    # ---- arithmetic -------------------------------------------------------------------------

    def v_Negate(self, node: ast.Negate, ctx):
        inner = self.operand(node.operand, ctx)
        if not node.operand.nullable:
            return f"_chk(-{inner})"  # -(-2^63) is outside 64 bits: null (DSL.md §9)
        t = self.temp()
        return f"(None if ({t} := {inner}) is None else _chk(-{t}))"

    def operand(self, node: ast.Node, ctx) -> str:
        """An arithmetic operand. A `number` is a double (as SQL holds it), even when the data
        holds a whole number there (`lifetime_value: 120`): its arithmetic is the doubles'."""
        code = self.value(node, ctx)
        if node.type == NUMBER and not isinstance(node, ast.NumberLiteral):
            return f"_flt({code})"
        return code

    def v_Arithmetic(self, node: ast.Arithmetic, ctx):
        if len(node.operands) > _INLINE_CHAIN:
            values = []
            for operand in node.operands:
                if isinstance(operand, ast.DurationLiteral):
                    values.append(self.const(runtime.Duration(operand.amount, operand.unit), "dur"))
                else:
                    values.append(self.operand(operand, ctx))
            return f"_rt.fold_arithmetic({node.operators!r}, [{', '.join(values)}])"
        first = node.operands[0]
        pending_duration = first if isinstance(first, ast.DurationLiteral) else None
        current = None if pending_duration else self.operand(first, ctx)
        current_nullable = first.nullable
        for op, operand in zip(node.operators, node.operands[1:]):
            if pending_duration is not None:  # `5 days + now()`
                right = self.value(operand, ctx)
                current = self._shift(right, operand.nullable, pending_duration, +1)
                current_nullable = operand.nullable
                pending_duration = None
                continue
            if isinstance(operand, ast.DurationLiteral):
                current = self._shift(current, current_nullable, operand, +1 if op == "+" else -1)
                current_nullable = True  # out-of-range dates are null
                continue
            right = self.operand(operand, ctx)
            a, b = self.temp(), self.temp()
            if op == "/":
                combined = f"_div({a}, {b})"
            elif op == "%":
                combined = f"_mod({a}, {b})"
            else:  # DSL.md §9: outside 64 bits (or not finite) is null
                combined = f"_chk({a} {op} {b})"
            if current_nullable or operand.nullable:
                current = f"(None if ({a} := {current}) is None or ({b} := {right}) is None else {combined})"
            else:
                current = f"(({a} := {current}), ({b} := {right}), {combined})[2]"
            current_nullable = True  # null operands, division by zero, overflow (DSL.md §9)
        return current

    def _shift(self, code: str, nullable: bool, duration: ast.DurationLiteral, sign: int) -> str:
        t = self.temp()
        shifted = f"_add({t}, {duration.amount}, {duration.unit!r}, {sign})"
        if nullable:
            return f"(None if ({t} := {code}) is None else {shifted})"
        return f"(({t} := {code}), {shifted})[1]"

    # ---- comparisons ------------------------------------------------------------------------

    def _operands(self, left: ast.Node, right: ast.Node, ctx) -> tuple[str, str]:
        a, b = self.value(left, ctx), self.value(right, ctx)
        if {left.type, right.type} == {DATE, DATETIME}:
            if left.type == DATE:
                a = _guarded(self, a, left.nullable, "_to_dt")
            else:
                b = _guarded(self, b, right.nullable, "_to_dt")
        return a, b

    def _compare(self, node: ast.Comparison, ctx, mode: str) -> str:
        op = _PY_COMPARE[node.op]
        a, b = self._operands(node.left, node.right, ctx)
        nullable = [node.left.nullable, node.right.nullable]
        if not any(nullable):
            expr = f"({a} {op} {b})"
            return {"v": expr, "t": expr, "f": f"(not {expr})"}[mode]
        # `x = "US"` with a non-null right side: None == "US" is already False.
        if mode == "t" and op == "==" and not nullable[1]:
            return f"({a} == {b})"
        ta, tb = self.temp(), self.temp()
        checks = []
        if nullable[0]:
            checks.append(f"({ta} := {a}) is not None")
        elif _is_literal(node.left):
            ta = a  # a literal needs no temporary
        else:
            checks.append(f"(({ta} := {a}) or True)")
        if nullable[1]:
            checks.append(f"({tb} := {b}) is not None")
        elif _is_literal(node.right):
            tb = b
        else:
            checks.append(f"(({tb} := {b}) or True)")
        guard = " and ".join(checks)
        if mode == "t":
            return f"({guard} and {ta} {op} {tb})"
        if mode == "f":
            return f"({guard} and not ({ta} {op} {tb}))"
        return f"(({ta} {op} {tb}) if {guard} else None)"

    def v_Comparison(self, node, ctx):
        return self._compare(node, ctx, "v")

    def t_Comparison(self, node, ctx):
        return self._compare(node, ctx, "t")

    def f_Comparison(self, node, ctx):
        return self._compare(node, ctx, "f")

    # ---- in, between, is null ---------------------------------------------------------------

    def _constant_items(self, items: ast.ListLiteral, as_datetime: bool) -> str:
        """The list's values: folded now when they do not depend on as_of."""
        codes = []
        for item in items.items:
            code = self.value(item, _Ctx(in_condition=True))
            if as_datetime and item.type == DATE:
                code = f"_to_dt({code})"
            codes.append(code)
        literal = "frozenset((" + "".join(c + ", " for c in codes) + "))"
        if any(isinstance(n, ast.Call) and lookup(n.function).stage == "as_of" for n in ast.walk(items)):
            return self.as_of_constant(literal.replace("C[", "_C_["))  # resolved per as_of
        namespace = dict(self.namespace)
        return self.const(eval(literal, namespace), "set")  # noqa: S307 - our own generated code

    def _membership(self, node: ast.InList, ctx, mode: str) -> str:
        as_dt = node.value.type == DATETIME or (node.items.type.element == DATETIME and node.value.type == DATE)
        items = self._constant_items(node.items, as_dt)
        value = self.value(node.value, ctx)
        if node.value.type == DATE and as_dt:
            value = _guarded(self, value, node.value.nullable, "_to_dt")
        t = self.temp()
        inside = f"({t} := {value}) in {items}" if node.value.nullable else f"{value} in {items}"
        known = f"{t} is not None" if node.value.nullable else "True"
        if not node.value.nullable:
            member = f"({value} in {items})"
            is_true = member if not node.negated else f"(not {member})"
            return {"t": is_true, "v": is_true, "f": f"(not {is_true})"}[mode]
        positive, negative = (f"({inside})", f"(({t} := {value}) is not None and {t} not in {items})")
        if node.negated:
            positive, negative = negative, positive
        if mode == "t":
            return positive
        if mode == "f":
            return negative
        return f"(True if {positive} else (False if {known} else None))"

    def v_InList(self, node, ctx):
        return self._membership(node, ctx, "v")

    def t_InList(self, node, ctx):
        return self._membership(node, ctx, "t")

    def f_InList(self, node, ctx):
        return self._membership(node, ctx, "f")

    def _between(self, node: ast.Between, ctx, mode: str) -> str:
        # exactly `x >= a and x <= b` under §9's logic; `not between` is its negation.
        low = ast.Comparison(node.value, ">=", node.low, type=BOOLEAN,
                             nullable=node.value.nullable or node.low.nullable)
        high = ast.Comparison(node.value, "<=", node.high, type=BOOLEAN,
                              nullable=node.value.nullable or node.high.nullable)
        chain = ast.BoolChain("and", (low, high), type=BOOLEAN, nullable=node.nullable)
        if node.negated:
            mode = {"t": "f", "f": "t", "v": "nv"}[mode]
        if mode == "t":
            return self.t_BoolChain(chain, ctx)
        if mode == "f":
            return self.f_BoolChain(chain, ctx)
        value = self.v_BoolChain(chain, ctx)
        if mode == "nv":
            t = self.temp()
            return f"(None if ({t} := {value}) is None else not {t})"
        return value

    def v_Between(self, node, ctx):
        return self._between(node, ctx, "v")

    def t_Between(self, node, ctx):
        return self._between(node, ctx, "t")

    def f_Between(self, node, ctx):
        return self._between(node, ctx, "f")

    def v_IsNull(self, node: ast.IsNull, ctx):
        if not node.value.nullable:  # a value that cannot be null: the answer is known now
            return "True" if node.negated else "False"
        return f"({self.value(node.value, ctx)} is {'not ' if node.negated else ''}None)"

    # ---- string tests -----------------------------------------------------------------------

    def _string_test(self, node: ast.StringTest, ctx, mode: str) -> str:
        a = self.value(node.value, ctx)
        ta, tb = self.temp(), self.temp()
        if node.op in ("like", "matches"):
            pattern = node.pattern.value
            regex = compile_regex(like_to_regex(pattern) if node.op == "like" else pattern)
            rx = self.const(regex, "rx")
            test = f"({rx}.search({ta}) is not None)"
            guard = f"({ta} := {a}) is not None" if node.value.nullable else f"(({ta} := {a}) or True)"
        else:
            b = self.value(node.pattern, ctx)
            test = {"contains": f"({tb} in {ta})", "starts with": f"{ta}.startswith({tb})",
                    "ends with": f"{ta}.endswith({tb})"}[node.op]
            guard_a = f"({ta} := {a}) is not None" if node.value.nullable else f"(({ta} := {a}) or True)"
            guard_b = f"({tb} := {b}) is not None" if node.pattern.nullable else f"(({tb} := {b}) or True)"
            guard = f"{guard_a} and {guard_b}"
        if mode == "t":
            return f"({guard} and {test})"
        if mode == "f":
            return f"({guard} and not {test})"
        return f"({test} if {guard} else None)"

    def v_StringTest(self, node, ctx):
        return self._string_test(node, ctx, "v")

    def t_StringTest(self, node, ctx):
        return self._string_test(node, ctx, "t")

    def f_StringTest(self, node, ctx):
        return self._string_test(node, ctx, "f")

    # ---- lists ------------------------------------------------------------------------------

    def _has(self, node: ast.Has, ctx, mode: str) -> str:
        tl, tv = self.temp(), self.temp()
        guard = f"({tl} := {self.value(node.value, ctx)}) is not None"
        if node.op == "has":
            other = self.value(node.other, ctx)
            guard += f" and ({tv} := {other}) is not None" if node.other.nullable else f" and (({tv} := {other}) or True)"
            test = f"({tv} in {tl})"
        else:
            items = self._constant_items(node.other, False)
            test = f"(not {items}.isdisjoint({tl}))" if node.op == "has any" else f"{items}.issubset({tl})"
        if mode == "t":
            return f"({guard} and {test})"
        if mode == "f":
            return f"({guard} and not {test})"
        return f"({test} if {guard} else None)"

    def v_Has(self, node, ctx):
        return self._has(node, ctx, "v")

    def t_Has(self, node, ctx):
        return self._has(node, ctx, "t")

    def f_Has(self, node, ctx):
        return self._has(node, ctx, "f")

    # ---- segments ---------------------------------------------------------------------------

    def v_SegmentRef(self, node: ast.SegmentRef, ctx):
        self.uses_segments = True
        return f"_seg({node.key!r}, p, C[0], memo)"

    # ---- event terms ------------------------------------------------------------------------

    def _source(self, flt: ast.EventFilter) -> tuple[str, ast.Node | None]:
        """Where to look for candidates, and the condition left to test.

        A top-level conjunct `type = "X"` picks the profile's events of type X (already in
        time order), and needs no test afterwards."""
        condition = flt.condition
        conjuncts = list(condition.operands) if isinstance(condition, ast.BoolChain) and condition.op == "and" else [condition]
        for i, c in enumerate(conjuncts):
            if (isinstance(c, ast.Comparison) and c.op == "=" and isinstance(c.left, ast.Name)
                    and c.left.binding == "event" and c.left.path == ("type",)
                    and isinstance(c.right, ast.StringLiteral)):
                rest = conjuncts[:i] + conjuncts[i + 1:]
                if not rest:
                    remaining = None
                elif len(rest) == 1:
                    remaining = rest[0]
                else:
                    remaining = condition.annotated(operands=tuple(rest))
                return f"p.by_type.get({c.right.value!r}, _EMPTY)", remaining
        return "(p.events, p.timestamps)", condition

    def _window_indexes(self, window: ast.Node | None) -> list[str]:
        """Lines setting i, j: the slice of `ts` (time-ordered timestamps) inside a first-step
        window. Bounds that depend only on as_of are computed once per as_of (in C)."""
        if window is None:
            return ["i = 0", "j = _br(ts, C[0])"]
        if isinstance(window, ast.WithinLast):  # (as_of − N, as_of]
            lo = self.as_of_constant(f"_rt.window_start(as_of, {window.amount}, {window.unit!r})")
            return [f"i = _br(ts, {lo})", "j = _br(ts, C[0])"]
        if isinstance(window, ast.WithinPeriod):  # [start of period, as_of]
            period = "day" if window.period == "today" else window.period
            lo = self.as_of_constant(f"_rt.period_start(as_of, {period!r})")
            return [f"i = _bl(ts, {lo})", "j = _br(ts, C[0])"]
        bounds = [window.start, window.end] if isinstance(window, ast.FromTo) else [window.bound]
        profile_dependent = any(
            isinstance(n, (ast.Name, ast.Aggregate, ast.SegmentRef, ast.Exists, ast.NoEvent))
            for b in bounds for n in ast.walk(b)
        )
        function = {ast.Since: "range_since", ast.Before: "range_before", ast.FromTo: "range_from_to"}[type(window)]
        codes = [self.value(b, _Ctx(in_condition=True)) for b in bounds]
        if profile_dependent:
            return [f"i, j = _rt.{function}(C[0], {', '.join(codes)}).indexes(ts)"]
        rng = self.as_of_constant(f"_rt.{function}(as_of, {', '.join(c.replace('C[', '_C_[') for c in codes)})")
        return [f"i, j = {rng}.indexes(ts)"]

    def _condition_code(self, condition: ast.Node | None, ctx: _Ctx) -> str | None:
        if condition is None:
            return None
        return self.truth(condition, ctx)

    def _event_function(self, body: list[str]) -> str:
        name = f"_ev{next(self.counter)}"
        self.functions.append(f"def {name}(p, A, C, memo):\n" + "\n".join("    " + line for line in body))
        return f"{name}(p, A, C, memo)"

    def _hoist(self, conditions: list[ast.Node | None], ctx: _Ctx) -> list[str]:
        """Read each profile attribute an event condition uses once, before the loop over events."""
        lines = []
        for condition in conditions:
            if condition is None:
                continue
            for n in ast.walk(condition):
                if isinstance(n, ast.Name) and n.binding == "profile" and n.dotted not in ctx.hoisted:
                    var = f"_pa{next(self.counter)}"
                    ctx.hoisted[n.dotted] = var
                    lines.append(f"{var} = A.get({n.dotted!r})")
        return lines

    def _filter_prelude(self, flt: ast.EventFilter, empty_result: str) -> tuple[list[str], str | None, _Ctx]:
        """Lines that find the candidate events (evs[i:j]) and return early when there are none;
        the condition left to test on each; the context it was compiled in."""
        source, condition = self._source(flt)
        ctx = _Ctx(event="e", aliases={flt.alias: "e"} if flt.alias else {}, in_condition=True)
        lines = [f"evs, ts = {source}"] + self._window_indexes(flt.window)
        lines += ["if i >= j:", f"    return {empty_result}"]
        lines += self._hoist([condition], ctx)
        return lines, self._condition_code(condition, ctx), ctx

    def v_Exists(self, node: ast.Exists, ctx):
        if node.steps:
            return self._sequence(node)
        lines, cond, _ = self._filter_prelude(node.filter, "False")
        if cond is None:
            lines.append("return True")
        else:
            lines += ["for e in evs[i:j]:", f"    if {cond}:", "        return True", "return False"]
        return self._event_function(lines)

    def v_NoEvent(self, node: ast.NoEvent, ctx):
        lines, cond, _ = self._filter_prelude(node.filter, "True")
        if cond is None:
            lines.append("return False")
        else:
            lines += ["for e in evs[i:j]:", f"    if {cond}:", "        return False", "return True"]
        return self._event_function(lines)

    def f_Exists(self, node, ctx):
        return f"(not {self.value(node, ctx)})"

    def f_NoEvent(self, node, ctx):
        return f"(not {self.value(node, ctx)})"

    def v_Aggregate(self, node: ast.Aggregate, ctx):
        fn = node.function
        empty = {"count": "0", "count_distinct": "0", "sum": "0"}.get(fn, "None")
        lines, cond, _ = self._filter_prelude(node.filter, empty)
        if fn == "count":
            if cond is None:
                lines.append("return j - i")
            else:
                lines += ["n = 0", "for e in evs[i:j]:", f"    if {cond}:", "        n += 1", "return n"]
            return self._event_function(lines)
        key = ".".join(node.path)
        read = f"e[{key!r}]" if key in ("id", "type", "timestamp") else f"e.get({key!r})"
        test = f"(v := {read}) is not None" + (f" and {cond}" if cond else "")
        if fn in ("first", "last"):
            order = "evs[i:j]" if fn == "first" else "reversed(evs[i:j])"
            lines += [f"for e in {order}:", f"    if {test}:", "        return v", "return None"]
        elif fn in ("sum", "avg"):
            # a `number` field sums in doubles (as SQL does), an integer field exactly
            add = "s += float(v)" if fn == "sum" and node.type == NUMBER else "s += v"
            lines += ["s = 0", "n = 0", "for e in evs[i:j]:", f"    if {test}:", f"        {add}", "        n += 1"]
            # an exact sum, then DSL.md §9: outside 64 bits (or not finite) is null
            lines.append("return _chk(s)" if fn == "sum" else "return _chk(s / n) if n else None")
        elif fn == "count_distinct":
            lines += ["seen = set()", "for e in evs[i:j]:", f"    if {test}:", "        seen.add(v)", "return len(seen)"]
        elif fn in ("min", "max"):
            better = "<" if fn == "min" else ">"
            lines += ["best = None", "for e in evs[i:j]:", f"    if {test} and (best is None or v {better} best):",
                      "        best = v", "return best"]
        else:
            raise ValueError(f"unknown aggregate {fn}")
        return self._event_function(lines)

    def _sequence(self, node: ast.Exists) -> str:
        filters = [node.filter] + [s.filter for s in node.steps]
        alias_index = {f.alias: i for i, f in enumerate(filters) if f.alias}
        lines, cond, ctx0 = self._filter_prelude(node.filter, "False")
        # aliases each step reads, as indexes into the chain of chosen events
        reads = []
        for k, f in enumerate(filters):
            used = {alias_index[n.path[0]] for n in ast.walk(f.condition) if isinstance(n, ast.Name)
                    and n.binding == "alias" and n.path[0] != f.alias} if f.condition is not None else set()
            reads.append(used)
        hoisted = ctx0.hoisted
        prepared = []
        for k, step in enumerate(node.steps, start=1):
            flt = step.filter
            source, condition = self._source(flt)
            aliases = {a: f"chain[{i}]" for a, i in alias_index.items() if i < k}
            if flt.alias:
                aliases[flt.alias] = "e"
            ctx = _Ctx(event="e", aliases=aliases, in_condition=True, hoisted=hoisted)
            lines += self._hoist([condition], ctx)
            prepared.append((k, step, source, condition, ctx))
        if len(node.steps) == 1 and not reads[1]:
            return self._two_step_sequence(lines, cond, prepared[0])
        if cond:
            lines += ["first = []", "for e in evs[i:j]:", f"    if {cond}:", "        first.append(e)"]
        else:
            lines.append("first = evs[i:j]")
        lines.append("if not first:")
        lines.append("    return False")
        step_codes = []
        for k, step, source, condition, ctx in prepared:
            flt = step.filter
            gap = "None"
            if isinstance(flt.window, ast.WithinGap):
                gap = self.const(runtime.gap_function(flt.window.amount, flt.window.unit), "gap")
            needed = tuple(sorted({i for later in reads[k:] for i in later if i < k}))
            lines.append(f"evs{k}, ts{k} = {source}")
            if condition is not None and reads[k]:
                fname = f"_c{next(self.counter)}"
                lines.append(f"def {fname}(e, chain):")
                lines.append(f"    return {self.truth(condition, ctx)}")
                step_codes.append(f"_Step(evs{k}, ts{k}, {fname}, {gap}, {step.negated}, {needed!r})")
            else:
                if condition is not None:
                    lines.append(f"evs{k} = [e for e in evs{k} if {self.truth(condition, ctx)}]")
                    lines.append(f"ts{k} = [e['timestamp'] for e in evs{k}]")
                step_codes.append(f"_Step(evs{k}, ts{k}, None, {gap}, {step.negated}, {needed!r})")
        lines.append(f"return _seq(first, ({', '.join(step_codes)},), C[0])")
        return self._event_function(lines)

    def _two_step_sequence(self, lines: list[str], cond: str | None, prepared) -> str:
        """`exists A then [no] B [within gap]` where B reads no alias: for each A in time order,
        one binary search among the B timestamps decides (O(m log n), no search machinery)."""
        _k, step, source, condition, ctx = prepared
        lines.append(f"evs1, ts1 = {source}")
        if condition is not None:
            lines.append(f"ts1 = [e['timestamp'] for e in evs1 if {self.truth(condition, ctx)}]")
        lines.append("n1 = len(ts1)")
        lines.append("as_of = C[0]")
        window = step.filter.window
        if isinstance(window, ast.WithinGap):
            if window.unit in ("month", "year"):
                gap = self.const(runtime.gap_function(window.amount, window.unit), "gap")
                limit = [f"hi = {gap}(t)", "if hi is None or hi > as_of:", "    hi = as_of"]
            else:
                delta_value = runtime.timedelta_of(window.amount, window.unit)
                delta = self.const(delta_value, "delta")
                latest = self.const(datetime.max.replace(tzinfo=timezone.utc) - delta_value, "latest")
                limit = [f"hi = t + {delta} if t <= {latest} else as_of", "if hi > as_of:", "    hi = as_of"]
        else:
            limit = ["hi = as_of"]
        found_next = "k < n1 and ts1[k] <= hi"
        success = f"not ({found_next})" if step.negated else found_next
        lines.append("for e in evs[i:j]:")
        indent = "    "
        if cond:
            lines.append(f"    if not ({cond}):")
            lines.append("        continue")
        lines.append(f"{indent}t = e['timestamp']")
        lines += [indent + line for line in limit]
        lines.append(f"{indent}k = _br(ts1, t)")
        lines.append(f"{indent}if {success}:")
        lines.append(f"{indent}    return True")
        lines.append("return False")
        return self._event_function(lines)

    # ---- assembly ---------------------------------------------------------------------------

    def module(self, root: ast.Node) -> tuple[str, Callable]:
        ctx = _Ctx()
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


def _checked_result(python: Callable, double: bool) -> Callable:
    """A numeric function's result, null out of range (DSL.md §9); a `number` as a double."""
    if double:
        return lambda *args: runtime.checked(runtime.as_double(python(*args)))
    return lambda *args: runtime.checked(python(*args))


def _guarded(gen: _Codegen, code: str, nullable: bool, function: str) -> str:
    if not nullable:
        return f"{function}({code})"
    t = gen.temp()
    return f"(None if ({t} := {code}) is None else {function}({t}))"


def _is_literal(node: ast.Node) -> bool:
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


def like_to_regex(pattern: str) -> str:
    """A SQL `like` pattern as an anchored RE2 regex: `%` any run, `_` one character, `\\` escapes."""
    out = ["(?s)\\A"]
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(_re2_escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(_re2_escape(ch))
    out.append("\\z")
    return "".join(out)


def _re2_escape(ch: str) -> str:
    return "\\" + ch if ch in r".^$*+?()[]{}|\-/" else ch


# ---- public API -----------------------------------------------------------------------------

Predicate = Callable[..., bool]


@dataclass
class CompiledSegment:
    text: str  # canonical
    source: str  # generated Python, for the curious and for tests
    predicate: Predicate


_CACHE: "OrderedDict[tuple, CompiledSegment]" = OrderedDict()
_CACHE_SIZE = 1024
_CACHE_LOCK = threading.Lock()


def compile_predicate(text_or_tree: str | ast.Node, schema: Schema | None = None, *,
                      segments: Mapping[str, str] | None = None) -> Predicate:
    """Compile once into ``predicate(profile, as_of) -> bool`` (TRUE qualifies).

    ``profile`` is a LoadedProfile (see load_profile); ``as_of`` an aware datetime (a naive one is
    UTC; ISO 8601 text is accepted too: :func:`as_instant`). ``segments``
    is the catalogue that ``in segment`` references resolve against (each referenced segment is
    evaluated at most once per profile and evaluation). Cached by canonical text.
    """
    return compile_segment(text_or_tree, schema, segments=segments).predicate


def compile_segment(text_or_tree: str | ast.Node, schema: Schema | None = None, *,
                    segments: Mapping[str, str] | None = None, trace: bool = False) -> CompiledSegment:
    schema = schema or luma_schema()
    catalogue = dict(segments or {})
    tree = text_or_tree
    if isinstance(tree, ast.Node) and tree.type is not None:
        typed = tree
    else:
        typed = check(tree, schema, segments=catalogue if catalogue else None)
    canonical = render(typed)
    key = (canonical, schema.fingerprint, tuple(sorted(catalogue.items())), trace)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
    require_support(typed, "memory", catalogue)
    referenced = ast.segment_references(typed)
    missing = sorted(k for k in referenced if k not in catalogue)
    if missing:
        raise PqlError([Diagnostic("unknown_segment", f'unknown segment "{k}": no definition was given',
                                   next(n.span for n in ast.walk(typed) if isinstance(n, ast.SegmentRef) and n.key == k),
                                   hint="pass the catalogue of segments (`--segments FILE`)", source=text_or_tree
                                   if isinstance(text_or_tree, str) else "") for k in missing])
    gen = _Codegen(trace=trace)
    gen.namespace["_seg"] = _segment_resolver(referenced, schema, catalogue)
    if trace:
        values: list = []
        gen.namespace["_tr"] = lambda index, value: (values.append((index, value)), value)[1]
        gen.namespace["_trace_values"] = values
    source, predicate = gen.module(typed)
    compiled = CompiledSegment(canonical, source, predicate)
    if trace:
        compiled.traced = gen.traced  # type: ignore[attr-defined]
        compiled.trace_values = gen.namespace["_trace_values"]  # type: ignore[attr-defined]
        return compiled
    with _CACHE_LOCK:
        _CACHE[key] = compiled
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


def _segment_resolver(referenced: set[str], schema: Schema, catalogue: Mapping[str, str]):
    if not referenced:
        return None
    compiled: dict[str, Predicate] = {}

    def resolve(key: str, profile: LoadedProfile, as_of: datetime, memo: dict) -> bool:
        found = memo.get(key)
        if found is None:
            predicate = compiled.get(key)
            if predicate is None:
                predicate = compiled[key] = compile_predicate(catalogue[key], schema, segments=catalogue)
            found = memo[key] = bool(predicate(profile, as_of, memo))
        return found

    return resolve


def explain(text_or_tree: str | ast.Node, profile: LoadedProfile, as_of: datetime | str, schema: Schema | None = None, *,
            segments: Mapping[str, str] | None = None) -> list[dict]:
    """For one profile, the value of each sub-expression (for people: why is it in or out?).

    Returns [{"depth", "expression", "value"}] in evaluation order, the root first."""
    compiled = compile_segment(text_or_tree, schema, segments=segments, trace=True)
    compiled.trace_values.clear()
    compiled.predicate(profile, as_instant(as_of))
    seen: dict[int, Any] = {}
    for index, value in compiled.trace_values:
        seen.setdefault(index, value)
    rows = []
    for index, (depth, text, is_boolean) in enumerate(compiled.traced):
        if index not in seen:
            shown = "not evaluated"
        else:
            shown = format_value(seen[index], is_boolean)
        rows.append({"depth": depth, "expression": text, "value": shown})
    return rows


def format_value(value: Any, is_boolean: bool) -> str:
    if is_boolean:
        return {True: "TRUE", False: "FALSE", None: "UNKNOWN"}[value]
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return render_string_value(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v, False) for v in value) + "]"
    return str(value)


def render_string_value(value: str) -> str:
    from cdp.dsl.render import render_string

    return render_string(value)


def as_instant(as_of: Any) -> datetime:
    """``as_of`` as predicates take it: an aware datetime, a naive one (UTC), or ISO 8601 text
    (``"2026-11-28T12:00:00Z"``; no offset means UTC). TypeError for anything else."""
    from cdp.engine.profile import parse_timestamp

    if not isinstance(as_of, (datetime, str)):
        raise TypeError(f"as_of must be a datetime or ISO 8601 text, not {type(as_of).__name__}")
    try:
        return parse_timestamp(as_of)
    except ValueError as exc:
        raise ValueError(f"as_of: {exc}") from None
