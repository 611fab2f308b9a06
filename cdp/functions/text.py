"""String functions."""

from __future__ import annotations

from functools import lru_cache

from cdp.dsl.types import INTEGER, STRING
from cdp.functions.registry import Function, Param, fixed, register

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


register(Function(
    name="lower", params=(_S,), result=fixed(STRING), python=simple_lower,
    doc="The string in lower case, one code point to one (`ß` stays `ß`; `İ` lowers to `i`).",
    example='lower(email) ends with "@example.com"',
))
register(Function(
    name="upper", params=(_S,), result=fixed(STRING), python=simple_upper,
    doc="The string in upper case, one code point to one (`ß` stays `ß`).",
    example='upper(home_address.country) = "US"',
))
register(Function(
    name="trim", params=(_S,), result=fixed(STRING), python=trim,
    doc="The string without leading and trailing spaces, tabs, carriage returns and newlines.",
    example='trim(person.first_name) = "Sarah"',
))
register(Function(
    name="length", params=(_S,), result=fixed(INTEGER), python=len,
    doc="The number of code points in the string.",
    example="length(phone) >= 10",
))
register(Function(
    name="concat", params=(Param("s", "string"),), variadic=True, min_args=1, result=fixed(STRING),
    python=lambda *parts: "".join(parts),
    doc="The strings joined; `null` when any argument is `null`.",
    example='concat(person.first_name, " ", person.last_name) = "Sarah Rose"',
))
