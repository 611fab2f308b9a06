"""String functions."""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa

from cdp.pqltypes import INTEGER, STRING
from cdp.functions.registry import Function, Param, fixed, python_udf, register

_S = Param("s", "string")

# Simple case mappings of UnicodeData.txt, one code point to one (DSL.md §10). Python's
# str.lower/upper apply SpecialCasing (ß → SS, İ → i̇) and context (final sigma); we map each code
# point on its own and fall back to the simple mapping where the full one has several.
_SIMPLE_LOWER_EXCEPTIONS = {"\u0130": "i"}  # İ: full lowercase is i + combining dot


@lru_cache(maxsize=4096)
def _lower_char(ch: str) -> str:
    mapped = ch.lower()
    if len(mapped) == 1:
        return mapped
    return _SIMPLE_LOWER_EXCEPTIONS.get(ch, ch)


@lru_cache(maxsize=4096)
def _upper_char(ch: str) -> str:
    mapped = ch.upper()
    if len(mapped) == 1:
        return mapped
    titled = ch.title()  # e.g. ᾳ: simple upper = simple title = ᾼ; ß: none, stays ß
    if len(titled) == 1 and titled != ch:
        return titled
    return ch


def simple_lower(s: str) -> str:
    if s.isascii():
        return s.lower()
    return "".join(map(_lower_char, s))


def simple_upper(s: str) -> str:
    if s.isascii():
        return s.upper()
    return "".join(map(_upper_char, s))


def trim(s: str) -> str:
    return s.strip(" \t\r\n")


_TRIMMED = " \t\r\n"


def _concat_sql(compiler, node, args):
    result = args[0]
    for arg in args[1:]:
        result = result.op("||")(arg)  # `||` is null when any side is null, as the language wants
    return sa.type_coerce(result, sa.String)


register(Function(
    name="lower", params=(_S,), result=fixed(STRING), python=simple_lower,
    sql={"sqlite": python_udf,
         # PostgreSQL maps one code point to one (towlower) under a UTF-8 ctype such as C.UTF-8
         "postgresql": lambda c, n, a: sa.func.lower(a[0]),
         "duckdb": lambda c, n, a: sa.func.lower(a[0]),  # utf8proc's simple mapping
         # Java lowers İ to two code points and Σ by its context: the Python form there
         "spark": lambda c, n, a: sa.func.pql_lower(a[0])},
    doc="The string in lower case, one code point to one (`ß` stays `ß`; `İ` lowers to `i`).",
    example='lower(email) ends with "@example.com"',
))
register(Function(
    name="upper", params=(_S,), result=fixed(STRING), python=simple_upper,
    sql={"sqlite": python_udf, "postgresql": lambda c, n, a: sa.func.upper(a[0]),
         # DuckDB upper-cases ß to ẞ, which the simple mapping does not: the Python form there
         "duckdb": lambda c, n, a: sa.func.pql_upper(a[0]),
         "spark": lambda c, n, a: sa.func.pql_upper(a[0])},  # Java's full mapping: ß → SS
    doc="The string in upper case, one code point to one (`ß` stays `ß`).",
    example='upper(home_address.country) = "US"',
))
register(Function(
    name="trim", params=(_S,), result=fixed(STRING), python=trim,
    sql={"sqlite": lambda c, n, a: sa.func.trim(a[0], sa.literal(_TRIMMED)),
         "postgresql": lambda c, n, a: sa.func.btrim(a[0], sa.literal(_TRIMMED)),
         "duckdb": lambda c, n, a: sa.func.trim(a[0], sa.literal(_TRIMMED)),
         "spark": lambda c, n, a: sa.func.btrim(a[0], sa.literal(_TRIMMED))},
    doc="The string without leading and trailing spaces, tabs, carriage returns and newlines.",
    example='trim(person.first_name) = "Sarah"',
))
register(Function(
    name="length", params=(_S,), result=fixed(INTEGER), python=len,
    sql={"default": lambda c, n, a: sa.func.length(a[0])},  # characters, not bytes, on both
    doc="The number of code points in the string.",
    example="length(phone) >= 10",
))
register(Function(
    name="concat", params=(Param("s", "string"),), variadic=True, min_args=1, result=fixed(STRING),
    python=lambda *parts: "".join(parts), sql={"default": _concat_sql},
    doc="The strings joined; `null` when any argument is `null`.",
    example='concat(person.first_name, " ", person.last_name) = "Sarah Rose"',
))
