"""PostgreSQL: what differs from the common compiler (cdp.engine.sql.base).

PostgreSQL stops with an error where the language says null (64-bit overflow, a double that is
no longer finite, dates past year 9999), so integer results are computed exactly in numeric and
brought back as a bigint or null, and doubles are guarded before the operation. Strings order by
code point under COLLATE "C"; RE2 patterns are translated to PostgreSQL's regular expressions
(cdp.engine.sql.postgresql_regex). Storage: JSONB documents, timestamptz.
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from cdp.dsl import ast
from cdp.pqltypes import DATE, INTEGER, PqlType
from cdp.dsl import runtime
from cdp.engine.sql.base import DOUBLE, MAX_DOUBLE, SqlCompiler
from cdp.engine.sql.postgresql_regex import re2_to_postgres
from cdp.engine.support import UnsupportedOnBackend

TIMESTAMPTZ = postgresql.TIMESTAMP(timezone=True)
_INTERVAL_UNITS = {"second": "seconds", "minute": "mins", "hour": "hours", "day": "days", "week": "weeks",
                   "month": "months", "year": "years"}
_TYPED_READS = {"integer": sa.BigInteger, "number": DOUBLE, "boolean": sa.Boolean, "date": sa.Date,
                "datetime": TIMESTAMPTZ}
# integer steps checked one inside the other; longer chains see long_integer_chain
_NESTED_CHECKS = 8


def _is_decimal_chain(node: ast.Arithmetic) -> bool:
    """A chain of decimal arithmetic (not integers only, no durations)."""
    if any(isinstance(o, ast.DurationLiteral) or (o.type is not None and not o.type.is_numeric) for o in node.operands):
        return False
    return node.type != INTEGER


class PostgreSQLCompiler(SqlCompiler):
    name = "postgresql"

    def json_read(self, document: ColumnElement, key: str, type_: PqlType) -> ColumnElement:
        if type_.is_list:
            return document.op("->", return_type=postgresql.JSONB)(sa.literal(key, sa.String))
        text = document.op("->>", return_type=sa.Text)(sa.literal(key, sa.String))
        target = _TYPED_READS.get(type_.name)
        return sa.cast(text, target) if target is not None else text

    def to_datetime(self, value: ColumnElement) -> ColumnElement:
        return sa.cast(value, TIMESTAMPTZ)

    def collated(self, value: ColumnElement, type_: PqlType | None) -> ColumnElement:
        if type_ is not None and type_.name == "string":
            return value.collate("C")
        return value

    @staticmethod
    def as_written(value: ColumnElement, type_: PqlType | None) -> ColumnElement:
        """A number as numeric, a double by its decimal value as written (its shortest
        text, as Python's repr) — a cast straight to numeric keeps only 15 digits."""
        if type_ == INTEGER:
            return sa.cast(value, sa.Numeric)
        return sa.cast(sa.cast(value, sa.Text), sa.Numeric)

    def bigint_or_null(self, value: ColumnElement) -> ColumnElement:
        """An exact (numeric) integer result as a bigint, null outside the 64-bit
        range (DSL.md §9), never "bigint out of range". The value is named once: clamped just
        beyond the range, the two out-of-range ends become null."""
        above = sa.literal(Decimal(runtime.INT_MAX + 1), sa.Numeric)
        below = sa.literal(Decimal(runtime.INT_MIN - 1), sa.Numeric)
        clamped = sa.func.greatest(sa.func.least(value, above), below)
        return sa.cast(sa.func.nullif(sa.func.nullif(clamped, above), below), sa.BigInteger)

    def negate(self, value: ColumnElement, type_: PqlType) -> ColumnElement:
        if type_ == INTEGER:
            return self.bigint_or_null(-sa.cast(value, sa.Numeric))
        return (-value).self_group()

    def arithmetic(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        operands = node.operands
        if node.type == INTEGER and len(operands) > _NESTED_CHECKS:
            return self.long_integer_chain(node, ctx)
        if len(operands) > _NESTED_CHECKS and _is_decimal_chain(node):
            raise UnsupportedOnBackend(self.dialect, f"a chain of {len(operands)} decimal operands is checked for "
                                       f"overflow at every step only up to {_NESTED_CHECKS} operands on PostgreSQL; "
                                       "evaluate it in memory or on SQLite", node.span)
        return super().arithmetic(node, ctx)

    def arithmetic_step(self, op, left, left_type, right, right_type):
        both_integer = left_type == INTEGER and right_type == INTEGER
        if op == "/":
            result = self.double_or_null("/", sa.cast(left, DOUBLE), sa.func.nullif(sa.cast(right, DOUBLE), 0))
        elif op == "%":
            if both_integer:
                result = left.op("%")(sa.func.nullif(right, 0))
            else:  # on the decimal values as written, as in memory (runtime.modulo)
                result = sa.cast(sa.func.mod(self.as_written(left, left_type),
                                             sa.func.nullif(self.as_written(right, right_type), 0)), DOUBLE)
        elif both_integer:  # exact, then null outside 64 bits (DSL.md §9)
            result = self.bigint_or_null(sa.cast(left, sa.Numeric).op(op)(sa.cast(right, sa.Numeric)))
        else:
            result = self.double_or_null(op, left, right)
        return result.self_group()

    def double_or_null(self, op: str, left: ColumnElement, right: ColumnElement) -> ColumnElement:
        """Doubles: `left op right`, null where the result would not be finite (DSL.md
        §9) — PostgreSQL stops with "value out of range: overflow" there. The guard reads each
        operand once: they are named in a derived table, so nesting does not repeat them."""
        # as doubles: abs() of a bigint -2^63 would itself be out of range
        pair = (sa.select(sa.cast(left, DOUBLE).label("x"), sa.cast(right, DOUBLE).label("y"))
                .correlate_except(None).subquery(self.fresh("g")))
        x, y = pair.c.x, pair.c.y
        largest = sa.literal(MAX_DOUBLE, DOUBLE)
        if op in ("+", "-"):
            other = y if op == "+" else -y
            safe = sa.or_(sa.func.sign(x) != sa.func.sign(other), sa.func.abs(x) <= largest - sa.func.abs(y))
        elif op == "*":
            safe = sa.or_(sa.func.abs(x) <= 1, sa.func.abs(y) <= 1, sa.func.abs(x) <= largest / sa.func.abs(y))
        else:  # "/", y is never 0 here (nullif)
            safe = sa.or_(sa.func.abs(y) >= 1, sa.func.abs(x) <= largest * sa.func.abs(y))
        return sa.select(sa.case((safe, x.op(op)(y)), else_=sa.null())).select_from(pair).scalar_subquery()

    def long_integer_chain(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        """A long chain of integer `+`/`-`: every partial result must lie in 64 bits
        (DSL.md §9, left to right as in memory), but a check nested per step is too deep for the
        SQL compiler. The partial sums are a running sum over the signed terms instead, exact in
        numeric: null when a term is null or a partial sum leaves the range."""
        if set(node.operators) - {"+", "-"}:
            raise UnsupportedOnBackend(self.dialect, f"a chain of {len(node.operands)} integer products is checked "
                                       f"for overflow at every step only up to {_NESTED_CHECKS} operands on "
                                       "PostgreSQL; evaluate it in memory", node.span)
        terms = [sa.cast(self.value(node.operands[0], ctx), sa.Numeric)]
        for op, operand in zip(node.operators, node.operands[1:]):
            term = sa.cast(self.value(operand, ctx), sa.Numeric)
            terms.append(-term if op == "-" else term)
        elements = (sa.func.unnest(postgresql.array(terms)).table_valued("v", with_ordinality="i")
                    .render_derived(name=self.fresh("t")))
        running = (sa.select(elements.c.v, sa.func.sum(elements.c.v).over(order_by=elements.c.i).label("s"))
                   .select_from(elements).subquery(self.fresh("r")))
        last = sa.func.sum(running.c.v)  # the whole sum: the last partial sum
        fits = sa.and_(sa.func.count() == sa.func.count(running.c.v),
                       sa.func.max(running.c.s) <= runtime.INT_MAX, sa.func.min(running.c.s) >= runtime.INT_MIN)
        total = sa.select(sa.case((fits, sa.cast(last, sa.BigInteger)), else_=sa.null())).select_from(running)
        return total.scalar_subquery()

    def shift(self, value, type_, duration, sign, *, in_range=True):
        interval = sa.cast(sa.literal(f"{duration.amount} {_INTERVAL_UNITS[duration.unit]}", sa.String), postgresql.INTERVAL)
        shifted = value.op("+" if sign > 0 else "-")(interval)
        shifted = sa.cast(shifted, sa.Date) if type_ == DATE else shifted.self_group()
        if not in_range:
            return shifted
        # clamped just outside years 1–9999, and those two ends are null (the value named once)
        kind = sa.Date if type_ == DATE else TIMESTAMPTZ
        above = sa.cast(sa.literal("10000-01-01" if type_ == DATE else "10000-01-01 00:00:00+00", sa.String), kind)
        below = sa.cast(sa.literal("0001-12-31 BC" if type_ == DATE else "0001-12-31 23:59:59.999999+00 BC", sa.String), kind)
        return sa.func.nullif(sa.func.nullif(sa.func.greatest(sa.func.least(shifted, above), below), above), below)

    def regex_match(self, value, pattern):
        return value.op("~", is_comparison=True)(sa.literal(re2_to_postgres(pattern.value, pattern.span), sa.String))

    def like(self, value, pattern):
        return value.like(sa.literal(pattern.value, sa.String), escape="\\")

    def typed_element(self, value, element_type):
        # jsonb_array_elements_text gives text: read as the element's type, as json_read does
        target = _TYPED_READS.get(element_type.name) if element_type is not None else None
        return sa.cast(value, target) if target is not None else value

    def list_elements(self, list_value):
        return sa.func.jsonb_array_elements_text(list_value).table_valued("value").alias(self.fresh("je"))

    def present_element(self, elements):
        return elements.c.value.is_not(None)

    def sum_or_avg(self, fn, table, value, field_type, conditions):
        if field_type != INTEGER:
            return self.double_aggregate(fn, table, value, conditions)
        if fn == "sum":  # PostgreSQL sums bigints exactly, as numeric
            aggregate = self.bigint_or_null(sa.func.coalesce(sa.func.sum(value), 0))
        else:
            aggregate = sa.cast(sa.func.avg(value), DOUBLE)
        return sa.select(aggregate).select_from(table).where(*conditions).correlate_except(table).scalar_subquery()

    def double_aggregate(self, fn: str, table, value: ColumnElement, conditions: list) -> ColumnElement:
        """`sum` / `avg` of doubles: sum(float8) stops with an error when a partial sum
        overflows, which cannot happen when the largest value times their number is finite; past
        that (values near 1e308) the result is null (DSL.md §9). The test needs the values' maximum
        and count beside each value, so they come from window functions in a derived table."""
        rows = (sa.select(value.label("v"), sa.func.max(sa.func.abs(value)).over().label("m"),
                          sa.func.count(value).over().label("n"))
                .select_from(table).where(*conditions).correlate_except(table).subquery(self.fresh("w")))
        fits = rows.c.m <= sa.literal(MAX_DOUBLE, DOUBLE) / sa.func.greatest(rows.c.n, 1)
        total = sa.func.sum(sa.case((fits, rows.c.v), else_=sa.null()))
        count = sa.func.count(rows.c.v)
        if fn == "sum":
            result = sa.case((count == 0, sa.literal(0.0, DOUBLE)), (sa.func.bool_and(fits), total), else_=sa.null())
        else:
            result = sa.case((sa.func.bool_and(fits), total / sa.func.nullif(count, 0)), else_=sa.null())
        return sa.select(result).select_from(rows).scalar_subquery()
