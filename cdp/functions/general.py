"""Functions over any type."""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa

from cdp.pqltypes import INTEGER, NULL, PqlType, unify
from cdp.functions.registry import Function, Param, fixed, register


def _coalesce_type(types: Sequence[PqlType]) -> PqlType:
    result = NULL
    for t in types:
        unified = unify(result, t)
        result = unified if unified is not None else result
    return result


def _coalesce(*values):
    for value in values:
        if value is not None:
            return value
    return None


def _size(values) -> int:
    return sum(1 for v in values if v is not None)


register(Function(
    name="coalesce", params=(Param("value", "scalar"),), variadic=True, min_args=1,
    result=_coalesce_type, python=_coalesce, null_propagating=False, common_type=True,
    sql={"default": lambda c, n, a: a[0] if len(a) == 1 else sa.func.coalesce(*a)},  # SQLite wants ≥ 2
    doc="The first argument that is not `null` (all arguments of one type family).",
    example='coalesce(consents.email, "n") = "y"',
))
register(Function(
    name="size", params=(Param("list", "list"),), result=fixed(INTEGER), python=_size,
    sql={"default": lambda c, n, a: c.list_size(a[0])},
    doc="The number of elements of a list, not counting `null` elements.",
    example="size(interests) >= 2",
))
