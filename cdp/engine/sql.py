"""The SQL backend: a checked tree → one SQLAlchemy Core query over the storage schema, for
SQLite and PostgreSQL.

SQL already has the language's three-valued logic (DSL.md §9) in its comparisons, AND, OR and
NOT, so most nodes map one to one; the visitor spends its methods on the real differences:
empty lists, division by zero, `%` on reals, code-point string order (COLLATE "C" on
PostgreSQL; SQLite's BINARY is already byte = code-point order), case-sensitive LIKE, RE2,
calendar arithmetic, and dates meeting datetimes. Everything the user writes reaches the
database as a bound parameter: literals, window bounds, as_of, JSON keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from cdp.dsl import ast, check
from cdp.dsl.types import DATE, DATETIME, INTEGER, NUMBER, PqlType
from cdp.engine import runtime
from cdp.engine.sql_regex import re2_to_postgres
from cdp.engine.support import UnsupportedOnBackend, require_support
from cdp.functions import lookup
from cdp.schema import Schema, luma_schema
from cdp.storage.models import UtcDateTime, events, memberships, profiles

DOUBLE = sa.Float(53)
TIMESTAMPTZ = postgresql.TIMESTAMP(timezone=True)
_SQL_COMPARE = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_INTERVAL_UNITS = {"second": "seconds", "minute": "mins", "hour": "hours", "day": "days", "week": "weeks",
                   "month": "months", "year": "years"}


@dataclass
class _Ctx:
    event: Any = None  # the events alias being filtered
    aliases: dict[str, Any] = field(default_factory=dict)


class SqlCompiler:
    """One compiler per (dialect, as_of, catalogue); ``compile(tree)`` gives a WHERE clause over
    ``self.profile`` (an alias of the profiles table)."""

    def __init__(self, dialect: str, as_of: datetime, *, schema: Schema | None = None,
                 segments: Mapping[str, str] | None = None, sandbox: str | None = None,
                 memberships_of: Mapping[str, int] | None = None):
        if dialect not in ("sqlite", "postgresql"):
            raise UnsupportedOnBackend(dialect, "the SQL backend supports sqlite and postgresql")
        self.dialect = dialect
        self.schema = schema or luma_schema()
        self.segments = dict(segments or {})
        self.as_of = as_of.astimezone(timezone.utc)
        self.profile = profiles.alias("p")
        self.as_of_param = sa.bindparam("as_of", self.as_of, type_=UtcDateTime)
        self.today_param = self.date_literal(self.as_of.date())
        self._aliases = 0
        self._segment_stack: list[str] = []
        # segment references: each referenced segment is one CTE, compiled once (see c_SegmentRef)
        self.sandbox = sandbox
        self._segment_ctes: dict[str, Any] = {}
        self._expansion: dict[str, int] = {}  # copies of each CTE SQLite's parser makes (see segment_cte)
        # key → segment pk of segments whose stored memberships are current at as_of (a batch run
        # evaluates referenced segments first): references to them read the memberships
        self.memberships_of = dict(memberships_of or {})
        # optional: profiles alias → a condition every referenced segment's CTE adds (an estimate
        # on a sample computes referenced segments on that sample only)
        self.segment_scope: Any = None

    @property
    def sqlite(self) -> bool:
        return self.dialect == "sqlite"

    # ---- literals and typed reads -----------------------------------------------------------

    def date_literal(self, value: date) -> ColumnElement:
        if self.sqlite:
            return sa.literal(value.isoformat(), sa.String)
        return sa.literal(value, sa.Date)

    def datetime_literal(self, value: datetime) -> ColumnElement:
        return sa.literal(value, UtcDateTime)

    def json_read(self, document: ColumnElement, key: str, type_: PqlType) -> ColumnElement:
        if self.sqlite:
            if '"' in key:  # a JSON path label cannot hold a quote: look the key up exactly instead
                members = sa.func.json_each(document).table_valued("key", "value").alias(self.fresh("jk"))
                return (sa.select(members.c.value).select_from(members)
                        .where(members.c.key == sa.literal(key, sa.String)).correlate_except(members).scalar_subquery())
            return sa.func.json_extract(document, sa.literal('$."' + key + '"', sa.String))
        if type_.is_list:
            return document.op("->", return_type=postgresql.JSONB)(sa.literal(key, sa.String))
        text = document.op("->>", return_type=sa.Text)(sa.literal(key, sa.String))
        return self.pg_cast(text, type_)

    @staticmethod
    def pg_cast(text: ColumnElement, type_: PqlType) -> ColumnElement:
        target = {"integer": sa.BigInteger, "number": DOUBLE, "boolean": sa.Boolean, "date": sa.Date,
                  "datetime": TIMESTAMPTZ}.get(type_.name)
        return sa.cast(text, target) if target is not None else text

    def to_datetime(self, value: ColumnElement) -> ColumnElement:
        if self.sqlite:
            return sa.func.pql_to_datetime(value)
        return sa.cast(value, TIMESTAMPTZ)

    @staticmethod
    def as_written(value: ColumnElement, type_: PqlType | None) -> ColumnElement:
        """PostgreSQL: a number as numeric, a double by its decimal value as written (its shortest
        text, as Python's repr) — a cast straight to numeric keeps only 15 digits."""
        if type_ == INTEGER:
            return sa.cast(value, sa.Numeric)
        return sa.cast(sa.cast(value, sa.Text), sa.Numeric)

    def bigint_or_null(self, value: ColumnElement) -> ColumnElement:
        """PostgreSQL: an exact (numeric) integer result as a bigint, null outside the 64-bit
        range (DSL.md §9), never "bigint out of range". The value is named once: clamped just
        beyond the range, the two out-of-range ends become null."""
        above = sa.literal(Decimal(runtime.INT_MAX + 1), sa.Numeric)
        below = sa.literal(Decimal(runtime.INT_MIN - 1), sa.Numeric)
        clamped = sa.func.greatest(sa.func.least(value, above), below)
        return sa.cast(sa.func.nullif(sa.func.nullif(clamped, above), below), sa.BigInteger)

    def collated(self, value: ColumnElement, type_: PqlType | None) -> ColumnElement:
        """Strings order by code point: COLLATE "C" on PostgreSQL; SQLite's BINARY already is."""
        if not self.sqlite and type_ is not None and type_.name == "string":
            return value.collate("C")
        return value

    # ---- entry ------------------------------------------------------------------------------

    def compile(self, tree: ast.Node) -> ColumnElement:
        return self.value(tree, _Ctx())

    def value(self, node: ast.Node, ctx: _Ctx) -> ColumnElement:
        return getattr(self, f"c_{type(node).__name__}")(node, ctx)

    # ---- literals ---------------------------------------------------------------------------

    def c_StringLiteral(self, node, ctx):
        return sa.literal(node.value, sa.String)

    def c_NumberLiteral(self, node, ctx):
        return sa.literal(node.value, sa.BigInteger if isinstance(node.value, int) else DOUBLE)

    def c_BooleanLiteral(self, node, ctx):
        return sa.true() if node.value else sa.false()

    def c_NullLiteral(self, node, ctx):
        return sa.null()

    # ---- names ------------------------------------------------------------------------------

    def c_Name(self, node: ast.Name, ctx):
        if node.binding == "profile":
            return self.json_read(self.profile.c.attributes, node.dotted, node.type)
        if node.binding == "event":
            table, key = ctx.event, node.dotted
        elif node.binding == "alias":
            table, key = ctx.aliases[node.path[0]], ".".join(node.path[1:])
        else:
            raise ValueError(f"unchecked name {node.dotted!r}: compile only checked trees")
        return self.event_field(table, key, node.type)

    def event_field(self, table, key: str, type_: PqlType) -> ColumnElement:
        if key == "id":
            return table.c.event_id
        if key == "type":
            return table.c.type
        if key == "timestamp":
            return table.c.ts
        return self.json_read(table.c.fields, key, type_)

    # ---- calls ------------------------------------------------------------------------------

    def c_Call(self, node: ast.Call, ctx):
        function = lookup(node.function)
        form = function.sql_form(self.dialect)
        if form is None:  # require_support found it before compiling; a guard for direct use
            raise UnsupportedOnBackend(self.dialect, f"the function {function.name}() has no {self.dialect} form",
                                       node.span)
        args = []
        for arg, target in zip(node.args, function.argument_targets(node)):
            compiled = self.value(arg, ctx)
            if target == DATETIME and arg.type == DATE:  # declared by the record (DSL.md §2)
                compiled = self.to_datetime(compiled)
            args.append(compiled)
        return form(self, node, args)

    # ---- boolean structure ------------------------------------------------------------------

    def c_BoolChain(self, node: ast.BoolChain, ctx):
        operands = [self.value(o, ctx) for o in node.operands]
        return (sa.and_ if node.op == "and" else sa.or_)(*operands).self_group()

    def c_Not(self, node: ast.Not, ctx):
        return sa.not_(self.value(node.operand, ctx).self_group())

    # ---- arithmetic -------------------------------------------------------------------------

    def c_Negate(self, node: ast.Negate, ctx):
        value = self.value(node.operand, ctx)
        if self.sqlite:  # -(-2^63) is null (DSL.md §9); SQLite would make it a real
            return sa.func.pql_negate(sa.cast(value, DOUBLE) if node.type == NUMBER else value)
        if node.type == INTEGER:
            return self.bigint_or_null(-sa.cast(value, sa.Numeric))
        return (-value).self_group()

    def c_Arithmetic(self, node: ast.Arithmetic, ctx):
        operands = node.operands
        if len(operands) > _MAX_SQL_CHAIN:
            raise UnsupportedOnBackend(self.dialect, f"an arithmetic chain of {len(operands)} operands is deeper than "
                                       f"SQL parsers accept ({_MAX_SQL_CHAIN}); evaluate it in memory", node.span)
        if self.sqlite and not any(isinstance(o, ast.DurationLiteral) for o in operands):
            # the in-memory runtime's left-to-right fold: null on division by zero and outside 64
            # bits or a double's range (DSL.md §9), where SQLite would stop with "integer
            # overflow"; one call however long the chain
            # a `number` is a double, also when the data wrote a whole number there
            values = [sa.cast(self.value(o, ctx), DOUBLE) if o.type == NUMBER else self.value(o, ctx) for o in operands]
            result, rest, operators = values[0], values[1:], node.operators
            while rest:  # SQLite takes at most 127 arguments: a long chain folds in pieces
                piece, rest = rest[:100], rest[100:]
                result = sa.func.pql_arithmetic(sa.literal("".join(operators[:len(piece)])), result, *piece)
                operators = operators[len(piece):]
            return result
        if not self.sqlite and node.type == INTEGER and len(operands) > _NESTED_CHECKS:
            return self.long_integer_chain(node, ctx)
        if not self.sqlite and len(operands) > _NESTED_CHECKS and _is_decimal_chain(node):
            raise UnsupportedOnBackend(self.dialect, f"a chain of {len(operands)} decimal operands is checked for "
                                       f"overflow at every step only up to {_NESTED_CHECKS} operands on PostgreSQL; "
                                       "evaluate it in memory or on SQLite", node.span)
        pending: ast.DurationLiteral | None = operands[0] if isinstance(operands[0], ast.DurationLiteral) else None
        current = None if pending else self.value(operands[0], ctx)
        current_type = None if pending else operands[0].type
        for op, operand in zip(node.operators, operands[1:]):
            if pending is not None:
                current = self.shift(self.value(operand, ctx), operand.type, pending, +1)
                current_type, pending = operand.type, None
                continue
            if isinstance(operand, ast.DurationLiteral):
                current = self.shift(current, current_type, operand, +1 if op == "+" else -1)
                continue
            right = self.value(operand, ctx)
            both_integer = current_type == INTEGER and operand.type == INTEGER
            if self.sqlite:  # a chain with durations: the arithmetic as the runtime does it
                current = getattr(sa.func, _SQLITE_ARITHMETIC[op])(current, right)
                current_type = INTEGER if both_integer and op != "/" else NUMBER
                continue
            if op == "/":
                current = self.double_or_null("/", sa.cast(current, DOUBLE), sa.func.nullif(sa.cast(right, DOUBLE), 0))
                current_type = NUMBER
            elif op == "%":
                if both_integer:
                    current = current.op("%")(sa.func.nullif(right, 0))
                else:  # on the decimal values as written, as in memory (runtime.modulo)
                    current = sa.cast(sa.func.mod(self.as_written(current, current_type),
                                                  sa.func.nullif(self.as_written(right, operand.type), 0)), DOUBLE)
                current_type = INTEGER if both_integer else NUMBER
            elif both_integer:  # exact, then null outside 64 bits (DSL.md §9)
                current = self.bigint_or_null(sa.cast(current, sa.Numeric).op(op)(sa.cast(right, sa.Numeric)))
            else:
                current = self.double_or_null(op, current, right)
                current_type = NUMBER
            current = current.self_group()
        return current

    def double_or_null(self, op: str, left: ColumnElement, right: ColumnElement) -> ColumnElement:
        """PostgreSQL, doubles: `left op right`, null where the result would not be finite (DSL.md
        §9) — PostgreSQL stops with "value out of range: overflow" there. The guard reads each
        operand once: they are named in a derived table, so nesting does not repeat them."""
        # as doubles: abs() of a bigint -2^63 would itself be out of range
        pair = (sa.select(sa.cast(left, DOUBLE).label("x"), sa.cast(right, DOUBLE).label("y"))
                .correlate_except(None).subquery(self.fresh("g")))
        x, y = pair.c.x, pair.c.y
        largest = sa.literal(_MAX_DOUBLE, DOUBLE)
        if op in ("+", "-"):
            other = y if op == "+" else -y
            safe = sa.or_(sa.func.sign(x) != sa.func.sign(other), sa.func.abs(x) <= largest - sa.func.abs(y))
        elif op == "*":
            safe = sa.or_(sa.func.abs(x) <= 1, sa.func.abs(y) <= 1, sa.func.abs(x) <= largest / sa.func.abs(y))
        else:  # "/", y is never 0 here (nullif)
            safe = sa.or_(sa.func.abs(y) >= 1, sa.func.abs(x) <= largest * sa.func.abs(y))
        return sa.select(sa.case((safe, x.op(op)(y)), else_=sa.null())).select_from(pair).scalar_subquery()

    def long_integer_chain(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        """PostgreSQL, a long chain of integer `+`/`-`: every partial result must lie in 64 bits
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

    def shift(self, value: ColumnElement, type_: PqlType, duration: ast.DurationLiteral, sign: int,
              *, in_range: bool = True) -> ColumnElement:
        """value ± duration, calendar months and years included (DSL.md §1, §4). With
        ``in_range``, a result outside years 1–9999 is null, as in memory (the databases go on to
        year 0 and BC); a sequence's gap limit goes on (past 9999 it caps nothing)."""
        if self.sqlite:
            if duration.unit in _FIXED_SECONDS and type_ == DATETIME:
                # SQLite's own datetime() on the stored text: whole seconds, the microseconds
                # carried over unchanged (no Python call per row, which the UDF would cost)
                seconds = sign * duration.amount * _FIXED_SECONDS[duration.unit]
                shifted = sa.func.datetime(value, sa.literal(f"{seconds:+d} seconds", sa.String))
                shifted = shifted.op("||")(sa.func.substr(value, 20))
                if not in_range:
                    return shifted
                # datetime() answers null past 9999 but goes down to year 0000: that is null too
                # ('0000-99' sorts after every year-0 text and before year 1; named once)
                floor = sa.literal("0000-99", sa.String)
                return sa.func.nullif(sa.func.max(shifted, floor), floor)
            return sa.func.pql_add(value, sa.literal(duration.amount), sa.literal(duration.unit), sa.literal(sign))
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

    # ---- predicates -------------------------------------------------------------------------

    def comparable_pair(self, left: ast.Node, right: ast.Node, ctx, *, ordering: bool = True
                        ) -> tuple[ColumnElement, ColumnElement]:
        a, b = self.value(left, ctx), self.value(right, ctx)
        if {left.type, right.type} == {DATE, DATETIME}:
            if left.type == DATE:
                a = self.to_datetime(a)
            else:
                b = self.to_datetime(b)
        # Equality is byte equality under any deterministic collation; only ordering needs "C"
        # (and keeping `=` uncollated lets PostgreSQL use the (profile_pk, type, ts) index).
        if ordering and "string" in (getattr(left.type, "name", None), getattr(right.type, "name", None)):
            a = self.collated(a, left.type if left.type and left.type.name == "string" else right.type)
        return a, b

    def c_Comparison(self, node: ast.Comparison, ctx):
        a, b = self.comparable_pair(node.left, node.right, ctx, ordering=node.op not in ("=", "!="))
        return a.op(_SQL_COMPARE[node.op], is_comparison=True)(b).self_group()

    def c_InList(self, node: ast.InList, ctx):
        value = self.value(node.value, ctx)
        items = []
        for item in node.items.items:
            compiled = self.value(item, ctx)
            if node.value.type == DATETIME and item.type == DATE:
                compiled = self.to_datetime(compiled)
            items.append(compiled)
        if node.value.type == DATE and any(i.type == DATETIME for i in node.items.items):
            value = self.to_datetime(value)
        if not items:  # SQL has no empty IN list; the language says FALSE, UNKNOWN when missing
            return sa.case((value.is_(None), sa.null()), else_=sa.true() if node.negated else sa.false())
        test = value.in_(items) if not node.negated else value.not_in(items)
        return test.self_group()

    def c_Between(self, node: ast.Between, ctx):
        v_low, low = self.comparable_pair(node.value, node.low, ctx)
        v_high, high = self.comparable_pair(node.value, node.high, ctx)
        both = sa.and_(v_low.op(">=", is_comparison=True)(low), v_high.op("<=", is_comparison=True)(high)).self_group()
        return sa.not_(both) if node.negated else both

    def c_IsNull(self, node: ast.IsNull, ctx):
        value = self.value(node.value, ctx)
        return (value.is_not(None) if node.negated else value.is_(None)).self_group()

    def c_StringTest(self, node: ast.StringTest, ctx):
        a = self.value(node.value, ctx)
        if node.op == "matches":
            if self.sqlite:
                return sa.func.pql_regex(a, sa.literal(node.pattern.value, sa.String))
            return a.op("~", is_comparison=True)(sa.literal(re2_to_postgres(node.pattern.value, node.pattern.span), sa.String))
        if node.op == "like":
            if self.sqlite:  # SQLite's LIKE ignores ASCII case; the language's does not
                return sa.func.pql_like(a, sa.literal(node.pattern.value, sa.String))
            return a.like(sa.literal(node.pattern.value, sa.String), escape="\\")
        b = self.value(node.pattern, ctx)
        if node.op == "contains":
            found = sa.func.instr(a, b) if self.sqlite else sa.func.strpos(a, b)
            return (found > 0).self_group()
        if node.op == "starts with":
            head = sa.func.substr(a, 1, sa.func.length(b)) if self.sqlite else sa.func.left(a, sa.func.length(b))
            return (head == b).self_group()
        tail = (sa.func.substr(a, sa.func.length(a) - sa.func.length(b) + 1) if self.sqlite
                else sa.func.right(a, sa.func.length(b)))
        return (tail == b).self_group()

    # ---- lists ------------------------------------------------------------------------------

    def list_elements(self, list_value: ColumnElement):
        if self.sqlite:
            return sa.func.json_each(list_value).table_valued("value", "type").alias(self.fresh("je"))
        return sa.func.jsonb_array_elements_text(list_value).table_valued("value").alias(self.fresh("je"))

    def list_size(self, list_value: ColumnElement) -> ColumnElement:
        elements = self.list_elements(list_value)
        if self.sqlite:
            count = sa.select(sa.func.count()).select_from(elements).where(elements.c.type != "null")
        else:
            count = sa.select(sa.func.count()).select_from(elements).where(elements.c.value.is_not(None))
        count = count.correlate_except(elements)
        return sa.case((list_value.is_(None), sa.null()), else_=count.scalar_subquery())

    def c_Has(self, node: ast.Has, ctx):
        list_value = self.value(node.value, ctx)

        def contains(item: ColumnElement) -> ColumnElement:
            elements = self.list_elements(list_value)
            return sa.exists(sa.select(sa.literal_column("1")).select_from(elements).where(elements.c.value == item)
                             .correlate_except(elements))

        if node.op == "has":
            item = self.value(node.other, ctx)
            return sa.case((sa.or_(list_value.is_(None), item.is_(None)), sa.null()), else_=contains(item))
        items = [self.value(i, ctx) for i in node.other.items]
        if not items:
            test = sa.false() if node.op == "has any" else sa.true()
        elif node.op == "has any":
            elements = self.list_elements(list_value)
            test = sa.exists(sa.select(sa.literal_column("1")).select_from(elements).where(elements.c.value.in_(items))
                             .correlate_except(elements))
        else:
            test = sa.and_(*[contains(i) for i in items])
        return sa.case((list_value.is_(None), sa.null()), else_=test)

    # ---- segments ---------------------------------------------------------------------------

    def c_SegmentRef(self, node: ast.SegmentRef, ctx):
        # `p.pk IN (SELECT …)`: TRUE or FALSE, never UNKNOWN (DSL.md §8)
        if node.key in self.memberships_of:
            return self.profile.c.pk.in_(sa.select(memberships.c.profile_pk).where(
                memberships.c.segment_pk == sa.literal(self.memberships_of[node.key], memberships.c.segment_pk.type),
                memberships.c.status.in_(["realized", "existing"])))
        members = self.segment_cte(node)
        return self.profile.c.pk.in_(sa.select(members.c.pk))

    def segment_cte(self, node: ast.SegmentRef):
        """The members of a referenced segment as one CTE per segment and statement, compiled
        once however often (and however deep) it is referenced, so the SQL grows linearly with
        the number of segments in the reference graph, never with the number of paths through it.
        MATERIALIZED: the database computes it once too (SQLite and PostgreSQL would otherwise
        inline a CTE at each use)."""
        found = self._segment_ctes.get(node.key)
        if found is not None:
            return found
        if node.key not in self.segments:
            raise UnsupportedOnBackend(self.dialect, f'unknown segment "{node.key}": no definition was given')
        if node.key in self._segment_stack:
            raise UnsupportedOnBackend(self.dialect, f'segment "{node.key}" refers to itself')
        if len(self._segment_stack) >= MAX_SEGMENT_DEPTH or len(self._segment_ctes) >= MAX_SEGMENT_REFERENCES:
            from cdp.dsl import Diagnostic, PqlError

            limit = (f"{MAX_SEGMENT_DEPTH} segments deep" if len(self._segment_stack) >= MAX_SEGMENT_DEPTH
                     else f"{MAX_SEGMENT_REFERENCES} referenced segments")
            raise PqlError([Diagnostic("too_complex", f'the reference to segment "{node.key}" goes beyond the limit '
                                       f"of {limit}", node.span,
                                       hint="segments may reference segments, but not without end; "
                                            "flatten the chain")])
        typed = check(self.segments[node.key], self.schema)  # references resolved here, one CTE each
        outer = self.profile
        self.profile = profiles.alias(self.fresh("sp"))
        self._segment_stack.append(node.key)
        try:
            condition = self.value(typed, _Ctx())
            query = sa.select(self.profile.c.pk).where(condition)
            if self.sandbox is not None:
                query = query.where(self.profile.c.sandbox == sa.literal(self.sandbox, sa.String))
            if self.segment_scope is not None:
                query = query.where(self.segment_scope(self.profile))
        finally:
            self._segment_stack.pop()
            self.profile = outer
        cte = query.cte(self.fresh("seg")).prefix_with("MATERIALIZED")
        self._segment_ctes[node.key] = cte
        # SQLite's parser copies a CTE's SELECT into every place that names it (it then runs a
        # MATERIALIZED one once), so a graph that references segments many times over many levels
        # still multiplies there: count the copies and refuse clearly before SQLite does
        copies = 1 + sum(self._expansion.get(ref.key, 1) for ref in ast.walk(typed) if isinstance(ref, ast.SegmentRef)
                         and ref.key not in self.memberships_of)
        self._expansion[node.key] = copies
        if self.sqlite and copies > MAX_SQLITE_SEGMENT_COPIES:
            from cdp.dsl import Diagnostic, PqlError

            raise PqlError([Diagnostic("too_complex", f'segment "{node.key}" expands to {copies} copies of the '
                                       f"segments it references on SQLite (at most {MAX_SQLITE_SEGMENT_COPIES})",
                                       node.span, hint="save the segments and run them as a batch job (it reads "
                                                       "referenced segments' memberships), or use PostgreSQL")])
        return cte

    # ---- event terms ------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def window_conditions(self, table, window: ast.Node | None) -> list[ColumnElement]:
        ts = table.c.ts
        if window is None:
            return [ts <= self.as_of_param]
        if isinstance(window, (ast.WithinLast, ast.WithinPeriod)):
            if isinstance(window, ast.WithinLast):
                bounds = runtime.range_within_last(self.as_of, window.amount, window.unit)
            else:
                bounds = runtime.range_period(self.as_of, "day" if window.period == "today" else window.period)
            return self.range_conditions(ts, bounds)
        if isinstance(window, ast.FromTo):
            start = self.bound(window.start)
            end = self.bound(window.end)
            return [ts >= start, ts < end, ts <= self.as_of_param]
        bound = self.bound(window.bound)
        if isinstance(window, ast.Since):
            return [ts >= bound, ts <= self.as_of_param]
        return [ts < bound, ts <= self.as_of_param]  # before: a null bound selects nothing

    def bound(self, node: ast.Node) -> ColumnElement:
        if isinstance(node, ast.NullLiteral):  # `since null`: an empty window (DSL.md §6)
            return sa.literal(None, UtcDateTime)
        value = self.value(node, _Ctx())
        return self.to_datetime(value) if node.type == DATE else value

    def range_conditions(self, ts, bounds: runtime.Range) -> list[ColumnElement]:
        if bounds.empty:
            return [sa.false()]
        conditions = []
        if bounds.lo is not None:
            lo = self.datetime_literal(bounds.lo)
            conditions.append(ts >= lo if bounds.lo_inclusive else ts > lo)
        hi = self.datetime_literal(bounds.hi)
        conditions.append(ts <= hi if bounds.hi_inclusive else ts < hi)
        return conditions

    def filter_conditions(self, table, flt: ast.EventFilter, ctx: _Ctx, absolute: bool = True,
                          owner: ColumnElement | None = None) -> list[ColumnElement]:
        """The event is the profile's (or, in a semi-join, the previous step's profile's), in the
        window, and meets the condition. ``owner`` None: no ownership test (semi-join root)."""
        conditions = [] if owner is None else [table.c.profile_pk == owner]
        type_tests, rest = _split_type_tests(flt.condition)
        # `type = "X"` first: a scan of the (profile_pk, type, ts) index then rejects most
        # entries on the type column without decoding the timestamp (SQLite tests in order)
        conditions += [self.value(c, ctx) for c in type_tests]
        if absolute:
            conditions += self.window_conditions(table, flt.window)
        conditions += [self.value(c, ctx) for c in rest]
        return conditions

    def semi_join(self, node: ast.Node) -> bool:
        """On SQLite, an event term that reads nothing of the profile runs best as
        `p.pk IN (SELECT profile_pk FROM events …)`: SQLite builds that list once, where a
        correlated EXISTS is one lookup per profile (2× slower on a million profiles).
        PostgreSQL plans EXISTS as a semi-join itself, so it keeps the literal EXISTS."""
        if not self.sqlite:
            return False
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.binding == "profile":
                return False
            if isinstance(n, (ast.SegmentRef, ast.Aggregate)) or (n is not node and isinstance(n, (ast.Exists, ast.NoEvent))):
                return False
        return True

    def c_Exists(self, node: ast.Exists, ctx):
        table = events.alias(self.fresh("e"))
        aliases = {node.filter.alias: table} if node.filter.alias else {}
        inner = _Ctx(event=table, aliases=aliases)
        semi = self.semi_join(node)
        conditions = self.filter_conditions(table, node.filter, inner, owner=None if semi else self.profile.c.pk)
        if node.steps:
            conditions.append(self.sequence(node.steps, 0, table, dict(aliases)))
        if semi:
            return self.profile.c.pk.in_(sa.select(table.c.profile_pk).where(*conditions))
        return sa.exists(sa.select(sa.literal_column("1")).select_from(table).where(*conditions).correlate_except(table))

    def sequence(self, steps: tuple[ast.SequenceStep, ...], index: int, previous, aliases: dict) -> ColumnElement:
        step = steps[index]
        table = events.alias(self.fresh("e"))
        scope = dict(aliases)
        if step.filter.alias:
            scope[step.filter.alias] = table
        ctx = _Ctx(event=table, aliases=scope)
        # a later step is an event of the same profile as the previous step's: tied to that
        # event, not to p, so PostgreSQL can anti-join carts and purchases before reading
        # profiles (measured on 1M profiles: 1.8 s instead of 2.3 s) and SQLite can semi-join
        owner = previous.c.profile_pk
        conditions = self.filter_conditions(table, step.filter, ctx, absolute=False, owner=owner)
        conditions += [table.c.ts > previous.c.ts, table.c.ts <= self.as_of_param]
        if isinstance(step.filter.window, ast.WithinGap):
            gap = ast.DurationLiteral(step.filter.window.amount, step.filter.window.unit)
            limit = self.shift(previous.c.ts, DATETIME, gap, +1, in_range=False)
            if self.sqlite:  # past year 9999 the gap caps nothing (as in memory); SQLite says NULL there
                limit = sa.func.coalesce(limit, sa.literal("9999-12-31 23:59:59.999999", sa.String))
            conditions.append(table.c.ts <= limit)
        if index + 1 < len(steps):
            conditions.append(self.sequence(steps, index + 1, table, scope))
        found = sa.exists(sa.select(sa.literal_column("1")).select_from(table).where(*conditions).correlate_except(table))
        return sa.not_(found) if step.negated else found

    def c_NoEvent(self, node: ast.NoEvent, ctx):
        table = events.alias(self.fresh("e"))
        inner = _Ctx(event=table, aliases={node.filter.alias: table} if node.filter.alias else {})
        if self.semi_join(node):
            return self.profile.c.pk.not_in(
                sa.select(table.c.profile_pk).where(*self.filter_conditions(table, node.filter, inner, owner=None)))
        return sa.not_(sa.exists(sa.select(sa.literal_column("1")).select_from(table)
                                 .where(*self.filter_conditions(table, node.filter, inner,
                                                                owner=self.profile.c.pk)).correlate_except(table)))

    def c_Aggregate(self, node: ast.Aggregate, ctx):
        table = events.alias(self.fresh("e"))
        inner = _Ctx(event=table, aliases={node.filter.alias: table} if node.filter.alias else {})
        conditions = self.filter_conditions(table, node.filter, inner, owner=self.profile.c.pk)
        if node.function == "count":
            return sa.select(sa.func.count()).select_from(table).where(*conditions).correlate_except(table).scalar_subquery()
        key = ".".join(node.path)
        field_type = self.schema.event_type(key)
        value = self.event_field(table, key, field_type)
        fn = node.function
        if fn in ("first", "last"):
            order = [table.c.ts, self.collated(table.c.event_id, PqlType("string"))]
            if fn == "last":
                order = [o.desc() for o in order]
            query = (sa.select(value).select_from(table).where(*conditions, value.is_not(None))
                     .order_by(*order).limit(1).correlate_except(table))
            return query.scalar_subquery()
        if fn in ("sum", "avg") and not self.sqlite and field_type != INTEGER:
            return self.double_aggregate(fn, table, value, conditions)
        if fn == "sum":
            aggregate = self.exact_sum(value, field_type)
        elif fn == "avg" and self.sqlite:  # the runtime's average: an exact sum, divided (DSL.md §9)
            aggregate = sa.func.pql_avg(value)
        elif fn == "avg":
            aggregate = sa.cast(sa.func.avg(value), DOUBLE)
        elif fn == "count_distinct":
            aggregate = sa.func.count(sa.distinct(value))
        else:
            aggregate = getattr(sa.func, fn)(self.collated(value, field_type))
        return sa.select(aggregate).select_from(table).where(*conditions).correlate_except(table).scalar_subquery()

    def double_aggregate(self, fn: str, table, value: ColumnElement, conditions: list) -> ColumnElement:
        """PostgreSQL, `sum` / `avg` of doubles: sum(float8) stops with an error when a partial sum
        overflows, which cannot happen when the largest value times their number is finite; past
        that (values near 1e308) the result is null (DSL.md §9). The test needs the values' maximum
        and count beside each value, so they come from window functions in a derived table."""
        rows = (sa.select(value.label("v"), sa.func.max(sa.func.abs(value)).over().label("m"),
                          sa.func.count(value).over().label("n"))
                .select_from(table).where(*conditions).correlate_except(table).subquery(self.fresh("w")))
        fits = rows.c.m <= sa.literal(_MAX_DOUBLE, DOUBLE) / sa.func.greatest(rows.c.n, 1)
        total = sa.func.sum(sa.case((fits, rows.c.v), else_=sa.null()))
        count = sa.func.count(rows.c.v)
        if fn == "sum":
            result = sa.case((count == 0, sa.literal(0.0, DOUBLE)), (sa.func.bool_and(fits), total), else_=sa.null())
        else:
            result = sa.case((sa.func.bool_and(fits), total / sa.func.nullif(count, 0)), else_=sa.null())
        return sa.select(result).select_from(rows).scalar_subquery()

    def exact_sum(self, value: ColumnElement, field_type: PqlType) -> ColumnElement:
        """The sum of the non-null values: 0 when there are none, null when it lies outside 64 bits
        or a double's range (DSL.md §9) — never an error, whatever the order of the rows."""
        if not self.sqlite:
            if field_type == INTEGER:  # PostgreSQL sums bigints exactly, as numeric
                return self.bigint_or_null(sa.func.coalesce(sa.func.sum(value), 0))
            return sa.func.coalesce(sa.func.sum(value), 0.0)  # doubles: see double_aggregate
        if field_type != INTEGER:  # SQLite sums doubles to an infinity when they overflow
            total = sa.func.total(value)
            return sa.case((sa.func.abs(total) <= _MAX_DOUBLE, total), else_=sa.null())
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


def _split_type_tests(condition: ast.Node | None) -> tuple[list[ast.Node], list[ast.Node]]:
    """The top-level `type = "X"` conjuncts of an event condition, and the other conjuncts."""
    if condition is None:
        return [], []
    conjuncts = list(condition.operands) if isinstance(condition, ast.BoolChain) and condition.op == "and" else [condition]
    type_tests = [c for c in conjuncts if isinstance(c, ast.Comparison) and c.op == "=" and isinstance(c.left, ast.Name)
                  and c.left.binding == "event" and c.left.path == ("type",) and isinstance(c.right, ast.StringLiteral)]
    return type_tests, [c for c in conjuncts if not any(c is t for t in type_tests)]


# `in segment` chains deeper than this are too_complex: SQLAlchemy compiles nested CTEs recursively
# (about 31 Python frames a level), and a statement must compile within Python's recursion limit
MAX_SEGMENT_DEPTH = 16
MAX_SEGMENT_REFERENCES = 1000  # distinct segments one expression may reach through references
MAX_SQLITE_SEGMENT_COPIES = 2000  # SQLite refuses more than 65,535 references to one table in a statement
_FIXED_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_MAX_SQL_CHAIN = 900
_MAX_DOUBLE = 1.7976931348623157e308
_NESTED_CHECKS = 8  # integer steps checked one inside the other; longer chains see long_integer_chain  # SQLite refuses expression trees deeper than 1000


_SQLITE_ARITHMETIC = {"+": "pql_plus", "-": "pql_minus", "*": "pql_times", "/": "pql_divide", "%": "pql_mod"}


def _is_decimal_chain(node: ast.Arithmetic) -> bool:
    """A chain of decimal arithmetic (not integers only, no durations)."""
    if any(isinstance(o, ast.DurationLiteral) or (o.type is not None and not o.type.is_numeric) for o in node.operands):
        return False
    return node.type != INTEGER


# ---- public API -------------------------------------------------------------------------------


def members_query(text_or_tree: str | ast.Node, *, dialect: str, as_of: datetime, sandbox: str = "prod",
                  schema: Schema | None = None, segments: Mapping[str, str] | None = None) -> sa.Select:
    """SELECT the external ids of qualifying profiles, in load order."""
    schema = schema or luma_schema()
    catalogue = dict(segments or {})
    if isinstance(text_or_tree, ast.Node) and text_or_tree.type is not None:
        typed = text_or_tree
    else:
        typed = check(text_or_tree, schema, segments=catalogue or None)
    require_support(typed, dialect, catalogue)  # before anything runs: never a database error
    compiler = SqlCompiler(dialect, as_of, schema=schema, segments=catalogue, sandbox=sandbox)
    condition = compiler.compile(typed)
    p = compiler.profile
    return (sa.select(p.c.external_id)
            .where(p.c.sandbox == sa.literal(sandbox, sa.String), condition)
            .order_by(p.c.pk))


def evaluate(connection: sa.Connection, text_or_tree: str | ast.Node, *, as_of: datetime, sandbox: str = "prod",
             schema: Schema | None = None, segments: Mapping[str, str] | None = None) -> list[str]:
    query = members_query(text_or_tree, dialect=connection.dialect.name, as_of=as_of, sandbox=sandbox,
                          schema=schema, segments=segments)
    return [row[0] for row in connection.execute(query)]
