"""SQLite: what differs from the common compiler (cdp.engine.sql.base).

SQLite lacks calendar arithmetic, RE2, case-sensitive LIKE and arithmetic that gives null rather
than an error on overflow; the language's own Python runs there instead, registered on every
connection as ``pql_*`` functions (cdp.storage.sqlite_functions, loaded by
cdp.storage.database). Dates are stored as 'YYYY-MM-DD' text, datetimes as
'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); SQLite's BINARY collation already orders by code point.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from cdp.dsl import Diagnostic, PqlError, ast
from cdp.pqltypes import DATETIME, INTEGER, NUMBER, PqlType
from cdp.engine.sql.base import DOUBLE, FIXED_SECONDS, MAX_DOUBLE, SqlCompiler

# One step of a chain with durations, as the runtime does it.
_ARITHMETIC_UDFS = {"+": "pql_plus", "-": "pql_minus", "*": "pql_times", "/": "pql_divide", "%": "pql_mod"}
_MAX_UDF_ARGUMENTS = 100  # SQLite takes at most 127 arguments: a long chain folds in pieces
MAX_SQLITE_SEGMENT_COPIES = 2000  # SQLite refuses more than 65,535 references to one table in a statement


def _as_double(value: ColumnElement, type_: PqlType | None) -> ColumnElement:
    """A `number` is a double, also when the data wrote a whole number there."""
    return sa.cast(value, DOUBLE) if type_ == NUMBER else value


class SQLiteCompiler(SqlCompiler):
    name = "sqlite"
    TRANSFORMS = {
        **SqlCompiler.TRANSFORMS,
        "position": lambda a, b: sa.func.instr(a, b),
        "head": lambda a, n: sa.func.substr(a, 1, n),
        "tail": lambda a, n: sa.func.substr(a, sa.func.length(a) - n + 1),
    }

    def date_literal(self, value: date) -> ColumnElement:
        return sa.literal(value.isoformat(), sa.String)

    def as_double(self, node: ast.Node, value: ColumnElement) -> ColumnElement:
        # json_extract gives a whole number written in a `number` field as an integer, and SQLite
        # compares an integer with a real exactly: both sides become reals
        if isinstance(node, ast.NumberLiteral):
            return sa.literal(float(node.value), DOUBLE)
        return sa.cast(value, DOUBLE)

    def json_read(self, document: ColumnElement, key: str, type_: PqlType) -> ColumnElement:
        if '"' in key:  # a JSON path label cannot hold a quote: look the key up exactly instead
            members = sa.func.json_each(document).table_valued("key", "value").alias(self.fresh("jk"))
            return (sa.select(members.c.value).select_from(members)
                    .where(members.c.key == sa.literal(key, sa.String)).correlate_except(members).scalar_subquery())
        read = sa.func.json_extract(document, sa.literal('$."' + key + '"', sa.String))
        # a whole number written in a `number` field is an integer to json_extract: a double, as
        # every other backend reads it (count_distinct, min, max and comparisons see doubles)
        return sa.cast(read, DOUBLE) if type_ == NUMBER else read

    def to_datetime(self, value: ColumnElement) -> ColumnElement:
        return sa.func.pql_to_datetime(value)

    def negate(self, value: ColumnElement, type_: PqlType) -> ColumnElement:
        # -(-2^63) is null (DSL.md §9); SQLite would make it a real
        return sa.func.pql_negate(_as_double(value, type_))

    def arithmetic(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        if any(isinstance(o, ast.DurationLiteral) for o in node.operands):
            return super().arithmetic(node, ctx)
        # the in-memory runtime's left-to-right fold: null on division by zero and outside 64
        # bits or a double's range (DSL.md §9), where SQLite would stop with "integer
        # overflow"; one call however long the chain
        values = [_as_double(self.value(o, ctx), o.type) for o in node.operands]
        result, rest, operators = values[0], values[1:], node.operators
        while rest:
            piece, rest = rest[:_MAX_UDF_ARGUMENTS], rest[_MAX_UDF_ARGUMENTS:]
            result = sa.func.pql_arithmetic(sa.literal("".join(operators[:len(piece)])), result, *piece)
            operators = operators[len(piece):]
        return result

    def arithmetic_step(self, op, left, left_type, right, right_type):
        return getattr(sa.func, _ARITHMETIC_UDFS[op])(left, right)

    def shift(self, value, type_, duration, sign, *, in_range=True):
        if duration.unit in FIXED_SECONDS and type_ == DATETIME:
            # SQLite's own datetime() on the stored text: whole seconds, the microseconds
            # carried over unchanged (no Python call per row, which the UDF would cost)
            seconds = sign * duration.amount * FIXED_SECONDS[duration.unit]
            shifted = sa.func.datetime(value, sa.literal(f"{seconds:+d} seconds", sa.String))
            shifted = shifted.op("||")(sa.func.substr(value, 20))
            if not in_range:
                return shifted
            # datetime() answers null past 9999 but goes down to year 0000: that is null too
            # ('0000-99' sorts after every year-0 text and before year 1; named once)
            floor = sa.literal("0000-99", sa.String)
            return sa.func.nullif(sa.func.max(shifted, floor), floor)
        return sa.func.pql_add(value, sa.literal(duration.amount), sa.literal(duration.unit), sa.literal(sign))

    def gap_limit(self, previous_ts, gap):
        # past year 9999 the gap caps nothing (as in memory); SQLite says NULL there
        return sa.func.coalesce(super().gap_limit(previous_ts, gap),
                                sa.literal("9999-12-31 23:59:59.999999", sa.String))

    def regex_match(self, value, pattern):
        return sa.func.pql_regex(value, sa.literal(pattern.value, sa.String))

    def like(self, value, pattern):
        # SQLite's LIKE ignores ASCII case; the language's does not
        return sa.func.pql_like(value, sa.literal(pattern.value, sa.String))

    def list_elements(self, list_value):
        return sa.func.json_each(list_value).table_valued("value", "type").alias(self.fresh("je"))

    def present_element(self, elements):
        return elements.c.type != "null"

    def semi_join(self, node: ast.Node) -> bool:
        """An event term that reads nothing of the profile runs best as
        `p.pk IN (SELECT profile_pk FROM events …)`: SQLite builds that list once, where a
        correlated EXISTS is one lookup per profile (2× slower on a million profiles)."""
        return self.independent_of_profile(node)

    def sum_or_avg(self, fn, table, value, field_type, conditions):
        if fn == "sum":
            aggregate = self.exact_sum(value, field_type)
        else:  # the runtime's average: an exact sum, divided (DSL.md §9)
            aggregate = sa.func.pql_avg(value)
        return sa.select(aggregate).select_from(table).where(*conditions).correlate_except(table).scalar_subquery()

    @staticmethod
    def exact_sum(value: ColumnElement, field_type: PqlType) -> ColumnElement:
        """The sum of the non-null values: 0 when there are none, null when it lies outside 64 bits
        or a double's range (DSL.md §9) — never an error, whatever the order of the rows."""
        if field_type != INTEGER:  # SQLite sums doubles to an infinity when they overflow
            total = sa.func.total(value)
            return sa.case((sa.func.abs(total) <= MAX_DOUBLE, total), else_=sa.null())
        # SQLite's sum() stops with "integer overflow" as soon as a partial sum leaves 64 bits
        # (and a sum of valid values may come back in range). Exact instead: the high and the low
        # 32 bits of the values summed apart (neither sum can overflow), then put together when
        # the result fits.
        mask = sa.literal(0xFFFFFFFF)
        high = sa.func.sum(value.op(">>")(32))
        low = sa.func.sum(value.op("&")(mask))
        carried = (high + low.op(">>")(32)).self_group()
        return sa.case((sa.func.count(value) == 0, sa.literal(0)),
                       (carried.between(-(2**31), 2**31 - 1),
                        carried * sa.literal(2**32) + low.op("&")(mask)),
                       else_=sa.null())

    def check_segment_copies(self, node: ast.SegmentRef, copies: int) -> None:
        # SQLite's parser copies a CTE's SELECT into every place that names it (it then runs a
        # MATERIALIZED one once): refuse clearly before SQLite does
        if copies > MAX_SQLITE_SEGMENT_COPIES:
            raise PqlError([Diagnostic("too_complex", f'segment "{node.key}" expands to {copies} copies of the '
                                       f"segments it references on SQLite (at most {MAX_SQLITE_SEGMENT_COPIES})",
                                       node.span, hint="save the segments and run them as a batch job (it reads "
                                                       "referenced segments' memberships), or use PostgreSQL")])
