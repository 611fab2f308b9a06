"""Text → AST. Lark parses with the grammar cdp/dsl/pql.lark (package data, grammar.py); we turn
its tree into cdp.dsl.ast at once (builder.py); a syntax error becomes one Diagnostic
(syntax_errors.py).

The parser enforces the limits of DSL.md §11 (size, depth, list length) before anything
recursive touches the input, so no input raises RecursionError or takes seconds.
"""

from __future__ import annotations

from functools import lru_cache

from lark.exceptions import UnexpectedInput

from cdp.dsl import ast
from cdp.dsl.builder import MAX_DEPTH, MAX_INTEGER, MAX_LIST_ITEMS, Builder, check_depth  # noqa: F401
from cdp.dsl.errors import Diagnostic, PqlError, Span
from cdp.dsl.grammar import GRAMMAR, _lark, keywords  # noqa: F401 - keywords, GRAMMAR: public here too
from cdp.dsl.syntax_errors import syntax_diagnostic
from cdp.functions import registry

MAX_BYTES = 64 * 1024


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
        raise PqlError([syntax_diagnostic(text, exc)]) from None
    check_depth(text, tree)
    builder = Builder(text)
    node = builder.build(tree)
    if builder.errors:
        raise PqlError(builder.errors)
    return node


def _has_code(text: str) -> bool:
    return any(line.split("#", 1)[0].strip() for line in text.split("\n")) or '"' in text or "'" in text
