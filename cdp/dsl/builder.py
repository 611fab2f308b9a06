"""Lark's tree → our AST (cdp.dsl.ast), at once: spans from the tokens, literals decoded, the
limits of DSL.md §11 on depth, list length and integer size enforced on the way."""

from __future__ import annotations

import re

from lark import Token, Tree

from cdp.dsl import ast
from cdp.dsl.errors import Diagnostic, PqlError, Span

MAX_DEPTH = 64
MAX_LIST_ITEMS = 10_000
MAX_INTEGER = 2**63 - 1  # what SQL's bigint holds; larger literals are rejected, not wrapped

# Lark tree nodes that nest one level deeper (DSL.md §11: parentheses, calls, event terms,
# lists and prefix operators).
_NESTING_RULES = frozenset(
    {"parens", "call", "list", "exists_term", "no_term", "count_agg", "value_agg", "not_op", "negate"}
)





def check_depth(text: str, tree: Tree) -> None:
    """Reject nesting deeper than MAX_DEPTH, walking Lark's tree with an explicit stack."""
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > MAX_DEPTH:
                raise PqlError([
                    Diagnostic(
                        "too_complex",
                        f"the expression nests deeper than {MAX_DEPTH} levels",
                        _tree_span(text, node),
                        hint="flatten it: `a or b or c` is one level however long",
                        source=text,
                    )
                ])
        if node.data == "list":
            items = [c for c in node.children if isinstance(c, Tree)]
            if len(items) > MAX_LIST_ITEMS:
                raise PqlError([
                    Diagnostic(
                        "too_complex",
                        f"the list has {len(items)} items; the limit is {MAX_LIST_ITEMS}",
                        _tree_span(text, node),
                        hint="keep long lists of values in a segment or an attribute",
                        source=text,
                    )
                ])
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth))


def _tree_span(text: str, node: Tree | Token) -> Span:
    """From the first token of the subtree to the last (Lark counted their lines and columns)."""
    first = _edge_token(node, 0)
    last = _edge_token(node, -1)
    if first is None or last is None:
        return Span.at_offset(text, 0, 0)
    return Span(first.line, first.column, last.end_line, last.end_column, first.start_pos, last.end_pos)


def _edge_token(node: Tree | Token | None, side: int) -> Token | None:
    while isinstance(node, Tree):
        children = [c for c in node.children if c is not None]
        if not children:
            return None
        node = children[side]
    return node


# ---- Lark tree → AST ------------------------------------------------------------------------

_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)


class Builder:
    def __init__(self, text: str):
        self.text = text
        self.errors: list[Diagnostic] = []
        self._in_condition = 0  # >0 while building an event filter's `where`

    # helpers ----------------------------------------------------------------------------------

    def span(self, node: Tree | Token) -> Span:
        return _tree_span(self.text, node)

    def error(self, code: str, message: str, at: Tree | Token | Span, hint: str | None = None) -> None:
        span = at if isinstance(at, Span) else self.span(at)
        self.errors.append(Diagnostic(code, message, span, hint=hint, source=self.text))

    @staticmethod
    def subtrees(tree: Tree) -> list[Tree]:
        return [c for c in tree.children if isinstance(c, Tree)]

    @staticmethod
    def tokens(tree: Tree, *types: str) -> list[Token]:
        return [c for c in tree.children if isinstance(c, Token) and (not types or c.type in types)]

    def build(self, tree: Tree | Token) -> ast.Node:
        method = getattr(self, f"build_{tree.data}", None)
        if method is None:  # a grammar rule without a builder is our bug, not the user's
            raise RuntimeError(f"no AST builder for grammar rule {tree.data!r}")
        node = method(tree)
        if node.span.line == 0:
            node = node.annotated(span=self.span(tree))
        return node

    # boolean structure ------------------------------------------------------------------------

    def build_or_chain(self, tree: Tree) -> ast.Node:
        return ast.BoolChain("or", tuple(self.build(c) for c in self.subtrees(tree)), span=self.span(tree))

    def build_and_chain(self, tree: Tree) -> ast.Node:
        return ast.BoolChain("and", tuple(self.build(c) for c in self.subtrees(tree)), span=self.span(tree))

    def build_not_op(self, tree: Tree) -> ast.Node:
        return ast.Not(self.build(self.subtrees(tree)[0]), span=self.span(tree))

    def build_parens(self, tree: Tree) -> ast.Node:
        # the parentheses belong to the operand: an error about it spans them too (DSL.md §11)
        return self.build(self.subtrees(tree)[0]).annotated(span=self.span(tree))

    # predicates -------------------------------------------------------------------------------

    def build_comparison(self, tree: Tree) -> ast.Node:
        left, right = self.subtrees(tree)
        op = self.tokens(tree, "COMPARE")[0].value
        return ast.Comparison(self.build(left), op, self.build(right), span=self.span(tree))

    def _in(self, tree: Tree, negated: bool) -> ast.Node:
        value, items = self.subtrees(tree)
        return ast.InList(self.build(value), self.build(items), negated, span=self.span(tree))

    def build_in_list(self, tree: Tree) -> ast.Node:
        return self._in(tree, False)

    def build_not_in_list(self, tree: Tree) -> ast.Node:
        return self._in(tree, True)

    def _between(self, tree: Tree, negated: bool) -> ast.Node:
        value, low, high = (self.build(c) for c in self.subtrees(tree))
        return ast.Between(value, low, high, negated, span=self.span(tree))

    def build_between(self, tree: Tree) -> ast.Node:
        return self._between(tree, False)

    def build_not_between(self, tree: Tree) -> ast.Node:
        return self._between(tree, True)

    def build_is_null(self, tree: Tree) -> ast.Node:
        return ast.IsNull(self.build(self.subtrees(tree)[0]), False, span=self.span(tree))

    def build_is_not_null(self, tree: Tree) -> ast.Node:
        return ast.IsNull(self.build(self.subtrees(tree)[0]), True, span=self.span(tree))

    def _string_test(self, tree: Tree, op: str) -> ast.Node:
        value, pattern = (self.build(c) for c in self.subtrees(tree))
        return ast.StringTest(op, value, pattern, span=self.span(tree))

    def build_contains(self, tree: Tree) -> ast.Node:
        return self._string_test(tree, "contains")

    def build_starts_with(self, tree: Tree) -> ast.Node:
        return self._string_test(tree, "starts with")

    def build_ends_with(self, tree: Tree) -> ast.Node:
        return self._string_test(tree, "ends with")

    def build_like(self, tree: Tree) -> ast.Node:
        return self._string_test(tree, "like")

    def build_matches(self, tree: Tree) -> ast.Node:
        return self._string_test(tree, "matches")

    def _has(self, tree: Tree, op: str) -> ast.Node:
        value, other = (self.build(c) for c in self.subtrees(tree))
        return ast.Has(op, value, other, span=self.span(tree))

    def build_has(self, tree: Tree) -> ast.Node:
        return self._has(tree, "has")

    def build_has_any(self, tree: Tree) -> ast.Node:
        return self._has(tree, "has any")

    def build_has_all(self, tree: Tree) -> ast.Node:
        return self._has(tree, "has all")

    def build_segment_ref(self, tree: Tree) -> ast.Node:
        token = self.tokens(tree, "STRING")[0]
        return ast.SegmentRef(self._string_value(token), span=self.span(tree))

    # arithmetic -------------------------------------------------------------------------------

    def build_arith_chain(self, tree: Tree) -> ast.Node:
        children = tree.children
        if len(children) == 1:
            return self.build(children[0])
        operands = tuple(self.build(c) for c in children[0::2])
        operators = tuple(str(t) for t in children[1::2])
        return ast.Arithmetic(operands, operators, span=self.span(tree))

    def build_negate(self, tree: Tree) -> ast.Node:
        return ast.Negate(self.build(self.subtrees(tree)[0]), span=self.span(tree))

    # literals ---------------------------------------------------------------------------------

    def _string_value(self, token: Token) -> str:
        raw = token.value[1:-1]
        problems: list[str] = []

        def decode(match: re.Match) -> str:
            body = match.group(1)
            if body in _ESCAPES:
                return _ESCAPES[body]
            if body.startswith("u") and len(body) == 5:
                return chr(int(body[1:], 16))
            problems.append(body[:1])
            return ""

        value = _ESCAPE_RE.sub(decode, raw)
        value = _join_surrogates(value)
        if problems:
            shown = ", ".join(f"`\\{p}`" for p in problems)
            self.error(
                "invalid_literal",
                f"invalid escape {shown} in a string",
                token,
                hint="escapes are \\\" \\' \\\\ \\n \\t \\uXXXX; write `\\\\` for a backslash "
                     "(a regex for a literal dot is \"luma\\\\.com\")",
            )
        elif any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            self.error("invalid_literal", "a string may not hold a lone surrogate (\\uD800–\\uDFFF)", token)
        elif "\x00" in value:
            self.error("invalid_literal", "a string may not hold the NUL character (\\u0000)", token,
                       hint="databases such as PostgreSQL cannot store it, so no profile can hold it either")
        return value

    def build_string(self, tree: Tree) -> ast.Node:
        token = tree.children[0]
        return ast.StringLiteral(self._string_value(token), span=self.span(tree))

    def _number_value(self, token: Token) -> int | float:
        text = token.value
        if "." in text:
            value = float(text)
            if value == float("inf") or (value != 0 and value < 2.2250738585072014e-308):
                self.error("invalid_literal", "the number is outside the range of 64-bit floating point", token,
                           hint="decimal numbers are IEEE doubles: about 2.2e-308 to 1.8e308 in size")
                return 0.0
            return value
        value = int(text)
        if value > MAX_INTEGER:
            self.error("invalid_literal", f"the number {text} is larger than {MAX_INTEGER}", token,
                       hint="integers are 64-bit")
        return value

    def build_number(self, tree: Tree) -> ast.Node:
        return ast.NumberLiteral(self._number_value(tree.children[0]), span=self.span(tree))

    def _whole_amount(self, number: Token, unit: Token, at: Tree | Span) -> tuple[int, str]:
        unit_name = _unit(unit)
        if "." in number.value:
            self.error("invalid_literal", f"the number of a duration must be whole, not {number.value}", at,
                       hint=f"write a whole number, e.g. `{max(1, int(float(number.value)))} "
                            f"{_plural(max(1, int(float(number.value))), unit_name)}`, with a smaller unit if needed")
            return 0, unit_name
        amount = int(number.value)
        if amount > 1_000_000:
            self.error("invalid_literal", f"the duration {amount} {unit_name}s is too large", at,
                       hint="durations are limited to 1,000,000 units")
        return amount, unit_name

    def build_duration(self, tree: Tree) -> ast.Node:
        number, unit = tree.children
        amount, unit_name = self._whole_amount(number, unit, tree)
        return ast.DurationLiteral(amount, unit_name, span=self.span(tree))

    def build_true(self, tree: Tree) -> ast.Node:
        return ast.BooleanLiteral(True, span=self.span(tree))

    def build_false(self, tree: Tree) -> ast.Node:
        return ast.BooleanLiteral(False, span=self.span(tree))

    def build_null(self, tree: Tree) -> ast.Node:
        return ast.NullLiteral(span=self.span(tree))

    def build_list(self, tree: Tree) -> ast.Node:
        items = tuple(self.build(c) for c in self.subtrees(tree))
        return ast.ListLiteral(items, span=self.span(tree))

    # names and calls --------------------------------------------------------------------------

    @staticmethod
    def _ident(token: Token) -> str:
        return token.value[1:-1] if token.type == "QUOTED_NAME" else token.value

    def build_name(self, tree: Tree) -> ast.Node:
        parts = [c for c in tree.children if isinstance(c, Token)]
        profile_prefix = len(parts) > 1 and parts[0].type == "NAME" and parts[0].value == "profile"
        if profile_prefix:
            parts = parts[1:]
        return ast.Name(tuple(self._ident(p) for p in parts), profile_prefix, span=self.span(tree))

    def build_call(self, tree: Tree) -> ast.Node:
        name_token = tree.children[0]
        args = tuple(self.build(c) for c in self.subtrees(tree))
        call = ast.Call(name_token.value.lower(), args, span=self.span(tree))
        return call

    # events -----------------------------------------------------------------------------------

    def _enter_condition(self, condition: Tree | None) -> ast.Node | None:
        if condition is None:
            return None
        self._in_condition += 1
        try:
            return self.build(condition)
        finally:
            self._in_condition -= 1

    def _nested_event_term(self, tree: Tree) -> None:
        if self._in_condition:
            self.error(
                "syntax_error",
                "an event term may not appear inside another event term's `where`",
                tree,
                hint="move it out of the `where`, e.g. `(exists event where …) and count(event …) > 1`",
            )

    def _filter(self, alias: Tree | None, condition: Tree | None, window: Tree | None,
                at: Tree, first_step: bool) -> ast.EventFilter:
        alias_name = self._ident(alias.children[0]) if alias is not None else None
        built_window = self.build(window) if window is not None else None
        if built_window is not None:
            if first_step and isinstance(built_window, ast.WithinGap):
                self.error(
                    "syntax_error",
                    "`within N UNIT` without `last` is the gap of a `then` step",
                    window,
                    hint=f"write `within last {built_window.amount} {_plural(built_window.amount, built_window.unit)}`",
                )
            elif not first_step and not isinstance(built_window, ast.WithinGap):
                self.error(
                    "syntax_error",
                    "a `then` step takes only a gap after the previous step: `within N UNIT`",
                    window,
                    hint="absolute windows (`within last …`, `since`, `before`, `from … to`) belong to the first step",
                )
        return ast.EventFilter(alias_name, self._enter_condition(condition), built_window, span=self.span(at))

    def build_filter(self, tree: Tree, first_step: bool = True) -> ast.EventFilter:
        if len(tree.children) == 3:  # the open form: `event [as a] where condition`
            _event, alias, condition = tree.children
            window = None
        else:
            _event, alias, condition, window = tree.children
        return self._filter(alias, condition, window, tree, first_step)

    def build_filter_no_where(self, tree: Tree, first_step: bool = True) -> ast.EventFilter:
        _event, alias, window = tree.children
        return self._filter(alias, None, window, tree, first_step)

    def _step(self, tree: Tree) -> ast.SequenceStep:
        if tree.data == "then_step" and len(tree.children) == 5:  # open form
            _then, no, _event, alias, condition = tree.children
            window = None
        elif tree.data == "then_step":
            _then, no, _event, alias, condition, window = tree.children
        else:
            _then, no, _event, alias, window = tree.children
            condition = None
        flt = self._filter(alias, condition, window, tree, first_step=False)
        return ast.SequenceStep(no is not None, flt, span=self.span(tree))

    def _any_filter(self, tree: Tree) -> ast.EventFilter:
        if tree.data == "filter_no_where":
            return self.build_filter_no_where(tree)
        return self.build_filter(tree)

    def build_exists_term(self, tree: Tree) -> ast.Node:
        self._nested_event_term(tree)
        parts = self.subtrees(tree)
        if len(parts) - 1 > MAX_DEPTH:
            self.error("too_complex", f"the sequence has {len(parts) - 1} `then` steps; the limit is {MAX_DEPTH}",
                       tree, hint="split the journey into several segments")
            return ast.Exists(ast.EventFilter(None, None, None), (), span=self.span(tree))
        flt = self._any_filter(parts[0])
        steps = tuple(self._step(s) for s in parts[1:])
        for step, following in zip(steps, steps[1:]):
            if step.negated:  # the step after it is what may not be there (its `then`)
                self.error("syntax_error", "`then no event` may only be the last step of a sequence: "
                           "no step may follow it", following.span, hint="move the `then no event` step to the end")
        aliases: dict[str, ast.Node] = {}
        for f in (flt, *(s.filter for s in steps)):
            if f.alias is None:
                continue
            if f.alias in aliases:
                self.error("syntax_error", f"the alias `{f.alias}` is used twice in one sequence", f.span,
                           hint="give each step its own alias")
            aliases[f.alias] = f
        return ast.Exists(flt, steps, span=self.span(tree))

    def build_no_term(self, tree: Tree) -> ast.Node:
        self._nested_event_term(tree)
        return ast.NoEvent(self._any_filter(self.subtrees(tree)[0]), span=self.span(tree))

    def build_count_agg(self, tree: Tree) -> ast.Node:
        self._nested_event_term(tree)
        return ast.Aggregate("count", None, self._any_filter(self.subtrees(tree)[0]), span=self.span(tree))

    def build_value_agg(self, tree: Tree) -> ast.Node:
        self._nested_event_term(tree)
        func_token, _lpar, event, path_tree, condition, window, _rpar = tree.children
        path = tuple(self._ident(t) for t in path_tree.children if isinstance(t, Token))
        flt = self._filter(None, condition, window, tree, first_step=True)
        # the argument is `event.PATH`, whole
        last = _edge_token(path_tree, -1)
        path_span = Span(event.line, event.column, last.end_line, last.end_column, event.start_pos, last.end_pos)
        return ast.Aggregate(func_token.value.lower(), path, flt, path_span=path_span, span=self.span(tree))

    # windows ----------------------------------------------------------------------------------

    def build_within_last(self, tree: Tree) -> ast.Node:
        _within, _last, number, unit = tree.children
        amount, unit_name = self._whole_amount(number, unit, tree)
        return ast.WithinLast(amount, unit_name, span=self.span(tree))

    def build_within_gap(self, tree: Tree) -> ast.Node:
        _within, number, unit = tree.children
        amount, unit_name = self._whole_amount(number, unit, tree)
        return ast.WithinGap(amount, unit_name, span=self.span(tree))

    def build_within_today(self, tree: Tree) -> ast.Node:
        return ast.WithinPeriod("today", span=self.span(tree))

    def build_within_this(self, tree: Tree) -> ast.Node:
        unit = tree.children[2]
        name = unit.value.lower()
        if name not in ("week", "month", "year"):
            self.error("syntax_error", f"`within this {unit.value}` is not a calendar period", unit,
                       hint="write `within today`, `within this week`, `within this month` or `within this year`")
            name = "week"
        return ast.WithinPeriod(name, span=self.span(tree))

    def _bound(self, tree: Tree) -> ast.Node:
        # A bound is about the profile, not the filtered event (DSL.md §6).
        saved, self._in_condition = self._in_condition, 0
        try:
            return self.build(tree)
        finally:
            self._in_condition = saved

    def build_since(self, tree: Tree) -> ast.Node:
        return ast.Since(self._bound(self.subtrees(tree)[0]), span=self.span(tree))

    def build_before(self, tree: Tree) -> ast.Node:
        return ast.Before(self._bound(self.subtrees(tree)[0]), span=self.span(tree))

    def build_from_to(self, tree: Tree) -> ast.Node:
        start, end = self.subtrees(tree)
        return ast.FromTo(self._bound(start), self._bound(end), span=self.span(tree))


def _unit(token: Token) -> str:
    name = token.value.lower()
    return name[:-1] if name.endswith("s") else name


def _plural(amount: int, unit: str) -> str:
    return unit if amount == 1 else unit + "s"


def _join_surrogates(value: str) -> str:
    """`\\uD83D\\uDE00` written as two escapes is one code point, as in JSON."""
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
