"""RE2 patterns on PostgreSQL: a documented mapping to PostgreSQL's ARE, or a clear rejection.

SQLite runs RE2 itself (a registered function). PostgreSQL's advanced regular expressions
differ from RE2 in small ways that would make the two backends disagree, so a pattern is
translated token by token and anything without an exact equivalent is refused:

| RE2 | PostgreSQL ARE | why |
|---|---|---|
| `.` | `[^\\n]` | RE2's dot does not match a newline; ARE's does |
| `\\d \\w \\s` (and `\\D \\W \\S`) | `[0-9]`, `[0-9A-Za-z_]`, `[\\t\\n\\f\\r ]` | RE2's classes are ASCII; ARE's follow the locale |
| `\\A`, `\\z` | `^`, `$` (outside multi-line mode they are the same) | |
| `\\b`, `\\B` | `\\y`, `\\Y` | ARE spells word boundaries differently (RE2 and ARE both use ASCII word characters here) |
| literals, `[...]`, `^ $ * + ? {n,m}`, lazy forms, `( )`, `(?: )`, `|`, `\\x41`, escaped punctuation | the same | |
| `(?i)` at the very start | the same | |
| flags elsewhere, `(?s)`, `(?m)`, `(?U)`, named groups, `\\p{..}`, `\\Q…\\E`, `[[:alpha:]]`, `\\C`, octal | refused | no exact equivalent |
"""

from __future__ import annotations

from cdp.dsl.errors import Span
from cdp.engine.support import UnsupportedOnBackend  # noqa: F401  (its home is support)

_CLASS = {
    "d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r ",
}
_PUNCTUATION = set("\\.^$*+?()[]{}|/-")


def re2_to_postgres(pattern: str, span: Span | None = None) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False

    def refuse(what: str) -> None:
        raise UnsupportedOnBackend(
            "postgresql", f"the regular expression feature {what} has no exact PostgreSQL equivalent; "
                          "rewrite the pattern or evaluate on SQLite or in memory", span)

    if pattern.startswith("(?i)"):
        out.append("(?i)")
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
            elif nxt == "A" and not in_class:
                out.append("^")
            elif nxt == "z" and not in_class:
                out.append("$")
            elif nxt == "b" and not in_class:
                out.append("\\y")
            elif nxt == "B" and not in_class:
                out.append("\\Y")
            elif nxt in ("n", "t", "r", "f"):
                out.append("\\" + nxt)
            elif nxt == "x":
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
            if ch == "]" and not (out and out[-1] in ("[", "[^")):
                in_class = False
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
            if i < n and pattern[i] == "]":  # a leading ] is a literal in both
                out.append("]")
                i += 1
            continue
        if ch == ".":
            out.append("[^\\n]")
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
