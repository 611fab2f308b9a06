"""A grammar-aware generator of PQL text, built from the Lark grammar itself (cdp/dsl/pql.lark), and
the harness that feeds its inputs through every stage of the language: parse, check, compile
for memory and compile to SQL (SQLite and PostgreSQL).

The generator walks the grammar's rules as Lark expanded them (``Lark.rules``: plain BNF, the
repetitions and optional parts as rules of their own), so a rule added to the grammar is
generated without a change here. Every choice is asked of ``choose(n) -> int in [0, n)``: the
test suite hands in Hypothesis draws (tests/test_expression_fuzz.py: shrinking works), the
benchmark a seeded ``random.Random`` (bench/bench_expression_fuzz.py). Past ``max_depth`` only
the expansions that end soonest are taken. A token's text comes from its terminal: a keyword's
word in a random case, and for names, strings and numbers samples that matter (the schema's
fields, quotes and escapes, regular-expression and SQL metacharacters, the edges of 64-bit
integers). Some inputs are then mutated token-wise (a token dropped, doubled, swapped or
replaced by another terminal's) so that syntax errors are tried as often as valid text.

:func:`run_one` answers one input: the stage it reached, its error code when the language
refused it, the time it took; any other exception escapes (a crash: a finding).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache

Choose = Callable[[int], int]

FIELDS = ["loyalty", "tier", "points", "email", "email_opt_in", "person", "first_name", "birth_date", "lifetime_value",
          "home_address", "country", "created_at", "preferred_category", "type", "channel", "product", "category",
          "price", "sku", "quantity", "order", "total", "timestamp", "interests", "x", "_", "profile", "nope_field"]
STRINGS = ['"gold"', '"purchase"', "'web'", '""', '"a\\"b"', '"\\\\"', '"%_%"', '"(a|b)*c+"', '"[unclosed"',
           '"(?P<x>a)\\\\1"', '"\'; DROP TABLE profiles; --"', '"\\u0000"', '"é☃𝄞"', '"2026-11-28"',
           '"2026-11-28T12:00:00Z"', '"9999-12-31T23:59:59Z"', '"vip"', '"' + "a" * 300 + '"', "'\\n'", '"a\\tb"']
NUMBERS = ["0", "1", "2", "3", "500", "90", "0.5", "1.25", "9223372036854775807", "9223372036854775808",
           "99999999999999999999999999999", "00", "1.0000000000000000001"]
QUOTED = ["`odd name`", "`loyalty`", "`a.b`", "`where`", "`é`"]
CATALOGUE = {"vip": 'loyalty.tier = "gold"', "buyers": 'exists event where type = "purchase"'}
AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
_SAMPLES = {"NAME": FIELDS, "MEMBER": FIELDS, "QUOTED_NAME": QUOTED, "STRING": STRINGS, "NUMBER": NUMBERS,
            "COMMENT": ["# a comment"]}
_LITERALS = re.compile(r"^\(\?:((?:\\.|[^\w\s()\\])+(?:\|(?:\\.|[^\w\s()\\])+)*)\)$")
_WORDS = re.compile(r"^\(?([A-Za-z_|?]+)\)?\\b$")


@dataclass(frozen=True)
class _Grammar:
    rules: dict[str, list[tuple[str, ...]]]  # nonterminal → its expansions (symbol names)
    terminals: dict[str, list[str]]  # terminal → texts it may take
    height: dict[str, int]  # nonterminal → fewest derivation steps to text
    start: str


@cache
def grammar() -> _Grammar:
    from cdp.dsl.grammar import _lark

    parser = _lark()
    rules: dict[str, list[tuple[str, ...]]] = {}
    for rule in parser.rules:
        rules.setdefault(rule.origin.name, []).append(tuple(symbol.name for symbol in rule.expansion))
    terminals = {t.name: _texts(t) for t in parser.terminals}
    height: dict[str, int] = {}
    changed = True
    while changed:  # the least fixpoint: a rule's height is 1 + the highest of its expansion's symbols
        changed = False
        for name, expansions in rules.items():
            for expansion in expansions:
                if all(s in terminals or s in height for s in expansion):
                    h = 1 + max((height.get(s, 0) for s in expansion), default=0)
                    if h < height.get(name, 1 << 30):
                        height[name], changed = h, True
    return _Grammar(rules, terminals, height, parser.options.start[0])


def _texts(terminal) -> list[str]:
    if terminal.name in _SAMPLES:
        return _SAMPLES[terminal.name]
    pattern = terminal.pattern
    if pattern.type == "str":
        return [pattern.value]
    alternatives = _LITERALS.match(pattern.value)  # "!=" | "<=" | … : Lark's (?:!=|<=|…)
    if alternatives:
        return [re.sub(r"\\(.)", r"\1", a) for a in alternatives.group(1).split("|")]
    words = _WORDS.match(pattern.value)
    if words:
        return [w.replace("s?", "s") for w in words.group(1).split("|")] + \
               [w.replace("s?", "") for w in words.group(1).split("|") if w.endswith("s?")]
    return ["x"]


def _word(text: str, choose: Choose) -> str:
    """A keyword in one of the spellings the language accepts (keywords are case-insensitive)."""
    if not text.isalpha() and "_" not in text:
        return text
    return (text, text.upper(), text.capitalize())[choose(3)]


def derive(choose: Choose, *, max_depth: int = 8) -> list[str]:
    """The tokens of one derivation of the grammar's start symbol."""
    g = grammar()
    tokens: list[str] = []
    budget = [120]  # symbols expanded at most, so one input stays small

    def expand(symbol: str, depth: int) -> None:
        if symbol in g.terminals:
            texts = g.terminals[symbol]
            tokens.append(_word(texts[choose(len(texts))], choose) if symbol not in _SAMPLES
                          else texts[choose(len(texts))])
            return
        expansions = g.rules[symbol]
        budget[0] -= 1
        if depth >= max_depth or budget[0] <= 0:
            lowest = min(_height(e, g) for e in expansions)
            expansions = [e for e in expansions if _height(e, g) == lowest]
        for child in expansions[choose(len(expansions))]:
            expand(child, depth + 1)

    expand(g.start, 0)
    return tokens


def _height(expansion: tuple[str, ...], g: _Grammar) -> int:
    return max((g.height.get(s, 0) for s in expansion), default=0)


def mutate(tokens: list[str], choose: Choose) -> list[str]:
    """One token-wise change: dropped, doubled, swapped with its neighbour, or replaced by a token
    of any terminal (the text around it stays grammatical, so the error is deep in the input)."""
    if not tokens:
        return tokens
    i = choose(len(tokens))
    kind = choose(4)
    if kind == 0:
        return tokens[:i] + tokens[i + 1:]
    if kind == 1:
        return tokens[:i + 1] + tokens[i:]
    if kind == 2 and i + 1 < len(tokens):
        return tokens[:i] + [tokens[i + 1], tokens[i]] + tokens[i + 2:]
    g = grammar()
    names = sorted(g.terminals)
    texts = g.terminals[names[choose(len(names))]]
    return tokens[:i] + [texts[choose(len(texts))]] + tokens[i + 1:]


def generate(choose: Choose, *, max_depth: int = 8) -> str:
    """One input: a derivation, mutated one time in two, its tokens joined by spaces."""
    tokens = derive(choose, max_depth=max_depth)
    for _ in range(choose(2) * (1 + choose(3))):
        tokens = mutate(tokens, choose)
    return " ".join(tokens)


@dataclass(frozen=True)
class Outcome:
    stage: str  # how far it got: "parse" (refused there), "check", "memory", "sql" (compiled everywhere)
    error: str | None  # the language's error code, None when compiled everywhere
    seconds: float  # wall-clock time for all stages
    cpu_seconds: float  # this thread's CPU time (not inflated by other processes on a busy machine)


def run_one(text: str) -> Outcome:
    """Parse, check, compile for memory and for SQL (SQLite and PostgreSQL) one input. The
    language's refusals (PqlError, UnsupportedOnBackend) are outcomes; anything else raises."""
    from cdp.dsl import PqlError, check, parse
    from cdp.engine import compile_predicate
    from cdp.engine.sql import members_query
    from cdp.engine.support import UnsupportedOnBackend

    started, cpu = time.perf_counter(), time.thread_time()
    stage = "parse"
    try:
        tree = parse(text)
        stage = "check"
        typed = check(tree, segments=CATALOGUE)
        stage = "memory"
        compile_predicate(typed, segments=CATALOGUE)
        stage = "sql"
        for dialect in ("sqlite", "postgresql"):
            str(members_query(typed, dialect=dialect, as_of=AS_OF, segments=CATALOGUE)
                .compile(dialect=_dialect(dialect)))
        error = None
        stage = "compiled"
    except PqlError as exc:
        error = exc.errors[0].code if getattr(exc, "errors", None) else "pql_error"
    except UnsupportedOnBackend:
        error = "unsupported_on_backend"
    return Outcome(stage, error, time.perf_counter() - started, time.thread_time() - cpu)


@cache
def _dialect(name: str):
    from sqlalchemy.dialects import postgresql, sqlite

    return {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[name]
