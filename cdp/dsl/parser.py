"""Text → AST. Lark parses with the grammar cdp/dsl/pql.lark (package data); we turn its tree into cdp.dsl.ast at once.

The parser enforces the limits of DSL.md §11 (size, depth, list length) before anything
recursive touches the input, so no input raises RecursionError or takes seconds.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib import resources

import lark
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from cdp.dsl import ast
from cdp.dsl.errors import Diagnostic, PqlError, Span
from cdp.functions import registry

MAX_BYTES = 64 * 1024
MAX_DEPTH = 64
MAX_LIST_ITEMS = 10_000
MAX_INTEGER = 2**63 - 1  # what SQL's bigint holds; larger literals are rejected, not wrapped

GRAMMAR = "pql.lark"  # package data of cdp.dsl: in the source tree and inside the wheel

# Lark tree nodes that nest one level deeper (DSL.md §11: parentheses, calls, event terms,
# lists and prefix operators).
_NESTING_RULES = frozenset(
    {"parens", "call", "list", "exists_term", "no_term", "count_agg", "value_agg", "not_op", "negate"}
)


_FUNCTION_MARKER = "@FUNCTION_NAMES@"
_KEYWORD_TERMINAL = re.compile(r"^(_?[A-Z_]+)\.2: /\(?([a-z_|?]+)\)?\\b/i$", re.M)


@cache
def _grammar_text() -> str:
    """The PQL grammar, read from the installed package (importlib.resources)."""
    return resources.files("cdp.dsl").joinpath(GRAMMAR).read_text(encoding="utf-8")


@cache
def _grammar_keywords() -> dict[str, str]:
    """The words of the grammar's own keyword terminals (`and`, `within`, `days` …) → terminal."""
    words: dict[str, str] = {}
    for terminal, body in _KEYWORD_TERMINAL.findall(_grammar_text()):
        if terminal == "FUNCTION":
            continue
        for alternative in body.split("|"):
            if alternative.endswith("s?"):
                words.setdefault(alternative[:-2], terminal)
                words.setdefault(alternative[:-1], terminal)
            else:
                words.setdefault(alternative, terminal)
    return words


def keywords() -> frozenset[str]:
    """Every reserved word (DSL.md §1): the grammar's keywords and the registry's function names.
    A name that is one of them is written in backticks."""
    return _keywords_for(registry.names())


@cache
def _keywords_for(function_names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_grammar_keywords()) | frozenset(function_names)


def _lark() -> lark.Lark:
    """Built on first use (never at import time), again only when the function registry changes."""
    return _lark_for(registry.names())


@cache
def _lark_for(function_names: tuple[str, ...]) -> lark.Lark:
    own = _grammar_keywords()
    # A function may share its name with a unit (`day(d)`, `7 days`: never in the same place)
    # or be `today`, which the call rule takes as it is; any other keyword is the grammar's own.
    clashes = sorted(n for n in function_names if n in own and own[n] not in ("UNIT", "TODAY"))
    if clashes:
        raise RuntimeError(f"function names {clashes} are keywords of the grammar")
    # longest first, so that `datetime` is not read as `date` followed by `time`
    spelled = "|".join(sorted((n for n in function_names if own.get(n) != "TODAY"), key=lambda n: (-len(n), n)))
    text = _grammar_text().replace(_FUNCTION_MARKER, spelled or "(?!)")
    terminal_of = {**{n: "FUNCTION" for n in function_names}, **own}

    def reserved(token: Token) -> Token:
        # The contextual lexer reads a keyword as a NAME where the keyword cannot stand; a keyword
        # is never a name (DSL.md §1), so hand the parser the keyword: its error then points at it.
        terminal = terminal_of.get(token.value.lower())
        return Token.new_borrow_pos(terminal, token.value, token) if terminal else token

    return lark.Lark(
        text,
        parser="lalr",
        strict=True,
        # Spans come from the tokens (_tree_span); Lark's own position tracking would
        # double the parse time.
        propagate_positions=False,
        maybe_placeholders=True,
        cache=False,
        lexer_callbacks={"NAME": reserved},
    )


def parse(text: str) -> ast.Node:
    """Parse PQL text into an (unchecked) AST, or raise PqlError with every problem found.

    Trees are immutable, so the same text parses once: checking a catalogue re-reads every
    definition, and Lark's LALR parser costs about 15 µs a token on a slow machine."""
    if not isinstance(text, str):
        raise TypeError("parse() takes the expression text as a str")
    return _parse_cached(text, registry.generation())


def clear_parse_cache() -> None:
    _parse_cached.cache_clear()


@lru_cache(maxsize=4096)
def _parse_cached(text: str, _functions_generation: int) -> ast.Node:
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise PqlError([
            Diagnostic(
                "too_complex",
                f"the expression is {size} bytes long; the limit is {MAX_BYTES} bytes (64 KiB)",
                Span.at_offset(text, 0, min(len(text), 1)),
                hint="split it into segments and combine them with `in segment`",
                source=text,
            )
        ])
    if not text.strip() or not _has_code(text):
        raise PqlError([
            Diagnostic("syntax_error", "the expression is empty", Span.at_offset(text, len(text)),
                       hint="write a condition such as `loyalty.tier = \"gold\"`", source=text)
        ])
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise PqlError([_syntax_diagnostic(text, exc)]) from None
    _check_depth(text, tree)
    builder = _Builder(text)
    node = builder.build(tree)
    if builder.errors:
        raise PqlError(builder.errors)
    return node


def _has_code(text: str) -> bool:
    return any(line.split("#", 1)[0].strip() for line in text.split("\n")) or '"' in text or "'" in text


# ---- syntax errors --------------------------------------------------------------------------

_TERMINAL_NAMES = {
    "NAME": "a name",
    "MEMBER": "a name",
    "QUOTED_NAME": "a `quoted name`",
    "STRING": "a string",
    "NUMBER": "a number",
    "UNIT": "a duration unit",
    "FUNCTION": "a function",
    "AGGREGATE": "an aggregate",
    "COMPARE": "a comparison",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*`, `/` or `%`",
    "MINUS": "`-`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "COMMA": "`,`",
    "DOT": "`.`",
    "$END": "the end of the expression",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    return f"`{name.lstrip('_').lower().replace('_', ' ')}`"


def _expected_summary(expected: set[str]) -> str:
    # "a name", "a number" … first, then the keywords and punctuation
    names = sorted({_describe_terminal(n) for n in expected if not n.startswith("__")},
                   key=lambda d: (d.startswith("`"), d))
    if not names:
        return ""
    if len(names) > 8:
        names = names[:8] + ["…"]
    return "; expected " + ", ".join(names)


def _syntax_diagnostic(text: str, exc: UnexpectedInput) -> Diagnostic:
    hint = None
    if isinstance(exc, UnexpectedCharacters):
        start = exc.pos_in_stream
        char = text[start]
        span = Span.at_offset(text, start, start + 1)
        message = f"unexpected character `{char}`"
        if char in "\"'":
            end = text.find("\n", start)
            end = len(text) if end == -1 else end
            span = Span.at_offset(text, start, end)
            message = "unterminated string"
            hint = f"close the string with {char}"
        elif char == "`":
            end = text.find("\n", start)
            end = len(text) if end == -1 else end
            span = Span.at_offset(text, start, end)
            message = "unterminated or empty `quoted name`"
            hint = "a quoted name is written `like this`, on one line"
        elif char == "!":
            hint = "write `not` for negation and `!=` for inequality"
        elif char == "&":
            hint = "write `and`"
        elif char == "|":
            hint = "write `or`"
        elif char == ".":
            hint = "a number is written with digits on both sides of the point: `0.5`"
        return Diagnostic("syntax_error", message, span, hint=hint, source=text)

    assert isinstance(exc, UnexpectedToken)
    token: Token = exc.token
    expected = set(exc.expected or ())
    keyword = _keyword_used_as_name(exc)
    if keyword is not None:
        word = keyword.value.lower()
        return Diagnostic(
            "syntax_error", f"unexpected `{keyword.value}`: `{word}` is a keyword, not a name",
            Span.at_offset(text, keyword.start_pos, keyword.end_pos),
            hint=f"to name a field called {word} write it in backticks: `` `{keyword.value}` ``", source=text)
    if token.type == "$END":
        span = Span.at_offset(text, len(text))
        message = "the expression ends too early" + _expected_summary(expected)
        return Diagnostic("syntax_error", message, span, hint=None, source=text)
    start, end = token.start_pos, token.end_pos
    shown = str(token)
    word = shown.lower()
    message = f"unexpected `{shown}`" + _expected_summary(expected)
    in_where = _inside_where(exc)
    if token.type == "COMPARE" and token.value == "=" and start > 0 and text[start - 1] == "=":
        start -= 1
        message = "unexpected `==`"
        hint = "use `=` to test equality"
    elif token.type == "COMPARE" and token.value == ">" and start > 0 and text[start - 1] == "<":
        start -= 1
        message = "unexpected `<>`"
        hint = "use `!=` to test inequality"
    elif token.type in ("COMPARE", "IN", "BETWEEN", "IS", "LIKE", "MATCHES", "CONTAINS", "HAS", "STARTS", "ENDS") \
            and "COMPARE" not in expected and "NAME" not in expected:
        before = text[:start].rstrip()
        if re.search(r"\b(within\s+(today|this\s+\w+|last\s+\d+\s+\w+|\d+\s+\w+))\s*$", before, re.I):
            message = f"unexpected `{shown}` after an event term"
            hint = "an event term is a condition of its own; to compare it, put it in parentheses"
        elif _after_comparison(exc):
            message = f"comparisons cannot be chained: unexpected `{shown}`"
            hint = "combine the comparisons with `and`, e.g. `a < b and b < c`"
    elif token.type in ("EXISTS", "NO", "COUNT", "AGGREGATE", "LAST") and "NAME" in expected and in_where:
        message = f"unexpected `{shown}`: an event term may not appear inside another event term's `where`"
        hint = ("to combine conditions on two events use a sequence (`then`) or write the terms side by "
                "side: `(exists event where …) and count(event …) > 1`")
    elif token.type == "THEN":
        hint = ("`then` steps follow `exists event …`; for the negation of a sequence write "
                "`not (exists event … then …)`")
    elif token.type in ("_AND", "_OR") and "NAME" in expected:
        hint = (f"`{word}` joins two conditions: write one on each side of it "
                f"(a field called {word} is written `` `{word}` ``)")
    elif word in keywords() and "NAME" in expected:
        hint = f"`{word}` is a keyword; to name a field called {word} write it in backticks: `` `{shown}` ``"
    elif token.type == "UNIT":
        hint = "a duration is a whole number followed by its unit, such as `7 days`"
    elif token.type in ("NAME", "STRING", "NUMBER") and exc.expected and ("_AND" in expected or "_OR" in expected):
        hint = "combine conditions with `and` or `or`"
    return Diagnostic("syntax_error", message, Span.at_offset(text, start, end), hint=hint, source=text)


# Keywords that begin a construct: a call (function, aggregate), an event term, `not`,
# `in segment`.
_CALLS = frozenset({"FUNCTION", "TODAY", "COUNT", "AGGREGATE", "LAST"})
_STARTERS = _CALLS | {"EXISTS", "NO", "NOT", "IN"}
# Tokens that end an operand: after a starter they show it was meant as a name.
_AFTER_OPERAND = frozenset({"COMPARE", "ADD_OP", "MUL_OP", "_AND", "_OR", "RPAR", "RSQB", "COMMA", "$END", "IN",
                            "BETWEEN", "IS", "LIKE", "MATCHES", "CONTAINS", "HAS", "STARTS", "ENDS"})


def _keyword_used_as_name(exc: UnexpectedToken) -> Token | None:
    """`first = 1`, `lower = "x"`, `exists and …`: the keyword was taken as the start of its
    construct, and the token after it shows it was meant as a name. The keyword is the offending
    token (DSL.md §1: a keyword is never a name). At the end of the input only a call's name
    counts (`x = today`); `a and not` just ends too early."""
    token = exc.token
    if token.type not in _AFTER_OPERAND:
        return None
    stack = getattr(getattr(exc, "state", None), "value_stack", None) or ()
    if not stack or not isinstance(stack[-1], Token) or stack[-1].type not in _STARTERS:
        return None
    keyword, expected = stack[-1], set(exc.expected or ())
    if token.type == "$END" and keyword.type not in _CALLS | {"IN"}:
        return None
    if keyword.type == "NOT" and "NAME" not in expected:
        return None  # `x not = 1`: `not` after an operand (`not in`, `not between`)
    if keyword.type == "IN" and "NAME" in expected:
        return None  # `x in = 1`: `in` after an operand
    return keyword


def _after_comparison(exc: UnexpectedToken) -> bool:
    """`a < b < c`: the parser holds a complete comparison (operand, operator, operand)."""
    stack = getattr(getattr(exc, "state", None), "value_stack", None) or ()
    if len(stack) >= 2 and isinstance(stack[-1], Token) and stack[-1].type == "NULL":
        return isinstance(stack[-2], Token) and stack[-2].type in ("IS", "NOT")  # `x is [not] null`
    return len(stack) >= 2 and not isinstance(stack[-1], Token) and isinstance(stack[-2], Token) \
        and stack[-2].type in _AFTER_OPERAND


def _inside_where(exc: UnexpectedToken) -> bool:
    """Did the error happen inside an event filter's `where` (one not closed by a window or a
    parenthesis)? The `where` keyword is then still on the parser's stack."""
    state = getattr(exc, "state", None)
    stack = getattr(state, "value_stack", None) or ()
    depth = 0
    for value in reversed(stack):
        if isinstance(value, Token) and value.type == "LPAR":
            depth += 1
        if isinstance(value, Token) and value.type == "_WHERE":
            return depth == 0
    return False


# ---- limits ---------------------------------------------------------------------------------


def _check_depth(text: str, tree: Tree) -> None:
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


class _Builder:
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
