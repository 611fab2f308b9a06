"""One walk over an RE2 pattern (DSL.md §5) for the SQL engines that do not run RE2 themselves.

SQLite runs RE2 itself (a registered function) and so does DuckDB. PostgreSQL's advanced regular
expressions and Java's (Spark's RLIKE) share most of RE2's spellings but give a few of them another
meaning, so a pattern is translated token by token and anything without an exact equivalent is
refused (UnsupportedOnBackend) when the query is compiled. This module is the walk; a dialect
(postgresql_regex.py, spark_regex.py) is a subclass that sets only the table entries and hooks in
which its engine differs, and documents them.

What every dialect does alike:

| RE2 | target | why |
|---|---|---|
| `.` | `[^\\n]` | RE2's dot does not match a newline; the targets' dots match it or stop at more line ends |
| `\\d \\w \\s` (and `\\D \\W \\S`) | `[0-9]`, `[0-9A-Za-z_]`, `[\\t\\n\\f\\r ]` | RE2's classes are ASCII |
| `\\b`, `\\B` | look-arounds over `[0-9A-Za-z_]` | the targets' word characters include non-ASCII letters |
| `\\n \\t \\r \\f`, `\\x41`, escaped punctuation, literals | the same | |
| `[` inside `[...]`, a leading `]` | escaped | the targets nest classes or read `[.` `[=` `[:` |
| `{` not starting a repetition | `\\{` | RE2 takes it as a literal; the targets refuse the pattern |
| a repeated assertion (`^*`, `\\b{2}`) | the assertion, optional when the count may be 0 | PostgreSQL refuses it; repeating it changes nothing |
| `^ * + ? {n,m}`, lazy forms, `( )`, `(?: )`, `\\|` | the same | |
| flags after the start, `(?s)`, `(?m)`, `(?U)`, named groups, `\\p{..}`, `\\Q…\\E`, `[[:alpha:]]`, `\\C`, octal | refused | no exact equivalent |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, NoReturn

from cdp.dsl.errors import Span
from cdp.engine.support import UnsupportedOnBackend

# RE2's Perl classes are ASCII: their members, written for use inside a bracket expression.
PERL_CLASSES: Mapping[str, str] = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
# Characters that RE2 lets a backslash make literal; any other non-alphanumeric one is literal too.
PUNCTUATION = frozenset("\\.^$*+?()[]{}|/-")
REPETITION = re.compile(r"\{\d+(,\d*)?\}")
# A quantifier, maybe lazy (RE2 refuses two in a row): its kind, or its minimum count.
_QUANTIFIER = re.compile(r"(?:([*+?])|\{(\d+)(?:,\d*)?\})\??")
_HEX = re.compile(r"\\x(?:\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{2}))")  # `\x41`, `\x{10FFFF}`
ASCII_WORD = "[0-9A-Za-z_]"  # RE2's word characters; the targets' own follow the locale or Unicode


def word_boundaries(word: str) -> dict[str, str]:
    """RE2's `\\b` and `\\B` as look-arounds over the target's spelling of RE2's word characters."""
    return {"b": f"(?:(?<={word})(?!{word})|(?<!{word})(?={word}))",
            "B": f"(?:(?<={word})(?={word})|(?<!{word})(?!{word}))"}



class RegexTranslation:
    """The walk over one pattern. A dialect sets the class attributes below (its table) and
    overrides a hook only where its engine spells something differently."""

    backend: ClassVar[str]
    target: ClassVar[str]  # the engine's regex flavour, as messages name it
    run_instead: ClassVar[str]  # where a refused pattern runs as written
    case_insensitive: ClassVar[str] = "(?i)"  # for `(?i)` at the very start
    any_but_newline: ClassVar[str] = "[^\\n]"  # for `.`
    end_of_text: ClassVar[str] = "$"  # for `$` (no multi-line mode, so the end of the text)
    # `\A`, `\z`, `\b`, `\B`, outside a class (a dialect adds `\A` and `\z`)
    assertions: ClassVar[Mapping[str, str]] = word_boundaries(ASCII_WORD)
    characters: ClassVar[Mapping[str, str]] = {"n": "\\n", "t": "\\t", "r": "\\r", "f": "\\f"}
    escaped_in_class: ClassVar[str] = "["  # RE2 literals that mean something inside the target's [...]
    most_repetitions: ClassVar[int | None] = None  # the largest count in `{n,m}` the target accepts

    def __init__(self, pattern: str, span: Span | None = None) -> None:
        self.pattern = pattern
        self.span = span
        self.position = 0
        self.in_class = False
        self.out: list[str] = []

    def translated(self) -> str:
        if self.pattern.startswith("(?i)"):
            self.emit(self.case_insensitive, 4)
        while self.position < len(self.pattern):
            char = self.pattern[self.position]
            if char == "\\":
                self.escape()
            elif self.in_class:
                self.class_member(char)
            elif char == "[":
                self.open_class()
            else:
                self.outside_class(char)
        return "".join(self.out)

    def emit(self, text: str, consumed: int) -> None:
        self.out.append(text)
        self.position += consumed

    def refuse(self, what: str) -> NoReturn:
        raise UnsupportedOnBackend(
            self.backend, f"the regular expression feature {what} has no exact {self.target} equivalent; "
                          f"rewrite the pattern or evaluate on {self.run_instead}", self.span)

    # ---- tokens ----------------------------------------------------------------------------

    def escape(self) -> None:
        if self.position + 1 >= len(self.pattern):
            self.refuse("a trailing backslash")
        letter = self.pattern[self.position + 1]
        if letter in PERL_CLASSES:
            body = PERL_CLASSES[letter]
            self.emit(body if self.in_class else f"[{body}]", 2)
        elif letter in ("D", "W", "S"):
            if self.in_class:
                self.refuse(f"\\{letter} inside a character class")
            self.emit(f"[^{PERL_CLASSES[letter.lower()]}]", 2)
        elif letter in self.assertions and not self.in_class:
            self.emit_assertion(self.assertions[letter], 2)
        elif letter in self.characters:
            self.emit(self.characters[letter], 2)
        elif letter == "x":
            self.character_code()
        elif letter in PUNCTUATION or not letter.isalnum():
            self.emit("\\" + letter, 2)
        else:
            self.refuse(f"`\\{letter}`")

    def character_code(self) -> None:
        """`\\x41` or `\\x{10FFFF}`."""
        token = _HEX.match(self.pattern, self.position)
        if token is None:  # RE2 refuses it before a backend sees it
            self.refuse(f"`{self.pattern[self.position:self.position + 4]}`")
        self.emit(self.code_point(token.group(0), int(token.group(1) or token.group(2), 16)), len(token.group(0)))

    def code_point(self, written: str, code: int) -> str:
        return written

    def open_class(self) -> None:
        self.in_class = True
        opening = "[^" if self.pattern.startswith("[^", self.position) else "["
        self.emit(opening, len(opening))
        if self.pattern.startswith("]", self.position):  # a literal in RE2
            self.emit("\\]", 1)

    def class_member(self, char: str) -> None:
        if self.pattern.startswith("[:", self.position):
            self.refuse("POSIX classes like [[:alpha:]]")
        if char == "]":
            self.in_class = False
        self.emit("\\" + char if char in self.escaped_in_class else char, 1)

    def outside_class(self, char: str) -> None:
        if char == ".":
            self.emit(self.any_but_newline, 1)
        elif char == "^":
            self.emit_assertion("^", 1)
        elif char == "$":
            self.emit_assertion(self.end_of_text, 1)
        elif char == "{":
            self.brace()
        elif self.pattern.startswith("(?", self.position):
            self.group_with_options()
        else:
            self.emit(char, 1)

    def emit_assertion(self, text: str, consumed: int) -> None:
        """An empty-width assertion. RE2 lets one be repeated (`^*`, `\\b{2}`), PostgreSQL does not,
        and repeating it changes nothing: at least once is once, and zero times is optional."""
        self.emit(text, consumed)
        quantifier = _QUANTIFIER.match(self.pattern, self.position)
        if quantifier is not None:
            at_least_once = quantifier.group(1) == "+" or int(quantifier.group(2) or 0) > 0
            self.out[-1] = text if at_least_once else f"(?:{text})?"
            self.position = quantifier.end()

    def brace(self) -> None:
        repetition = REPETITION.match(self.pattern, self.position)
        if repetition is None:  # a literal in RE2; an error or a bound in the targets
            self.emit("\\{", 1)
            return
        counts = [int(count) for count in repetition.group(0)[1:-1].split(",") if count]
        if self.most_repetitions is not None and max(counts) > self.most_repetitions:
            self.refuse(f"a repetition count above {self.most_repetitions} (`{repetition.group(0)}`)")
        self.emit(repetition.group(0), len(repetition.group(0)))

    def group_with_options(self) -> None:
        if self.pattern.startswith("(?:", self.position):
            self.emit("(?:", 3)
        else:
            self.refuse(f"`{self.pattern[self.position:self.position + 4]}…` (inline flags or named groups)")
