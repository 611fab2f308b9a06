"""The value types of PQL (DSL.md §2): the bottom of the language layer, shared by the parser and
checker (cdp.dsl), schemas (cdp.schema) and the function registry (cdp.functions)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PqlType:
    name: str
    element: "PqlType | None" = None  # for list<T>

    def __str__(self) -> str:
        return f"list<{self.element}>" if self.name == "list" else self.name

    @property
    def is_numeric(self) -> bool:
        return self.name in ("integer", "number")

    @property
    def is_temporal(self) -> bool:
        return self.name in ("date", "datetime")

    @property
    def is_list(self) -> bool:
        return self.name == "list"

    @property
    def is_null(self) -> bool:
        return self.name == "null"


STRING = PqlType("string")
INTEGER = PqlType("integer")
NUMBER = PqlType("number")
BOOLEAN = PqlType("boolean")
DATE = PqlType("date")
DATETIME = PqlType("datetime")
DURATION = PqlType("duration")
NULL = PqlType("null")

SCALARS = {t.name: t for t in (STRING, INTEGER, NUMBER, BOOLEAN, DATE, DATETIME)}


def list_of(element: PqlType) -> PqlType:
    return PqlType("list", element)


def parse_type(text: str) -> PqlType:
    """'string', 'list<string>' … as written in schemas."""
    text = text.strip()
    if text.startswith("list<") and text.endswith(">"):
        return list_of(parse_type(text[5:-1]))
    if text in SCALARS:
        return SCALARS[text]
    raise ValueError(f"unknown type {text!r}; expected one of {', '.join(SCALARS)} or list<T>")


def family(t: PqlType) -> str:
    """Comparison family: integer and number compare with each other, date with datetime."""
    if t.is_numeric:
        return "numeric"
    if t.is_temporal:
        return "temporal"
    return t.name


def comparable(a: PqlType, b: PqlType) -> bool:
    if a.is_null or b.is_null:
        return True
    if a.is_list or b.is_list:
        return a == b
    return family(a) == family(b)


def unify(a: PqlType, b: PqlType) -> PqlType | None:
    """The common type of two values of one family (for coalesce, lists), or None."""
    if a.is_null:
        return b
    if b.is_null:
        return a
    if a == b:
        return a
    if a.is_numeric and b.is_numeric:
        return NUMBER
    if a.is_temporal and b.is_temporal:
        return DATETIME
    return None
