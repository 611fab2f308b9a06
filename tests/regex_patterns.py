"""Hypothesis strategies for RE2 patterns (DSL.md §5: the language's regex syntax is RE2's) and
for subjects that may match them: the translations to PostgreSQL and Java are tested with these
against the engines themselves (tests/test_regex_translation.py)."""

from __future__ import annotations

import re2
from hypothesis import strategies as st

# Literals where the flavours disagree: line ends, non-ASCII letters (case folding, word
# characters), characters special in one flavour only (`&`, `#`, `}`, `{`).
LITERALS = list("abcAZ09_ -@/,#&!%~'\"\n\r\t}") + ["é", "É", "ß", "Ł", "\x0b", "\u2028", "\u0085"] + list(
    "ksKSſ\u212aǅǆΣσς")  # orbits of three under RE2's (?i): k K and the Kelvin sign, s S ſ, Ǆ ǅ ǆ, Σ σ ς
ESCAPES = [
    r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", r"\b", r"\B", r"\A", r"\z", r"\n", r"\t", r"\r", r"\f", r"\a", r"\v",
    r"\x41", r"\x4a", r"\x{41}", r"\x{e9}", r"\x{1F600}", r"\.", r"\[", r"\]", r"\{", r"\}", r"\\", r"\-", r"\^",
    r"\$", r"\*", r"\&", r"\#", r"\ ", r"\pL", r"\p{Greek}", r"\PN", r"\Qa.b\E", r"\C", r"\123", r"\<",
]
CLASS_MEMBERS = list("abcz09-_.^$&[{}( é\nkſ") + [
    r"\d", r"\w", r"\s", r"\D", r"\n", r"\t", r"\x41", r"\x{e9}", r"\]", r"\[", r"\\", r"\-", r"\^", "a-z", "0-9",
    "[:alpha:]", "&&", r"\v", r"\a", "[.", "[=",
]
REPEATS = ["", "", "", "*", "+", "?", "*?", "+?", "??", "{2}", "{1,}", "{0,3}", "{2,3}?", "{255}", "{256}"]
GROUPS = ["(", "(?:", "(?i)(", "(?P<g>", "(?s:", "(?i:"]
FLAGS = ["", "", "", "(?i)", "(?s)", "(?m)"]


def _class() -> st.SearchStrategy[str]:
    return st.builds(lambda negated, leading_bracket, members: "[" + "^" * negated + "]" * leading_bracket
                     + "".join(members) + "]",
                     st.booleans(), st.booleans(), st.lists(st.sampled_from(CLASS_MEMBERS), max_size=4))


_ATOM = st.one_of(st.sampled_from(LITERALS), st.sampled_from(ESCAPES), _class(),
                  st.sampled_from([".", "^", "$", "{", "x{,2}", "{a}", "a{1", "a{2,", "x{"]))


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    group = st.builds(lambda opening, body: opening + body + ")", st.sampled_from(GROUPS), inner)
    piece = st.builds(str.__add__, st.one_of(_ATOM, group), st.sampled_from(REPEATS))
    sequence = st.lists(piece, min_size=1, max_size=4).map("".join)
    return st.one_of(sequence, st.builds(lambda a, b: f"{a}|{b}", sequence, sequence))


_GRAMMAR = st.recursive(st.builds(str.__add__, _ATOM, st.sampled_from(REPEATS)), _compound, max_leaves=6)
# Strings of regex punctuation: the combinations a grammar's author does not think of.
_PUNCTUATION_SOUP = st.text(alphabet="ab.[]^$\\{}()|*+?-&:dwsbBAzx0123,", max_size=10)


def is_re2(pattern: str) -> bool:
    """Whether RE2 compiles the pattern, as the checker demands before a backend sees it."""
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error:
        return False
    return True


re2_patterns = st.builds(str.__add__, st.sampled_from(FLAGS), st.one_of(_GRAMMAR, _PUNCTUATION_SOUP)).filter(is_re2)


def subjects(pattern: str) -> st.SearchStrategy[list[str]]:
    """Strings made of the pattern's own characters and the ones the flavours treat differently,
    so that a fair share of them match."""
    alphabet = sorted(set(pattern) - {"\\"} | set("aA0_ -\n\r\x0b[]{}&éÉßẞ\u2028kKsSſ\u212aǄǅǆΣσς") | {"\x07", "\x0c", "\t"})
    return st.lists(st.text(alphabet=alphabet, max_size=8), min_size=1, max_size=6)
