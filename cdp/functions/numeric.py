"""Numeric functions."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext

import sqlalchemy as sa

from cdp.functions.registry import Function, Param, same_as_first, register

_X = Param("x", "numeric")


def round_half_away(x: int | float, digits: int = 0) -> int | float:
    """Half away from zero on the decimal value as written: round(2.5) = 3, round(1.25, 1) = 1.3.

    A float's "value as written" is its shortest repr (1.25, not 1.25000000000000004…).
    """
    if isinstance(x, int) and digits >= 0:
        return x
    if isinstance(x, float) and not math.isfinite(x):
        return x
    if digits > 350:  # finer than any float or 64-bit integer holds: nothing to round
        return x
    if digits < -350:  # coarser than any representable value
        return 0 if isinstance(x, int) else 0.0
    with localcontext() as ctx:
        ctx.prec = 400
        exact = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
        rounded = exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return int(rounded) if isinstance(x, int) else float(rounded)


def _floor(x: int | float) -> int | float:
    return x if isinstance(x, int) else float(math.floor(x))


def _ceil(x: int | float) -> int | float:
    return x if isinstance(x, int) else float(math.ceil(x))


_DOUBLE = sa.Float(53)


def _same_type(node, value):
    """PostgreSQL's numeric results back to the argument's type (bigint or double)."""
    return sa.cast(value, sa.BigInteger if node.args[0].type.name == "integer" else _DOUBLE)


def _round_sql(compiler, node, args):
    digits = args[1] if len(args) > 1 else sa.literal(0)
    if compiler.sqlite:
        return sa.func.pql_round(args[0], digits)
    # round(numeric) halves away from zero; float8 → numeric keeps the decimal value as written
    return _same_type(node, sa.func.round(sa.cast(args[0], sa.Numeric), sa.cast(digits, sa.Integer)))


register(Function(
    name="abs", params=(_X,), result=same_as_first, python=abs,
    sql={"default": lambda c, n, a: sa.func.abs(a[0])},
    doc="The absolute value.", example="abs(lifetime_value) > 100",
))
register(Function(
    name="round", params=(_X, Param("digits", "integer")), min_args=1, result=same_as_first,
    python=round_half_away, sql={"default": _round_sql},
    doc="Rounded half away from zero on the decimal value as written (`round(2.5)` is 3, "
        "`round(-2.5)` is -3, `round(1.25, 1)` is 1.3); negative `digits` round to tens, hundreds …",
    example="round(lifetime_value) >= 100",
))
register(Function(
    name="floor", params=(_X,), result=same_as_first, python=_floor,
    sql={"sqlite": lambda c, n, a: sa.func.pql_floor(a[0]),
         "postgresql": lambda c, n, a: _same_type(n, sa.func.floor(a[0]))},
    doc="The greatest whole number not above x.", example="floor(lifetime_value) = 99",
))
register(Function(
    name="ceil", params=(_X,), result=same_as_first, python=_ceil,
    sql={"sqlite": lambda c, n, a: sa.func.pql_ceil(a[0]),
         "postgresql": lambda c, n, a: _same_type(n, sa.func.ceil(a[0]))},
    doc="The least whole number not below x.", example="ceil(lifetime_value) = 100",
))
