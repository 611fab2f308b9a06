"""Code generation for values: literals, names, calls, boolean structure and arithmetic."""

from __future__ import annotations

from cdp.dsl import ast
from cdp.pqltypes import DATE, DATETIME, NUMBER
from cdp.dsl import runtime
from cdp.engine.memory.common import INLINE_CHAIN, checked_result
from cdp.functions import lookup


class ValueNodes:
    """Mixed into the code generator (cdp.engine.memory.codegen): ``v_``/``t_``/``f_`` methods."""

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
            self.namespace[impl] = checked_result(function.python, double=node.type == NUMBER)
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
        if len(node.operands) > INLINE_CHAIN:
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
