"""Syntax errors as people read them: Lark's exception turned into one Diagnostic with the
expected tokens named in words, and hints for the usual slips (a keyword used as a name, `=`
where a condition was expected, a missing `where`)."""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from cdp.dsl.errors import Diagnostic, Span
from cdp.dsl.grammar import keywords


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


def syntax_diagnostic(text: str, exc: UnexpectedInput) -> Diagnostic:
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
