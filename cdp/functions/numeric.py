"""Numeric functions."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext

import sqlalchemy as sa

from cdp.functions.registry import Function, Param, python_udf, same_as_first, register

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
        ctx.prec = 800  # a float's 309 integer digits and 350 decimals fit: quantize never overflows it
        exact = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
        rounded = exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return int(rounded) if isinstance(x, int) else float(rounded)


def _floor(x: int | float) -> int | float:
    return x if isinstance(x, int) else float(math.floor(x))


def _ceil(x: int | float) -> int | float:
    return x if isinstance(x, int) else float(math.ceil(x))


_DOUBLE = sa.Float(53)


def _same_type(compiler, node, value):
    """PostgreSQL's numeric results back to the argument's type: bigint (null outside 64 bits,
    DSL.md §9) or double."""
    if node.args[0].type.name == "integer":
        return compiler.bigint_or_null(value)
    return sa.cast(value, _DOUBLE)


def _abs_postgresql(compiler, node, args):
    if node.args[0].type.name == "integer":  # abs(-2^63) is 2^63: null, not an error
        return compiler.bigint_or_null(sa.func.abs(sa.cast(args[0], sa.Numeric)))
    return sa.func.abs(args[0])


def _round_postgresql(compiler, node, args):
    digits = args[1] if len(args) > 1 else sa.literal(0)
    # round(numeric) halves away from zero, on the decimal value as written
    value = compiler.as_written(args[0], node.args[0].type)
    return _same_type(compiler, node, sa.func.round(value, sa.cast(digits, sa.Integer)))


def _whole_postgresql(name: str):
    def form(compiler, node, args):
        if node.args[0].type.name == "integer":  # an integer is already whole
            return args[0]
        return sa.cast(getattr(sa.func, name)(args[0]), _DOUBLE)
    return form


def _abs_duckdb(compiler, node, args):
    if node.args[0].type.name == "integer":  # abs(-2^63) is 2^63: null, not an error
        return compiler.checked_integer(sa.func.abs, args[0])
    return sa.func.abs(args[0])


def _round_duckdb(compiler, node, args):
    # the language's own rounding (on the decimal value as written), registered on the connection
    digits = args[1] if len(args) > 1 else sa.literal(0)
    kind = "integer" if node.args[0].type.name == "integer" else "number"
    return getattr(sa.func, f"pql_round_{kind}")(args[0], digits)


def _abs_spark(compiler, node, args):
    if node.args[0].type.name == "integer":  # abs(-2^63) is 2^63: null, not an error
        return sa.case((args[0] == sa.cast(sa.literal(-2**63, sa.BigInteger), sa.BigInteger), sa.null()),
                       else_=sa.func.abs(args[0]))
    return sa.func.abs(args[0])


def _whole_spark(name: str):
    def form(compiler, node, args):
        if node.args[0].type.name == "integer":
            return args[0]
        # Spark's floor and ceil of a double are BIGINTs; from 2^52 up a double is whole already
        whole = sa.cast(getattr(sa.func, name)(args[0]), _DOUBLE)
        return sa.case((sa.func.abs(args[0]) >= sa.literal(2.0 ** 52, _DOUBLE), args[0]), else_=whole)
    return form


register(Function(
    name="abs", params=(_X,), result=same_as_first, python=abs,
    sql={"sqlite": python_udf, "postgresql": _abs_postgresql, "duckdb": _abs_duckdb, "spark": _abs_spark},
    doc="The absolute value.", example="abs(lifetime_value) > 100",
))
register(Function(
    name="round", params=(_X, Param("digits", "integer")), min_args=1, result=same_as_first,
    python=round_half_away, sql={"sqlite": python_udf, "postgresql": _round_postgresql, "duckdb": _round_duckdb,
                                                 "spark": _round_duckdb},
    doc="Rounded half away from zero on the decimal value as written (`round(2.5)` is 3, "
        "`round(-2.5)` is -3, `round(1.25, 1)` is 1.3); negative `digits` round to tens, hundreds …",
    example="round(lifetime_value) >= 100",
))
register(Function(
    name="floor", params=(_X,), result=same_as_first, python=_floor,
    sql={"sqlite": python_udf, "postgresql": _whole_postgresql("floor"), "duckdb": _whole_postgresql("floor"),
         "spark": _whole_spark("floor")},
    doc="The greatest whole number not above x.", example="floor(lifetime_value) = 99",
))
register(Function(
    name="ceil", params=(_X,), result=same_as_first, python=_ceil,
    sql={"sqlite": python_udf, "postgresql": _whole_postgresql("ceil"), "duckdb": _whole_postgresql("ceil"),
         "spark": _whole_spark("ceil")},
    doc="The least whole number not below x.", example="ceil(lifetime_value) = 100",
))
