"""RE2 patterns on Spark: a documented mapping to Java's regular expressions, or a clear refusal.

Spark's RLIKE is ``java.util.regex`` ``find`` (a search, as RE2's `matches`). The walk is
cdp.engine.sql.regex_translation's (its table lists what every dialect does alike); here are only
the entries in which Java's syntax, a superset of most of RE2's, gives a shared spelling another
meaning:

| RE2 | Java | why |
|---|---|---|
| `$` | `\\z` | Java's `$` also matches before a final line terminator (its `.` also stops at `\\r`, `\\u0085`, `\\u2028`, `\\u2029`) |
| `\\s` | `[\\t\\n\\f\\r ]` | Java's `\\s` includes `\\x0B` |
| `\\b`, `\\B` | look-arounds over `(?-i:[0-9A-Za-z_])` | under `(?iu)` `[k]` also takes the Kelvin sign, `[s]` the long s |
| `\\A`, `\\z`, `\\a`, `\\x{10FFFF}` | the same | |
| `\\v` | `\\x0B` | Java's `\\v` is a class of vertical whitespace |
| `&` inside `[...]` | escaped | Java reads `&&` as intersection |
| `(?i)` at the very start | `(?iu)` | RE2 folds case over Unicode; Java without `u` over ASCII only |
"""

from __future__ import annotations

from cdp.dsl.errors import Span
from cdp.engine.sql.regex_translation import ASCII_WORD, RegexTranslation, word_boundaries


class JavaRegex(RegexTranslation):
    backend = "spark"
    target = "Java (Spark)"
    run_instead = "DuckDB, SQLite or in memory"
    case_insensitive = "(?iu)"
    end_of_text = "\\z"
    # (?-i: keeps the word characters ASCII under (?iu), where [K] would take the Kelvin sign
    assertions = {**word_boundaries(f"(?-i:{ASCII_WORD})"), "A": "\\A", "z": "\\z"}
    characters = {**RegexTranslation.characters, "a": "\\a", "v": "\\x0B"}
    escaped_in_class = "[&"


def re2_to_java(pattern: str, span: Span | None = None) -> str:
    return JavaRegex(pattern, span).translated()


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
