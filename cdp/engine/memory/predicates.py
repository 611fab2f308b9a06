"""Code generation for predicates: comparisons, `in`, `between`, `is null`, string tests and
list tests, each in the three modes (value, truth, falsity)."""

from __future__ import annotations

from cdp.dsl import ast
from cdp.dsl.regex import compile_regex, like_to_regex
from cdp.dsl.type_rules import compared_as_doubles
from cdp.pqltypes import BOOLEAN, DATE, DATETIME
from cdp.engine.memory.common import PY_COMPARE, Ctx, guarded, is_literal
from cdp.functions import lookup


class PredicateNodes:
    """Mixed into the code generator (cdp.engine.memory.codegen): ``v_``/``t_``/``f_`` methods."""

    # ---- comparisons ------------------------------------------------------------------------

    def _operands(self, left: ast.Node, right: ast.Node, ctx) -> tuple[str, str]:
        a, b = self.value(left, ctx), self.value(right, ctx)
        if {left.type, right.type} == {DATE, DATETIME}:
            if left.type == DATE:
                a = guarded(self, a, left.nullable, "_to_dt")
            else:
                b = guarded(self, b, right.nullable, "_to_dt")
        elif compared_as_doubles(left.type, right.type):
            a, b = self.as_double(left, a), self.as_double(right, b)
        return a, b

    @staticmethod
    def as_double(node: ast.Node, code: str) -> str:
        """A side of a comparison of doubles (type_rules.compared_as_doubles): Python compares an
        int with a float exactly, SQL as doubles, so the int becomes a float first (None stays None)."""
        if isinstance(node, ast.NumberLiteral):
            return repr(float(node.value))
        return f"_flt({code})"

    def _compare(self, node: ast.Comparison, ctx, mode: str) -> str:
        op = PY_COMPARE[node.op]
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
        elif is_literal(node.left):
            ta = a  # a literal needs no temporary
        else:
            checks.append(f"(({ta} := {a}) or True)")
        if nullable[1]:
            checks.append(f"({tb} := {b}) is not None")
        elif is_literal(node.right):
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

    def _constant_items(self, items: ast.ListLiteral, as_datetime: bool, as_doubles: bool = False) -> str:
        """The list's values: folded now when they do not depend on as_of."""
        codes = []
        for item in items.items:
            code = self.value(item, Ctx(in_condition=True))
            if as_datetime and item.type == DATE:
                code = f"_to_dt({code})"
            elif as_doubles:
                code = f"_flt({code})"
            codes.append(code)
        literal = "frozenset((" + "".join(c + ", " for c in codes) + "))"
        if any(isinstance(n, ast.Call) and lookup(n.function).stage == "as_of" for n in ast.walk(items)):
            return self.as_of_constant(literal.replace("C[", "_C_["))  # resolved per as_of
        namespace = dict(self.namespace)
        return self.const(eval(literal, namespace), "set")  # noqa: S307 - our own generated code

    def _membership(self, node: ast.InList, ctx, mode: str) -> str:
        as_dt = node.value.type == DATETIME or (node.items.type.element == DATETIME and node.value.type == DATE)
        doubles = compared_as_doubles(node.value.type, node.items.type.element)
        items = self._constant_items(node.items, as_dt, doubles)
        value = self.value(node.value, ctx)
        if node.value.type == DATE and as_dt:
            value = guarded(self, value, node.value.nullable, "_to_dt")
        elif doubles:
            value = self.as_double(node.value, value)
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
        element = node.value.type.element if node.value.type is not None and node.value.type.is_list else None
        other_type = node.other.type.element if node.op != "has" and node.other.type.is_list else node.other.type
        doubles = compared_as_doubles(element, other_type)
        listed = self.value(node.value, ctx)
        # the list's elements as doubles too (a list<number> may hold whole numbers), and a list of
        # dates tested for a datetime as midnights UTC, as `=` takes them
        elements_as = "_flt" if doubles else "_to_dt" if (element, other_type) == (DATE, DATETIME) else None
        if elements_as:
            listed = f"(None if ({tl} := {listed}) is None else tuple(map({elements_as}, {tl})))"
        items_as_datetime = (element, other_type) == (DATETIME, DATE)
        guard = f"({tl} := {listed}) is not None"
        if node.op == "has":
            other = self.value(node.other, ctx)
            if doubles:
                other = self.as_double(node.other, other)
            elif items_as_datetime:
                other = guarded(self, other, node.other.nullable, "_to_dt")
            guard += f" and ({tv} := {other}) is not None" if node.other.nullable else f" and (({tv} := {other}) or True)"
            test = f"({tv} in {tl})"
        else:
            items = self._constant_items(node.other, items_as_datetime, doubles)
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
