"""DuckDB: what differs from the common compiler (cdp.engine.sql.base).

DuckDB reads the Parquet snapshots (cdp/snapshots): profile attributes and event fields are JSON
text, read by JSON pointer (any key, dots and quotes included), and the schema's scalar profile
attributes are typed columns too (``"a.<key>"``), read instead where the relation has them, and so are the
scalar event fields (``"f.<key>"`` of the events relation); datetimes are plain UTC
``TIMESTAMP``s. Integer arithmetic stops with an overflow error, which ``TRY`` turns into the
language's null (DSL.md §9); a double that is no longer finite is null. DuckDB's regular expressions are RE2's
own, its LIKE is case-sensitive and its strings order by code point, so those need nothing. The
few forms DuckDB has no native answer for (decimal `%` and `round` on the values as written,
simple upper-case mapping) run the language's Python as ``pql_*`` functions registered on the
connection (cdp.engine.sql.analytic), as on SQLite.
"""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Exists, ScalarSelect

from cdp.dsl import ast, runtime
from cdp.engine.sql.base import DOUBLE, SqlCompiler
from cdp.engine.sql.grouped import GroupedAggregates
from cdp.engine.sql.postgresql import _NESTED_CHECKS, _is_decimal_chain
from cdp.engine.support import UnsupportedOnBackend
from cdp.pqltypes import DATE, INTEGER, PqlType
from cdp.storage.models import events, profiles

FLAT_PREFIX = "a."  # the flat attribute columns' prefix (cdp.engine.sql.analytic)
EVENT_PREFIX = "f."  # the flat event-field columns' prefix (of the events relation)

_TYPED_READS = {"integer": sa.BigInteger, "number": DOUBLE, "boolean": sa.Boolean, "date": sa.Date,
                "datetime": sa.DateTime}
_UNITS = {"second": "seconds", "minute": "minutes", "hour": "hours", "day": "days", "week": "weeks",
          "month": "months", "year": "years"}


def json_pointer(key: str) -> str:
    """RFC 6901: the one path form that takes any key as it is (`~` and `/` escaped)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


class _Timestamp(sa.types.UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "TIMESTAMP"


class _HugeInt(sa.types.UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "HUGEINT"


def _has_subquery(value: ColumnElement) -> bool:
    return any(isinstance(e, (ScalarSelect, Exists)) for e in visitors.iterate(value))


def finite_or_null(value: ColumnElement) -> ColumnElement:
    """A double, null where it overflowed to ±infinity (DuckDB does not stop there; the language
    says null, DSL.md §9). For aggregates: the value is named once."""
    inf = sa.literal(float("inf"), DOUBLE)
    return sa.func.nullif(sa.func.nullif(value, inf), -inf)


def typed_column_name(compiler, document, key: str, type_: PqlType) -> str | None:
    """The name of the snapshot's typed column holding ``key`` of a JSON document with this type,
    when the relation read has one (``compiler.flat`` of ``attributes`` of a profiles alias,
    ``compiler.flat_events`` of ``fields`` of an events alias; never a derived table's, whose
    columns are the compiler's own): DuckDB and Spark read it instead of the JSON."""
    if not isinstance(document.table, sa.sql.Alias):
        return None
    if document.name == "attributes" and document.table.element is profiles:
        columns, prefix = compiler.flat, FLAT_PREFIX
    elif document.name == "fields" and document.table.element is events:
        columns, prefix = compiler.flat_events, EVENT_PREFIX
    else:
        return None
    return prefix + key if columns.get(key) == type_.name else None


class DuckDBCompiler(GroupedAggregates, SqlCompiler):
    name = "duckdb"
    # key → type of the profiles relation's flat attribute columns ("a.<key>", cdp.engine.sql.
    # analytic.write_flat): each holds this class's JSON read of the key, evaluated once per row
    # when the relation was made, so reading the column is the same value without the parse
    flat: dict[str, str] = {}
    # key → type of the events relation's flat event-field columns ("f.<key>"), the same way
    flat_events: dict[str, str] = {}

    def flat_column(self, document, key: str, type_: PqlType) -> ColumnElement | None:
        """The typed column holding this JSON read, when the relation read has one of the type:
        ``attributes`` of a profiles alias, ``fields`` of an events alias (never a derived table,
        whose columns are the compiler's own)."""
        name = typed_column_name(self, document, key, type_)
        if name is None:
            return None
        column = '"' + name.replace('"', '""') + '"'
        kind = _Timestamp() if type_.name == "datetime" else _TYPED_READS.get(type_.name, sa.String)
        return sa.literal_column(f'"{document.table.name}".{column}', kind)

    def json_read(self, document, key, type_, *, flat: bool = True):
        column = self.flat_column(document, key, type_) if flat else None
        if column is not None:
            return column
        # a constant in the SQL text (quoted), not a parameter: DuckDB parses a constant path once
        # per query, a parameter's once per row (5× slower on attribute segments)
        pointer = sa.literal_column("'" + json_pointer(key).replace("'", "''") + "'", sa.String)
        if type_.is_list:
            return sa.func.json_extract(document, pointer)
        text = sa.func.json_extract_string(document, pointer)
        if type_.name == "datetime":
            return sa.cast(text, _Timestamp())
        target = _TYPED_READS.get(type_.name)
        return sa.cast(text, target) if target is not None else text

    def to_datetime(self, value):
        return sa.cast(value, _Timestamp())

    def semi_join(self, node):
        """An `exists event` that reads nothing of the profile runs as `p.pk IN (SELECT profile_pk
        FROM events …)`. Correlated, DuckDB decorrelates a sequence's `then` step (a subquery
        correlated to the step before, itself correlated to the profile) against every event's
        (profile_pk, ts) instead of the first step's few matches: on 100,000 profiles the cart
        abandoners took 2.8× the hand-written query, which drives from the carts as this does.
        `no event` stays a NOT EXISTS (an anti-join; NOT IN would need a null check)."""
        return isinstance(node, ast.Exists) and self.independent_of_profile(node)

    def c_BoolChain(self, node: ast.BoolChain, ctx):
        """An `and` whose operands include event terms run as `p.pk IN (…)` (semi_join) puts those
        first: DuckDB plans the conjuncts' subqueries in the order written, and the semi-joins
        cut the profiles before a correlated EXISTS is decorrelated against them (the cart
        abandoners on 200,000 profiles: the hand-written query in the compiled order took 1.5×
        the one written semi-join first). AND is commutative, nulls included; which operand
        stops with an error first was never fixed (the planner reorders filters too). An
        aggregate comparison run as `p.pk IN (…)` (cdp.engine.sql.grouped) counts as a semi-join."""
        self.deciding_operands(node)
        if node.op != "and":
            return super().c_BoolChain(node, ctx)
        first = [o for o in node.operands if (isinstance(o, ast.Exists) and self.semi_join(o))
                 or self.grouped_semi_join(o)]
        rest = [o for o in node.operands if not any(o is f for f in first)]
        return sa.and_(*[self.value(o, ctx) for o in first + rest]).self_group()

    def checked_integer(self, operation: Callable[..., ColumnElement], *operands: ColumnElement) -> ColumnElement:
        """An integer result, null outside 64 bits (DSL.md §9) where DuckDB stops with an
        overflow: ``TRY`` turns the error into null and names each operand once, so a chain of
        checked steps grows linearly (a NULLIF would be rewritten into a CASE naming it twice).
        TRY refuses a subquery inside: operands holding one (an aggregate) are named in a derived
        table first."""
        if not any(_has_subquery(o) for o in operands):
            return sa.func.try_(sa.cast(operation(*operands), sa.BigInteger))
        named = sa.select(*[o.label(f"x{i}") for i, o in enumerate(operands)]).subquery(self.fresh("g"))
        inner = sa.func.try_(sa.cast(operation(*named.c), sa.BigInteger))
        return sa.select(inner).select_from(named).scalar_subquery()

    def bigint_or_null(self, value: ColumnElement) -> ColumnElement:
        return self.checked_integer(lambda v: v, value)

    def double_or_null(self, value: ColumnElement) -> ColumnElement:
        """A double, null where it overflowed to ±infinity (DuckDB does not stop there)."""
        return sa.case((sa.func.isfinite(value), value), else_=sa.null())

    def negate(self, value, type_):
        if type_ == INTEGER:
            return self.checked_integer(lambda v: -v, value)
        return (-value).self_group()

    def arithmetic(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        if node.type == INTEGER and len(node.operands) > _NESTED_CHECKS:
            return self.long_integer_chain(node, ctx)
        # each checked step of doubles names the step before twice (isfinite, then the value):
        # beyond a few steps the expression would grow too much, as on PostgreSQL
        if len(node.operands) > _NESTED_CHECKS and _is_decimal_chain(node):
            raise UnsupportedOnBackend(self.dialect, f"a chain of {len(node.operands)} decimal operands is checked "
                                       f"for overflow at every step only up to {_NESTED_CHECKS} operands on DuckDB; "
                                       "evaluate it in memory or on SQLite", node.span)
        return super().arithmetic(node, ctx)

    def long_integer_chain(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        """A long chain of integer `+`/`-` (as on PostgreSQL): the partial sums as a running sum
        over the signed terms, exact in HUGEINT; null when a term is null or a partial sum leaves
        64 bits. A TRY per step would nest too deep for the SQL compiler."""
        if set(node.operators) - {"+", "-"}:
            raise UnsupportedOnBackend(self.dialect, f"a chain of {len(node.operands)} integer products is checked "
                                       f"for overflow at every step only up to {_NESTED_CHECKS} operands on "
                                       "DuckDB; evaluate it in memory", node.span)
        terms = [self.value(node.operands[0], ctx)]
        for op, operand in zip(node.operators, node.operands[1:]):
            term = self.value(operand, ctx)
            terms.append(-term if op == "-" else term)
        values = sa.cast(sa.func.list_value(*terms), sa.ARRAY(_HugeInt()))
        rows = sa.select(sa.func.unnest(values).label("v"),
                         sa.func.unnest(sa.func.range(len(terms))).label("i")).subquery(self.fresh("t"))
        running = (sa.select(rows.c.v, sa.func.sum(rows.c.v).over(order_by=rows.c.i).label("s"))
                   .select_from(rows).subquery(self.fresh("r")))
        fits = sa.and_(sa.func.count() == sa.func.count(running.c.v),
                       sa.func.max(running.c.s) <= runtime.INT_MAX, sa.func.min(running.c.s) >= runtime.INT_MIN)
        total = sa.select(sa.case((fits, sa.cast(sa.func.sum(running.c.v), sa.BigInteger)), else_=sa.null()))
        return total.select_from(running).scalar_subquery()

    def arithmetic_step(self, op, left, left_type, right, right_type):
        both_integer = left_type == INTEGER and right_type == INTEGER
        if op == "/":
            # `op`: SQLAlchemy's `/` would cast the divisor to NUMERIC (DuckDB: DECIMAL(18,3))
            result = self.double_or_null(sa.cast(left, DOUBLE).op("/")(sa.func.nullif(sa.cast(right, DOUBLE), 0)))
        elif op == "%":
            if both_integer:
                result = left.op("%")(sa.func.nullif(right, 0))
            else:  # on the decimal values as written, as in memory (runtime.modulo)
                result = sa.func.pql_mod(sa.cast(left, DOUBLE), sa.cast(right, DOUBLE))
        elif both_integer:
            result = self.checked_integer(lambda a, b: a.op(op)(b), left, right)
        else:
            result = self.double_or_null(sa.cast(left, DOUBLE).op(op)(sa.cast(right, DOUBLE)))
        return result.self_group()

    def shift(self, value, type_, duration, sign, *, in_range=True):
        interval = sa.literal_column(f"INTERVAL '{int(duration.amount)} {_UNITS[duration.unit]}'")
        shifted = value.op("+" if sign > 0 else "-")(interval)
        shifted = sa.cast(shifted, sa.Date) if type_ == DATE else sa.cast(shifted, _Timestamp())
        if not in_range:
            return shifted
        # years 1–9999 only (DuckDB goes on): clamped just outside, and those two ends are null
        kind = sa.Date if type_ == DATE else _Timestamp()
        above = sa.cast(sa.literal("10000-01-01"), kind)
        below = sa.cast(sa.literal("0000-12-31" if type_ == DATE else "0000-12-31 23:59:59.999999"), kind)
        return sa.func.nullif(sa.func.nullif(sa.func.greatest(sa.func.least(shifted, above), below), above), below)

    def regex_match(self, value, pattern):
        return sa.func.regexp_matches(value, sa.literal(pattern.value, sa.String))  # RE2, a search

    def like(self, value, pattern):
        return value.like(sa.literal(pattern.value, sa.String), escape="\\")

    def typed_element(self, value, element_type):
        # the elements are text (the list cast to VARCHAR[]): read as their type, as json_read does
        if element_type is not None and element_type.name == "datetime":
            return sa.cast(value, _Timestamp())
        target = _TYPED_READS.get(element_type.name) if element_type is not None else None
        return sa.cast(value, target) if target is not None else value

    def list_elements(self, list_value):
        elements = sa.func.unnest(sa.cast(list_value, sa.ARRAY(sa.String)))
        return elements.table_valued("value").render_derived().alias(self.fresh("je"))

    def present_element(self, elements):
        return elements.c.value.is_not(None)

    def sum_or_avg_parts(self, fn, value, field_type):
        if field_type == INTEGER:
            if fn == "sum":  # DuckDB sums bigints exactly, into a HUGEINT; TRY (no aggregate inside) from outside
                return sa.func.coalesce(sa.func.sum(value), 0), lambda s: sa.func.try_(sa.cast(s, sa.BigInteger))
            return sa.cast(sa.func.avg(value), DOUBLE), None
        if fn == "sum":
            return finite_or_null(sa.func.coalesce(sa.func.sum(value), sa.literal(0.0, DOUBLE))), None
        return finite_or_null(sa.func.avg(value)), None

    def sum_or_avg(self, fn, table, value, field_type, conditions):
        aggregate, finish = self.sum_or_avg_parts(fn, value, field_type)
        if finish is None:
            return sa.select(aggregate).select_from(table).where(*conditions).correlate_except(table).scalar_subquery()
        total = (sa.select(aggregate.label("s")).select_from(table).where(*conditions).correlate_except(table)
                 .subquery(self.fresh("t")))
        return sa.select(finish(total.c.s)).select_from(total).scalar_subquery()
