"""The grammar (cdp/dsl/pql.lark, package data) and the Lark parser built from it on first use
(never at import time), again only when the function registry changes; the reserved words."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import lark
from lark import Token

from cdp.functions import registry

GRAMMAR = "pql.lark"  # package data of cdp.dsl: in the source tree and inside the wheel

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
