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
from cdp.engine.sql.regex_case_folding import Range, fold_ranges, orbit
from cdp.engine.support import UnsupportedOnBackend

# RE2's Perl classes are ASCII: their members, written for use inside a bracket expression.
PERL_CLASSES: Mapping[str, str] = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
PERL_RANGES: Mapping[str, tuple[Range, ...]] = {
    "d": ((0x30, 0x39),), "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))}
# Characters that RE2 lets a backslash make literal; any other non-alphanumeric one is literal too.
PUNCTUATION = frozenset("\\.^$*+?()[]{}|/-")
REPETITION = re.compile(r"\{\d+(,\d*)?\}")
# A quantifier, maybe lazy (RE2 refuses two in a row): its kind, or its minimum count.
_QUANTIFIER = re.compile(r"(?:([*+?])|\{(\d+)(?:,\d*)?\})\??")
_HEX = re.compile(r"\\x(?:\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{2}))")  # `\x41`, `\x{10FFFF}`
# The control characters the tables spell with a letter (`\\n`), by that letter.
_CONTROL: Mapping[str, str] = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "a": "\a", "v": "\v"}
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
    # True: `(?i)` is not passed on but spelled out, each cased character as a class of its RE2
    # orbit (cdp.engine.sql.regex_case_folding), for an engine whose own folding differs
    spells_out_case_folding: ClassVar[bool] = False
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
        self.folding = False  # under a leading `(?i)` that is spelled out
        self.out: list[str] = []

    def translated(self) -> str:
        if self.pattern.startswith("(?i)"):
            if self.spells_out_case_folding:
                self.folding = True
                self.position += 4
            else:
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
        if letter in PERL_CLASSES and self.folding:
            self.emit(self.spelled_class(fold_ranges(PERL_RANGES[letter])), 2)
        elif letter in PERL_CLASSES:
            body = PERL_CLASSES[letter]
            self.emit(body if self.in_class else f"[{body}]", 2)
        elif letter in ("D", "W", "S"):
            if self.in_class:
                self.refuse(f"\\{letter} inside a character class")
            if self.folding:  # RE2 folds the class, then negates it
                self.emit(self.spelled_class(fold_ranges(PERL_RANGES[letter.lower()]), negated=True), 2)
            else:
                self.emit(f"[^{PERL_CLASSES[letter.lower()]}]", 2)
        elif letter in self.assertions and not self.in_class:
            self.emit_assertion(self.assertions[letter], 2)
        elif letter in self.characters:
            self.emit(self.characters[letter], 2)
        elif letter == "x":
            self.character_code()
        elif letter in PUNCTUATION or not letter.isalnum():
            self.emit_literal(letter, "\\" + letter, 2)
        else:
            self.refuse(f"`\\{letter}`")

    def character_code(self) -> None:
        """`\\x41` or `\\x{10FFFF}`."""
        token = _HEX.match(self.pattern, self.position)
        if token is None:  # RE2 refuses it before a backend sees it
            self.refuse(f"`{self.pattern[self.position:self.position + 4]}`")
        code = int(token.group(1) or token.group(2), 16)
        self.emit_literal(chr(code), self.code_point(token.group(0), code), len(token.group(0)))

    def code_point(self, written: str, code: int) -> str:
        return written

    def open_class(self) -> None:
        if self.folding:
            self.folded_class()
            return
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
            self.emit_literal(char, char, 1)

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

    # ---- `(?i)` spelled out (spells_out_case_folding) ------------------------------------------

    def emit_literal(self, char: str, spelled: str, consumed: int) -> None:
        """A literal character, as ``spelled``; under a spelled-out `(?i)` a class of its orbit."""
        members = orbit(char) if self.folding else char
        if len(members) == 1:
            self.emit(spelled, consumed)
        else:
            self.emit(self.spelled_class([(ord(member), ord(member)) for member in members]), consumed)

    def folded_class(self) -> None:
        """`[...]` under a spelled-out `(?i)`: its members read, their orbits added (ranges and Perl
        classes too, as RE2 folds them), written as one class of the target."""
        negated = self.pattern.startswith("[^", self.position)
        self.position += 2 if negated else 1
        ranges: list[Range] = []
        first = True
        while first or not self.pattern.startswith("]", self.position):
            if self.position >= len(self.pattern):  # RE2 refuses it before a backend sees it
                self.refuse("an unclosed character class")
            first = False
            member = self.class_member_ranges()
            if (len(member) == 1 and member[0][0] == member[0][1] and self.pattern.startswith("-", self.position)
                    and not self.pattern.startswith("-]", self.position)):
                self.position += 1
                high = self.class_member_ranges()
                ranges.append((member[0][0], high[0][1]))
            else:
                ranges.extend(member)
        self.position += 1
        self.out.append(self.spelled_class(fold_ranges(ranges), negated=negated))

    def class_member_ranges(self) -> list[Range]:
        """One member of a class: a character, or a Perl class's ranges; refused as elsewhere."""
        char = self.pattern[self.position]
        if self.pattern.startswith("[:", self.position):
            self.refuse("POSIX classes like [[:alpha:]]")
        if char != "\\":
            self.position += 1
            return [(ord(char), ord(char))]
        letter = self.pattern[self.position + 1] if self.position + 1 < len(self.pattern) else ""
        if letter in PERL_RANGES:
            self.position += 2
            return list(PERL_RANGES[letter])
        if letter in ("D", "W", "S"):
            self.refuse(f"\\{letter} inside a character class")
        if letter == "x":
            token = _HEX.match(self.pattern, self.position)
            if token is None:
                self.refuse(f"`{self.pattern[self.position:self.position + 4]}`")
            self.position = token.end()
            code = int(token.group(1) or token.group(2), 16)
            return [(code, code)]
        if letter in self.characters:
            self.position += 2
            return [(ord(_CONTROL[letter]), ord(_CONTROL[letter]))]
        if letter and (letter in PUNCTUATION or not letter.isalnum()):
            self.position += 2
            return [(ord(letter), ord(letter))]
        self.refuse(f"`\\{letter}`")

    def spelled_class(self, ranges: list[Range], *, negated: bool = False) -> str:
        """A bracket expression of the target for these code point ranges."""
        def one(code: int) -> str:
            char = chr(code)
            if char in "\\]-^[" or char in self.escaped_in_class:
                return "\\" + char
            if not char.isprintable() or char.isspace():
                return self.code_point(f"\\x{{{code:X}}}", code)
            return char

        body = "".join(one(low) if low == high else f"{one(low)}-{one(high)}" for low, high in ranges)
        return f"[{'^' if negated else ''}{body}]"
