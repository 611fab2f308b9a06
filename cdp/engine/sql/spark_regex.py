"""RE2 patterns on Spark: a documented mapping to Java's regular expressions, or a clear refusal.

Spark's RLIKE is ``java.util.regex`` ``find`` (a search, as RE2's `matches`). Java's syntax is a
superset of most of RE2's, but a few shared spellings mean something else there, so a pattern is
translated token by token and anything without an exact equivalent is refused when compiled:

| RE2 | Java | why |
|---|---|---|
| `.` | `[^\\n]` | Java's dot also stops at `\\r`, `\\u0085`, `\\u2028`, `\\u2029` |
| `$` | `\\z` | Java's `$` also matches before a final line terminator |
| `\\d \\w \\s` (and `\\D \\W \\S`) | `[0-9]`, `[0-9A-Za-z_]`, `[\\t\\n\\f\\r ]` | Java's `\\s` includes `\\x0B` |
| `\\b`, `\\B` | look-arounds over `[0-9A-Za-z_]` | Java's `\\b` takes Unicode letters as word characters |
| `\\v` | `\\x0B` | Java's `\\v` is a class of vertical whitespace |
| `[` and `&` inside `[...]`, a leading `]` | escaped | Java nests classes and reads `&&` as intersection |
| `{` not starting a repetition | `\\{` | RE2 takes it as a literal; Java refuses the pattern |
| `(?i)` at the very start | `(?iu)` | RE2 folds case over Unicode; Java without `u` over ASCII only |
| literals, `^ * + ? {n,m}`, lazy forms, `( )`, `(?: )`, `\\|`, `\\A`, `\\z`, `\\x41`, escaped punctuation | the same | |
| flags elsewhere, `(?s)`, `(?m)`, `(?U)`, named groups, `\\p{..}`, `\\Q…\\E`, `[[:alpha:]]`, `\\C`, octal | refused | no exact equivalent |
"""

from __future__ import annotations

import re

from cdp.dsl.errors import Span
from cdp.engine.support import UnsupportedOnBackend

_CLASS = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_PUNCTUATION = set("\\.^$*+?()[]{}|/-")
_WORD = "[0-9A-Za-z_]"
_BOUNDARY = f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))"
_NOT_BOUNDARY = f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))"
_REPETITION = re.compile(r"\{\d+(,\d*)?\}")


def re2_to_java(pattern: str, span: Span | None = None) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False

    def refuse(what: str) -> None:
        raise UnsupportedOnBackend(
            "spark", f"the regular expression feature {what} has no exact Java (Spark) equivalent; "
                     "rewrite the pattern or evaluate on DuckDB, SQLite or in memory", span)

    if pattern.startswith("(?i)"):
        out.append("(?iu)")
        i = 4
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                refuse("a trailing backslash")
            nxt = pattern[i + 1]
            if nxt in _CLASS:
                body = _CLASS[nxt]
                out.append(body if in_class else f"[{body}]")
            elif nxt in ("D", "W", "S"):
                if in_class:
                    refuse(f"\\{nxt} inside a character class")
                out.append(f"[^{_CLASS[nxt.lower()]}]")
            elif nxt in ("A", "z") and not in_class:
                out.append("\\" + nxt)
            elif nxt == "b" and not in_class:
                out.append(_BOUNDARY)
            elif nxt == "B" and not in_class:
                out.append(_NOT_BOUNDARY)
            elif nxt in ("n", "t", "r", "f", "a"):
                out.append("\\" + nxt)
            elif nxt == "v":
                out.append("\\x0B")
            elif nxt == "x":
                if pattern.startswith("{", i + 2):
                    end = pattern.find("}", i)
                    out.append(pattern[i:end + 1])
                    i = end + 1
                    continue
                out.append(pattern[i:i + 4])
                i += 4
                continue
            elif nxt in _PUNCTUATION or not nxt.isalnum():
                out.append("\\" + nxt)
            else:
                refuse(f"`\\{nxt}`")
            i += 2
            continue
        if in_class:
            if ch == "[" and pattern.startswith("[:", i):
                refuse("POSIX classes like [[:alpha:]]")
            if ch == "]":
                in_class = False
                out.append(ch)
            elif ch in "[&":
                out.append("\\" + ch)
            else:
                out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            if i < n and pattern[i] == "]":  # a leading ] is a literal in RE2
                out.append("\\]")
                i += 1
            continue
        if ch == ".":
            out.append("[^\\n]")
        elif ch == "$":
            out.append("\\z")
        elif ch == "{" and not _REPETITION.match(pattern, i):
            out.append("\\{")
        elif ch == "(" and pattern.startswith("(?", i):
            if pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
                continue
            refuse(f"`{pattern[i:i + 4]}…` (inline flags or named groups)")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def like_for_spark(pattern: str) -> str:
    """The language's LIKE pattern (`\\` escapes any character) in Spark's form with `!` as the
    escape: Spark refuses an escape before anything but `%`, `_` and the escape itself."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            literal = pattern[i + 1]
            out.append("!" + literal if literal in "%_!" else literal)
            i += 2
            continue
        out.append("!!" if ch == "!" else ch)
        i += 1
    return "".join(out)
