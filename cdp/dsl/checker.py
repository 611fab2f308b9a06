"""The type checker: resolves names against the schema, types every node, collects every error.

Backends receive only checked trees (every node has ``type`` and ``nullable``; every Name has
its ``binding``), so they never re-validate. The rules that read best as functions (arithmetic
result types, comparability, patterns, message words) are in type_rules.py; warnings about values
outside a field's allowed list in value_warnings.py.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Mapping

from cdp.dsl import ast
from cdp.dsl.errors import Diagnostic, PqlError, Span
from cdp.dsl.type_rules import (
    ORDERED_FAMILIES, arithmetic_hint, arithmetic_type, comparison_problem, conversion_hint, is_constant,
    like_problem, path_span, regex_problem, short, with_article,
)
from cdp.dsl.value_warnings import value_warnings  # noqa: F401 - its documented home (docs/language.md)
from cdp.functions import lookup
from cdp.functions.registry import ACCEPTS, all_functions
from cdp.pqltypes import (
    BOOLEAN, DATE, DURATION, INTEGER, NULL, NUMBER, STRING, PqlType, comparable, family, list_of, unify,
)
from cdp.schema import Schema, luma_schema


@dataclass
class _Scope:
    """Where a name is being resolved."""

    event: bool = False  # inside an event filter's `where`
    aliases: dict[str, bool] = field(default_factory=dict)  # alias → True
    bound: bool = False  # inside a window bound (bare names are profile attributes)


class Checker:
    def __init__(self, text: str, schema: Schema, segments: Mapping[str, object] | None):
        self.text = text
        self.schema = schema
        self.segments = segments
        self.errors: list[Diagnostic] = []

    # ---- helpers ----------------------------------------------------------------------------

    def error(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(code, message, span, hint=hint, source=self.text))

    def typed(self, node: ast.Node, type_: PqlType | None, nullable: bool, **changes) -> ast.Node:
        return node.annotated(type=type_, nullable=nullable, **changes)

    def null_operand(self, node: ast.Node, where: ast.Node, what: str) -> bool:
        """Report a literal null used as an operand (DSL.md §5); True when it is one."""
        if isinstance(node, ast.NullLiteral):
            self.error(
                "type_mismatch",
                f"the literal `null` cannot be an operand of {what}: the result could never be TRUE",
                where.span,
                hint="use `is null` (or `is not null`) to test for a missing value",
            )
            return True
        return False

    # ---- entry ------------------------------------------------------------------------------

    def check_root(self, node: ast.Node) -> ast.Node:
        checked = self.visit(node, _Scope())
        if checked.type is not None and checked.type != BOOLEAN:
            self.error(
                "type_mismatch",
                f"a segment definition must be a boolean condition, not {with_article(checked.type)}",
                checked.span,
                hint="compare the value, e.g. `loyalty.points > 500`",
            )
        return checked

    def visit(self, node: ast.Node, scope: _Scope) -> ast.Node:
        return getattr(self, f"visit_{type(node).__name__}")(node, scope)

    # ---- literals ---------------------------------------------------------------------------

    def visit_StringLiteral(self, node, scope):
        return self.typed(node, STRING, False)

    def visit_NumberLiteral(self, node, scope):
        return self.typed(node, INTEGER if isinstance(node.value, int) else NUMBER, False)

    def visit_BooleanLiteral(self, node, scope):
        return self.typed(node, BOOLEAN, False)

    def visit_NullLiteral(self, node, scope):
        return self.typed(node, NULL, True)

    def visit_DurationLiteral(self, node, scope):
        return self.typed(node, DURATION, False)

    def visit_ListLiteral(self, node: ast.ListLiteral, scope):
        items = []
        element: PqlType = NULL
        ok = True
        for item in node.items:
            checked = self.visit(item, scope)
            items.append(checked)
            if isinstance(item, ast.NullLiteral):
                self.error("invalid_literal", "`null` is not allowed in a list", item.span,
                           hint="test for a missing value with `is null`")
                ok = False
                continue
            if not is_constant(checked):
                self.error("invalid_literal", "list elements must be constants", item.span,
                           hint="write literal values such as [\"gold\", \"silver\"]")
                ok = False
                continue
            if checked.type is None:
                ok = False
                continue
            if checked.type.is_list or checked.type == DURATION:
                self.error("type_mismatch", f"a list may not hold {with_article(checked.type)}", item.span)
                ok = False
                continue
            unified = unify(element, checked.type)
            if unified is None:
                self.error("type_mismatch",
                           f"list elements must have one type: {checked.type} after {element}", item.span)
                ok = False
                continue
            element = unified
        return self.typed(node, list_of(element) if ok else None, False, items=tuple(items))

    # ---- names ------------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name, scope: _Scope):
        dotted = node.dotted
        if scope.event and not node.profile_prefix and not scope.bound:
            head = node.path[0]
            if head in scope.aliases:
                rest = ".".join(node.path[1:])
                if not rest:
                    self.error("unknown_field", f"`{head}` is an event; name one of its fields",
                               node.span, hint=f"for example `{head}.product.sku`")
                    return self.typed(node, None, True)
                t = self.schema.event_type(rest)
                if t is None:
                    self.unknown_event_field(node, rest, prefix=head + ".")
                    return self.typed(node, None, True)
                return self.typed(node, t, rest not in ("id", "type", "timestamp"), binding="alias")
            t = self.schema.event_type(dotted)
            if t is not None:
                return self.typed(node, t, dotted not in ("id", "type", "timestamp"), binding="event")
            if self.schema.profile_type(dotted) is not None or Schema.is_object(self.schema.profile, dotted):
                self.error(
                    "unknown_field",
                    f"unknown event field `{dotted}`",
                    node.span,
                    hint=f"`{dotted}` is a profile attribute: inside an event condition write `profile.{dotted}`",
                )
                return self.typed(node, None, True)
            self.unknown_event_field(node, dotted)
            return self.typed(node, None, True)

        t = self.schema.profile_type(dotted)
        if t is not None:
            return self.typed(node, t, True, binding="profile")
        self.unknown_profile_field(node, dotted)
        return self.typed(node, None, True)

    def unknown_profile_field(self, node: ast.Name, dotted: str) -> None:
        shown = ("profile." if node.profile_prefix else "") + dotted
        hint = None
        if Schema.is_object(self.schema.profile, dotted):
            members = [k for k in self.schema.profile if k.startswith(dotted + ".")][:4]
            hint = f"`{dotted}` is a group of attributes; name one: {', '.join(f'`{m}`' for m in members)}"
        elif self.schema.event_type(dotted) is not None or Schema.is_object(self.schema.all_event_fields(), dotted):
            hint = (f"`{dotted}` is an event field: test it inside `exists event where …`, "
                    f"or aggregate it with e.g. `last(event.{dotted})`")
        else:
            close = Schema.closest(self.schema.profile, dotted)
            if close:
                hint = "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
            elif len(node.path) == 1 and any(node.path[0] in values for values in self.schema.enums.values()):
                hint = f'to compare with the text {node.path[0]}, quote it: "{node.path[0]}"'
        self.error("unknown_field", f"unknown field `{shown}`", node.span, hint=hint)

    def unknown_event_field(self, node: ast.Name, dotted: str, prefix: str = "") -> None:
        fields_ = self.schema.all_event_fields()
        close = Schema.closest(fields_, dotted)
        hint = None
        if Schema.is_object(fields_, dotted):
            members = [k for k in fields_ if k.startswith(dotted + ".")][:4]
            hint = f"`{dotted}` is a group of fields; name one: {', '.join(f'`{prefix}{m}`' for m in members)}"
        elif close:
            hint = "did you mean " + " or ".join(f"`{prefix}{c}`" for c in close) + "?"
        self.error("unknown_field", f"unknown event field `{prefix}{dotted}`", node.span, hint=hint)

    # ---- function calls ---------------------------------------------------------------------

    def visit_Call(self, node: ast.Call, scope: _Scope):
        args = tuple(self.visit(a, scope) for a in node.args)
        function = lookup(node.function)
        if function is None:
            names = [f.name for f in all_functions()] + list(ast.AGGREGATES)
            close = difflib.get_close_matches(node.function, names, n=3, cutoff=0.6)
            name_span = Span(node.span.line, node.span.column, node.span.line,
                             node.span.column + len(node.function), node.span.start,
                             node.span.start + len(node.function))
            self.error("unknown_function", f"unknown function `{node.function}`", name_span,
                       hint=("did you mean " + " or ".join(f"`{c}`" for c in close) + "?") if close else
                       "the functions are listed in docs/language.md")
            return self.typed(node, None, True, args=args)
        low, high = function.arity
        if len(args) < low or (high is not None and len(args) > high):
            expected = f"{low}" if low == high else (f"{low} to {high}" if high is not None else f"at least {low}")
            self.error("wrong_arguments",
                       f"`{function.name}` takes {expected} argument{'s' if high != 1 else ''}, not {len(args)}",
                       node.span, hint=f"write {function.signature()}")
            return self.typed(node, None, True, args=args)
        ok = True
        for index, arg in enumerate(args):
            param = function.param_for(index)
            if param.literal_only:
                if not isinstance(arg, ast.StringLiteral):
                    self.error("wrong_arguments", f"`{function.name}` takes a string literal",
                               arg.span, hint=f'write e.g. {function.example.split(" ")[-1]}')
                    ok = False
                    continue
                problem = function.validate_literal(arg.value) if function.validate_literal else None
                if problem:
                    self.error("invalid_literal", f"malformed {function.name} literal \"{arg.value}\": {problem}",
                               arg.span, hint=f"write e.g. {function.example.split(' ')[-1]}")
                    ok = False
                continue
            if arg.type is None:
                ok = False
                continue
            if arg.type.is_null:
                continue
            if not ACCEPTS[param.accepts](arg.type):
                self.error("wrong_arguments",
                           f"argument `{param.name}` of `{function.name}` must be {param.describe()}, not {arg.type}",
                           arg.span, hint=f"{function.signature()}: {function.doc}")
                ok = False
        if not ok:
            return self.typed(node, None, True, args=args)
        arg_types = [a.type for a in args]
        if function.common_type:
            common = NULL
            for arg in args:
                unified = unify(common, arg.type)
                if unified is None:
                    self.error("wrong_arguments",
                               f"the arguments of `{function.name}` must have one type: {arg.type} after {common}",
                               arg.span)
                    return self.typed(node, None, True, args=args)
                common = unified
        result = function.result(arg_types)
        if function.never_null:
            nullable = False
        elif result.is_numeric:  # a number result out of range is null (DSL.md §9)
            nullable = True
        elif function.null_propagating:
            nullable = any(a.nullable for a in args)
        else:
            nullable = all(a.nullable for a in args)
        return self.typed(node, result, nullable, args=args)

    # ---- boolean structure ------------------------------------------------------------------

    def require_boolean(self, operand: ast.Node, what: str, span: Span | None = None) -> bool:
        """``span``: the whole operation, for an operator (DSL.md §11); the operand otherwise."""
        if operand.type is None:
            return False
        if operand.type != BOOLEAN:
            self.error("type_mismatch", f"{what} needs a boolean condition, not {with_article(operand.type)}",
                       span or operand.span, hint="compare the value, e.g. `loyalty.points > 500`")
            return False
        return True

    def visit_BoolChain(self, node: ast.BoolChain, scope):
        operands = []
        ok = True
        for operand in node.operands:
            checked = self.visit(operand, scope)
            operands.append(checked)
            if self.null_operand(operand, node, f"`{node.op}`"):
                ok = False
            # the operation that meets the operand: from the chain's start to it (left-associative)
            elif not self.require_boolean(checked, f"`{node.op}`", Span.covering(node.operands[0].span, checked.span)):
                ok = False
        return self.typed(node, BOOLEAN if ok else None, any(o.nullable for o in operands),
                          operands=tuple(operands))

    def visit_Not(self, node: ast.Not, scope):
        operand = self.visit(node.operand, scope)
        ok = not self.null_operand(node.operand, node, "`not`") and self.require_boolean(operand, "`not`", node.span)
        return self.typed(node, BOOLEAN if ok else None, operand.nullable, operand=operand)

    # ---- arithmetic -------------------------------------------------------------------------

    def visit_Negate(self, node: ast.Negate, scope):
        operand = self.visit(node.operand, scope)
        if self.null_operand(node.operand, node, "unary `-`"):
            return self.typed(node, None, True, operand=operand)
        if operand.type is not None and not operand.type.is_numeric:
            self.error("type_mismatch", f"unary `-` needs a number, not {with_article(operand.type)}", node.span)
            return self.typed(node, None, True, operand=operand)
        return self.typed(node, operand.type, True, operand=operand)  # -(-2^63) is null (DSL.md §9)

    def visit_Arithmetic(self, node: ast.Arithmetic, scope):
        operands = [self.visit(o, scope) for o in node.operands]
        current = operands[0]
        current_type = current.type
        nullable = current.nullable
        ok = not self.null_operand(node.operands[0], node, f"`{node.operators[0]}`")
        for index, op in enumerate(node.operators, start=1):
            right = operands[index]
            span = Span.covering(operands[0].span, right.span)
            if self.null_operand(node.operands[index], node, f"`{op}`"):
                ok = False
            if not ok or current_type is None or right.type is None:
                ok = False
                continue
            result = arithmetic_type(current_type, op, right.type, node.operands[index], node.operands[index - 1])
            if isinstance(result, str):
                self.error("type_mismatch", result, span,
                           hint=arithmetic_hint(current_type, op, right.type, node.operands[index]))
                ok = False
                continue
            divisor_is_safe = isinstance(node.operands[index], ast.NumberLiteral) and node.operands[index].value != 0
            # division by zero and dates pushed out of range give null
            # a number result outside the 64-bit range (or not finite) is null (DSL.md §9)
            nullable = (nullable or right.nullable or (op in ("/", "%") and not divisor_is_safe)
                        or DURATION in (current_type, right.type) or (op in "+-*" and result.is_numeric))
            current_type = result
        return self.typed(node, current_type if ok else None, nullable, operands=tuple(operands))

    # ---- predicates -------------------------------------------------------------------------

    def visit_Comparison(self, node: ast.Comparison, scope):
        left = self.visit(node.left, scope)
        right = self.visit(node.right, scope)
        rebuilt = dict(left=left, right=right)
        if isinstance(node.left, ast.NullLiteral) or isinstance(node.right, ast.NullLiteral):
            other = node.right if isinstance(node.left, ast.NullLiteral) else node.left
            test = "is not null" if node.op == "!=" else "is null"
            self.error("type_mismatch",
                       f"`{node.op} null` can never be TRUE: a comparison with null is UNKNOWN",
                       node.span, hint=f"use `{short(self.text, other.span)} {test}`")
            return self.typed(node, None, True, **rebuilt)
        if left.type is None or right.type is None:
            return self.typed(node, None, True, **rebuilt)
        problem = comparison_problem(left.type, node.op, right.type)
        if problem:
            self.error("type_mismatch", problem, node.span, hint=conversion_hint(left, right))
            return self.typed(node, None, True, **rebuilt)
        return self.typed(node, BOOLEAN, left.nullable or right.nullable, **rebuilt)

    def constant_list(self, node: ast.Node, checked: ast.Node, parent: ast.Node, what: str) -> bool:
        if self.null_operand(node, parent, what):
            return False
        if not isinstance(checked, ast.ListLiteral):
            hint = None
            if checked.type is not None and checked.type.is_list:
                hint = "to test a list attribute write `interests has \"running\"`"
            self.error("type_mismatch", f"{what} takes a constant list such as [\"a\", \"b\"]",
                       parent.span, hint=hint)
            return False
        return checked.type is not None

    def visit_InList(self, node: ast.InList, scope):
        value = self.visit(node.value, scope)
        items = self.visit(node.items, scope)
        what = "`not in`" if node.negated else "`in`"
        rebuilt = dict(value=value, items=items)
        ok = not self.null_operand(node.value, node, what)
        ok = self.constant_list(node.items, items, node, what) and ok
        if not ok or value.type is None:
            return self.typed(node, None, True, **rebuilt)
        if value.type.is_list:
            self.error("type_mismatch", f"{what} tests one value, not a list", node.span,
                       hint="for a list attribute write `interests has any [\"a\", \"b\"]`")
            return self.typed(node, None, True, **rebuilt)
        if value.type == DURATION:  # `3 days in []`: found by tests/test_expression_fuzz.py
            self.error("type_mismatch", f"{what} tests a value, not a duration", node.span,
                       hint="a duration shifts a date or a time: `created_at > now() - 3 days`")
            return self.typed(node, None, True, **rebuilt)
        if not comparable(value.type, items.type.element):
            self.error("type_mismatch",
                       f"cannot test {with_article(value.type)} against a list of {items.type.element}", node.span,
                       hint=conversion_hint(value, items))
            return self.typed(node, None, True, **rebuilt)
        return self.typed(node, BOOLEAN, value.nullable, **rebuilt)

    def visit_Between(self, node: ast.Between, scope):
        value, low, high = (self.visit(n, scope) for n in (node.value, node.low, node.high))
        rebuilt = dict(value=value, low=low, high=high)
        what = "`not between`" if node.negated else "`between`"
        if any(self.null_operand(n, node, what) for n in (node.value, node.low, node.high)):
            return self.typed(node, None, True, **rebuilt)
        if None in (value.type, low.type, high.type):
            return self.typed(node, None, True, **rebuilt)
        for bound in (low, high):
            problem = comparison_problem(value.type, "<=", bound.type)
            if problem:
                self.error("type_mismatch", f"in {what}: {problem}", node.span,
                           hint=conversion_hint(value, bound))
                return self.typed(node, None, True, **rebuilt)
        return self.typed(node, BOOLEAN, value.nullable or low.nullable or high.nullable, **rebuilt)

    def visit_IsNull(self, node: ast.IsNull, scope):
        value = self.visit(node.value, scope)
        if isinstance(node.value, ast.NullLiteral):
            self.error("type_mismatch", "`null is null` tests a literal, not a value", node.span,
                       hint="test an attribute: `email is null`")
            return self.typed(node, None, False, value=value)
        if isinstance(node.value, (ast.ListLiteral, ast.DurationLiteral)):  # found by tests/test_expression_fuzz.py
            self.error("type_mismatch", f"`is null` tests a value; {with_article(value.type)} literal is never null",
                       node.span, hint="test an attribute: `email is null`")
            return self.typed(node, None, False, value=value)
        return self.typed(node, BOOLEAN if value.type is not None else None, False, value=value)

    def visit_StringTest(self, node: ast.StringTest, scope):
        value = self.visit(node.value, scope)
        pattern = self.visit(node.pattern, scope)
        rebuilt = dict(value=value, pattern=pattern)
        what = f"`{node.op}`"
        if self.null_operand(node.value, node, what) or self.null_operand(node.pattern, node, what):
            return self.typed(node, None, True, **rebuilt)
        ok = True
        for operand in (value, pattern):
            if operand.type is not None and operand.type != STRING:
                self.error("type_mismatch", f"{what} works on strings, not on {with_article(operand.type)}", node.span,
                           hint="compare numbers and dates with `=`, `<`, `between`")
                ok = False
                break
        if node.op in ("like", "matches"):
            if not isinstance(pattern, ast.StringLiteral):
                self.error("type_mismatch", f"the pattern of {what} must be a string literal", node.span)
                ok = False
            elif node.op == "like":
                problem = like_problem(pattern.value)
                if problem:
                    self.error("invalid_literal", problem, pattern.span,
                               hint="escape a backslash as `\\\\\\\\` in the pattern (`\\\\` in the string)")
                    ok = False
            else:
                problem = regex_problem(pattern.value)
                if problem:
                    self.error("invalid_regex", f"invalid regular expression: {problem}", pattern.span,
                               hint="the syntax is RE2's; write `\\\\.` for a literal dot")
                    ok = False
        if not ok or value.type is None or pattern.type is None:
            return self.typed(node, None, True, **rebuilt)
        return self.typed(node, BOOLEAN, value.nullable or pattern.nullable, **rebuilt)

    def visit_Has(self, node: ast.Has, scope):
        value = self.visit(node.value, scope)
        other = self.visit(node.other, scope)
        rebuilt = dict(value=value, other=other)
        what = f"`{node.op}`"
        if self.null_operand(node.value, node, what) or self.null_operand(node.other, node, what):
            return self.typed(node, None, True, **rebuilt)
        if value.type is None or other.type is None:
            return self.typed(node, None, True, **rebuilt)
        if not value.type.is_list or isinstance(node.value, ast.ListLiteral):  # a literal list: nothing to test
            self.error("type_mismatch", f"{what} tests a list attribute, not {with_article(value.type)}", node.span,
                       hint="for a string write `contains`; for one value write `=` or `in [...]`")
            return self.typed(node, None, True, **rebuilt)
        if node.op == "has":
            if other.type.is_list:
                self.error("type_mismatch", "`has` takes one value", node.span,
                           hint="write `has any [...]` or `has all [...]` for several")
                return self.typed(node, None, True, **rebuilt)
            element = other.type
        else:
            if not self.constant_list(node.other, other, node, what):
                return self.typed(node, None, True, **rebuilt)
            element = other.type.element
        if not comparable(value.type.element, element) or element == DURATION:
            self.error("type_mismatch", f"a list of {value.type.element} cannot hold {with_article(element)}", node.span)
            return self.typed(node, None, True, **rebuilt)
        return self.typed(node, BOOLEAN, value.nullable or other.nullable, **rebuilt)

    def visit_SegmentRef(self, node: ast.SegmentRef, scope):
        if self.segments is not None and node.key not in self.segments:
            close = difflib.get_close_matches(node.key, list(self.segments), n=3, cutoff=0.6)
            self.error("unknown_segment", f"unknown segment \"{node.key}\"", node.span,
                       hint=("did you mean " + " or ".join(f'"{c}"' for c in close) + "?") if close else None)
        return self.typed(node, BOOLEAN, False)

    # ---- events -----------------------------------------------------------------------------

    def check_filter(self, flt: ast.EventFilter, aliases: dict[str, bool]) -> ast.EventFilter:
        own = dict(aliases)
        if flt.alias is not None:
            own[flt.alias] = True
            if self.schema.event_type(flt.alias) is not None or Schema.is_object(self.schema.all_event_fields(), flt.alias):
                self.error("syntax_error", f"the alias `{flt.alias}` hides the event field `{flt.alias}`",
                           flt.span, hint="choose another alias, such as `cart`")
        condition = None
        if flt.condition is not None:
            condition = self.visit(flt.condition, _Scope(event=True, aliases=own))
            if isinstance(flt.condition, ast.NullLiteral):
                self.error("type_mismatch", "`where null` can never be TRUE", flt.condition.span)
            else:
                self.require_boolean(condition, "`where`")
        window = self.check_window(flt.window) if flt.window is not None else None
        return flt.annotated(condition=condition, window=window, type=None, nullable=False)

    def check_window(self, window: ast.Node) -> ast.Node:
        if isinstance(window, (ast.WithinLast, ast.WithinGap, ast.WithinPeriod)):
            return window
        bound_scope = _Scope(bound=True)
        if isinstance(window, ast.FromTo):
            return window.annotated(start=self.check_bound(window.start, bound_scope),
                                    end=self.check_bound(window.end, bound_scope))
        return window.annotated(bound=self.check_bound(window.bound, bound_scope))

    def check_bound(self, bound: ast.Node, scope: _Scope) -> ast.Node:
        checked = self.visit(bound, scope)
        if checked.type is not None and not checked.type.is_temporal and not checked.type.is_null:
            self.error("type_mismatch", f"a window bound must be a date or datetime, not {with_article(checked.type)}",
                       checked.span, hint='write e.g. `since date("2026-01-01")` or `since now() - 2 hours`')
        return checked

    def visit_Exists(self, node: ast.Exists, scope):
        aliases: dict[str, bool] = {}
        first = self.check_filter(node.filter, aliases)
        if node.filter.alias:
            aliases[node.filter.alias] = True
        steps = []
        for step in node.steps:
            checked = self.check_filter(step.filter, aliases)
            steps.append(step.annotated(filter=checked))
            if step.filter.alias:
                aliases[step.filter.alias] = True
        return self.typed(node, BOOLEAN, False, filter=first, steps=tuple(steps))

    def visit_NoEvent(self, node: ast.NoEvent, scope):
        return self.typed(node, BOOLEAN, False, filter=self.check_filter(node.filter, {}))

    def visit_Aggregate(self, node: ast.Aggregate, scope):
        flt = self.check_filter(node.filter, {})
        if node.path is None:
            return self.typed(node, INTEGER, False, filter=flt)
        dotted = ".".join(node.path)
        field_type = self.schema.event_type(dotted)
        if field_type is None:
            fake = ast.Name(node.path, span=path_span(node))
            self.unknown_event_field(fake, dotted, prefix="event.")
            return self.typed(node, None, True, filter=flt)
        fn = node.function
        result: PqlType | None = field_type
        nullable = True
        if fn == "count_distinct":
            result, nullable = INTEGER, False
        elif fn == "sum":  # 0 when no event matches; null when the sum overflows (DSL.md §9)
            if not field_type.is_numeric:
                result = None
        elif fn == "avg":
            result = NUMBER if field_type.is_numeric else None
        elif fn in ("min", "max"):
            if family(field_type) not in ORDERED_FAMILIES:
                result = None
        if result is None:
            self.error("wrong_arguments", f"`{fn}` cannot aggregate `event.{dotted}`, {with_article(field_type)}",
                       path_span(node),
                       hint="sum and avg take numbers; min and max take numbers, dates and strings")
        return self.typed(node, result, nullable, filter=flt, field_type=field_type)


def check_tree(tree: ast.Node, *, text: str = "", schema: Schema | None = None,
               segments: Mapping[str, object] | None = None) -> ast.Node:
    checker = Checker(text, schema or luma_schema(), segments)
    checked = checker.check_root(tree)
    if checker.errors:
        raise PqlError(checker.errors)
    return checked
