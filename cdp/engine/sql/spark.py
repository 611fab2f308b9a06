"""Apache Spark: what differs from the common compiler (cdp.engine.sql.base).

Spark reads the Parquet snapshots (cdp/snapshots) as DuckDB does: profile attributes and event
fields are JSON text, read by ``get_json_object`` with a bracketed key (any key but one holding a
quote), or from the snapshot's typed columns (``a.<key>``, ``f.<key>``; a list attribute's
``a.<key>`` holds its elements as text) where it has them; datetimes are ``TIMESTAMP``s in a session
whose time zone is UTC. The session runs in ANSI mode (Spark's default since 4.0, set explicitly):
an overflow or a bad cast the compiler did not foresee stops the query with an error rather than
wrapping around silently; where the language says null (DSL.md §9) the compiler asks for it —
``try_add``, ``try_subtract``, ``try_multiply``, ``try_cast``, exact sums in DECIMAL(38, 0). Strings
compare by UTF-8 bytes (code point order) and LIKE is case-sensitive, as the language wants; Java's
regular expressions differ from RE2 in small ways, translated or refused
(cdp.engine.sql.spark_regex). Lists are the snapshot's list columns, or JSON arrays decoded by
``from_json``, tested with array functions. A correlated scalar subquery must aggregate on Spark, so
``first``/``last`` are ``min_by``/``max_by`` over (timestamp, id). What has no native form
(upper/lower by the simple case mapping, decimal `%` and `round` on the values as written) runs the
language's Python as ``pql_*`` functions registered on the session (cdp.engine.sql.spark_session),
as on SQLite and DuckDB.
"""

from __future__ import annotations

from datetime import timezone

import sqlalchemy as sa
from sqlalchemy.engine import default
from sqlalchemy.sql import compiler as sql_compiler
from sqlalchemy.sql.elements import ColumnElement

from cdp.dsl import ast, runtime
from cdp.dsl.type_rules import compared_as_doubles
from cdp.engine.sql.base import DOUBLE, FIXED_SECONDS, MAX_DOUBLE, SqlCompiler, _Ctx
from cdp.engine.sql.duckdb import typed_column_name
from cdp.engine.sql.grouped import GroupedAggregates
from cdp.engine.sql.postgresql import _NESTED_CHECKS, _is_decimal_chain
from cdp.engine.sql.spark_regex import like_for_spark, re2_to_java
from cdp.engine.support import UnsupportedOnBackend
from cdp.pqltypes import DATE, DATETIME, INTEGER, NUMBER, PqlType, list_of
from cdp.storage.models import events

_TYPED_READS = {"integer": sa.BigInteger, "number": DOUBLE, "boolean": sa.Boolean, "date": sa.Date,
                "datetime": sa.DateTime}
_ELEMENT_TYPES = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
                  "datetime": "TIMESTAMP"}
_UNITS = {"second": "SECOND", "minute": "MINUTE", "hour": "HOUR", "day": "DAY", "week": "WEEK",
          "month": "MONTH", "year": "YEAR"}
# a shift by more than this many seconds (or months) leaves years 1–9999 from anywhere in them;
# Spark's own timestamp arithmetic would stop with an overflow long before the language's null
_MAX_SECONDS = 10_000 * 366 * 86400
_MAX_MONTHS = 10_000 * 12
_MAX_SPARK_CHAIN = 120  # Spark's parser and analyzer recurse per nested call


def json_path(key: str) -> str:
    """The JSONPath of one key as Spark's ``get_json_object`` reads it: bracketed, so dots and
    spaces are part of the key; Spark's path parser has no escape for a quote inside."""
    return f"$['{key}']"


class SparkCompiler(GroupedAggregates, SqlCompiler):
    name = "spark"
    # key → type of the profiles relation's typed attribute columns ("a.<key>") and of the events
    # relation's typed event-field columns ("f.<key>"): the snapshot export wrote each as DuckDB's
    # read of the JSON (cdp.snapshots.flat), so a column holds what DuckDB's query reads; Spark
    # reads it instead of get_json_object + cast (spark_session says which columns a relation has)
    flat: dict[str, str] = {}
    flat_events: dict[str, str] = {}
    TRANSFORMS = {
        **SqlCompiler.TRANSFORMS,
        "position": lambda a, b: sa.func.instr(a, b),
    }

    # ---- values -----------------------------------------------------------------------------

    def c_NumberLiteral(self, node, ctx):
        # a parameter holding a small int is an INT on Spark: typed, so sums stay 64-bit
        if isinstance(node.value, int):
            return sa.cast(sa.literal(node.value, sa.BigInteger), sa.BigInteger)
        return sa.literal(node.value, DOUBLE)

    def typed_column(self, document, key: str, type_: PqlType) -> ColumnElement | None:
        """The typed column holding this key with this type: of ``attributes`` of a profiles
        alias, or of ``fields`` of an events alias (never a derived table's)."""
        name = typed_column_name(self, document, key, type_)
        if name is None:
            return None
        name = name.replace("`", "``")
        # a list attribute's column holds its elements as text (array<string>): array_of decodes nothing
        kind = sa.ARRAY(sa.String) if type_.is_list else _TYPED_READS.get(type_.name, sa.String)
        return sa.literal_column(f"{document.table.name}.`{name}`", kind)

    def json_read(self, document, key, type_):
        column = self.typed_column(document, key, type_)
        if column is not None:
            return column
        if "'" in key:
            raise UnsupportedOnBackend(self.dialect, f"the key {key!r} holds a quote, which Spark's JSON paths "
                                                     "cannot name; evaluate on DuckDB or in the database")
        text = sa.func.get_json_object(document, sa.literal(json_path(key), sa.String))
        if type_.is_list:
            return text
        target = _TYPED_READS.get(type_.name)
        return sa.cast(text, target) if target is not None else text

    def date_literal(self, value):
        # as text: py4j hands a date parameter to Java by strftime, which writes year 1 as "1"
        return sa.cast(sa.literal(value.isoformat(), sa.String), sa.Date)

    def datetime_literal(self, value):
        # as UTC text too: py4j hands a datetime to Java as a java.sql.Timestamp, whose calendar
        # is Julian before 1582 (Spark's is the proleptic Gregorian, as Python's)
        text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
        return sa.cast(sa.literal(text, sa.String), sa.DateTime)

    def to_datetime(self, value):
        return sa.cast(value, sa.DateTime)

    # ---- arithmetic: null outside 64 bits or a double's range (DSL.md §9) --------------------

    def bigint_or_null(self, value: ColumnElement) -> ColumnElement:
        return sa.try_cast(value, sa.BigInteger)

    def double_or_null(self, value: ColumnElement) -> ColumnElement:
        """A double, null where it is ±infinity or NaN (Spark orders NaN above every number)."""
        return sa.case((sa.func.abs(value) <= sa.literal(MAX_DOUBLE, DOUBLE), value), else_=sa.null())

    def negate(self, value, type_):
        if type_ == INTEGER:
            return sa.func.try_subtract(sa.cast(sa.literal(0, sa.BigInteger), sa.BigInteger), value)
        return (-value).self_group()

    def arithmetic(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        if node.type == INTEGER and len(node.operands) > _NESTED_CHECKS and not set(node.operators) - {"+", "-"}:
            return self.long_integer_chain(node, ctx)
        if len(node.operands) > _MAX_SPARK_CHAIN:
            raise UnsupportedOnBackend(self.dialect, f"an arithmetic chain of {len(node.operands)} operands nests "
                                       f"deeper than Spark's analyzer takes ({_MAX_SPARK_CHAIN}); evaluate it on "
                                       "DuckDB or in memory", node.span)
        if len(node.operands) > _NESTED_CHECKS and _is_decimal_chain(node):
            raise UnsupportedOnBackend(self.dialect, f"a chain of {len(node.operands)} decimal operands is checked "
                                       f"for overflow at every step only up to {_NESTED_CHECKS} operands on Spark; "
                                       "evaluate it in memory or on SQLite", node.span)
        return super().arithmetic(node, ctx)

    def long_integer_chain(self, node: ast.Arithmetic, ctx) -> ColumnElement:
        """A long chain of integer `+`/`-` (as on DuckDB): the signed terms as one array of
        DECIMAL(38, 0), folded left to right; null once a term is null or a partial sum leaves 64
        bits. A try_add per step would nest too deep for Spark's parser."""
        terms = [sa.cast(self.value(node.operands[0], ctx), sa.Numeric(38, 0))]
        for op, operand in zip(node.operators, node.operands[1:]):
            term = sa.cast(self.value(operand, ctx), sa.Numeric(38, 0))
            terms.append(-term if op == "-" else term)
        step = (f"(pqla, pqlx) -> CASE WHEN pqla + pqlx BETWEEN {runtime.INT_MIN} AND {runtime.INT_MAX} "
                "THEN pqla + pqlx END")
        total = sa.func.aggregate(sa.func.array(*terms), sa.cast(sa.literal_column("0"), sa.Numeric(38, 0)),
                                  sa.literal_column(step))
        return sa.try_cast(total, sa.BigInteger)

    def arithmetic_step(self, op, left, left_type, right, right_type):
        both_integer = left_type == INTEGER and right_type == INTEGER
        if op == "/":
            result = self.double_or_null(sa.cast(left, DOUBLE).op("/")(sa.func.nullif(sa.cast(right, DOUBLE), 0.0)))
        elif op == "%":
            if both_integer:  # Java's remainder: the sign of the left operand, as the language's
                result = left.op("%")(sa.func.nullif(right, sa.cast(sa.literal(0, sa.BigInteger), sa.BigInteger)))
            else:  # on the decimal values as written, as in memory (runtime.modulo)
                result = sa.func.pql_mod(sa.cast(left, DOUBLE), sa.cast(right, DOUBLE))
        elif both_integer:
            result = {"+": sa.func.try_add, "-": sa.func.try_subtract, "*": sa.func.try_multiply}[op](left, right)
        else:
            result = self.double_or_null(sa.cast(left, DOUBLE).op(op)(sa.cast(right, DOUBLE)))
        return result.self_group()

    # ---- calendar -----------------------------------------------------------------------------

    def shift(self, value, type_, duration, sign, *, in_range=True):
        amount = int(duration.amount) * sign
        unit = _UNITS[duration.unit]
        too_far = (abs(amount) * FIXED_SECONDS[duration.unit] > _MAX_SECONDS if duration.unit in FIXED_SECONDS
                   else abs(amount) * (12 if duration.unit == "year" else 1) > _MAX_MONTHS)
        kind = sa.Date if type_ == DATE else sa.DateTime
        if too_far:
            if in_range:  # out of years 1–9999 from anywhere: null (and null stays null)
                return sa.cast(sa.null(), kind)
            # a gap limit past year 9999 caps nothing: any far enough instant will do
            amount, unit = (1 if amount > 0 else -1) * 10_001, "YEAR"
        shifted = sa.func.timestampadd(sa.literal_column(unit), sa.literal_column(str(amount)),
                                       sa.cast(value, sa.DateTime))
        shifted = sa.cast(shifted, kind)
        if not in_range:
            return shifted
        # years 1–9999 only (Spark goes on): clamped just outside, and those two ends are null
        if type_ == DATE:
            above = sa.func.date_add(sa.literal_column("DATE'9999-12-31'"), 1)
            below = sa.func.date_sub(sa.literal_column("DATE'0001-01-01'"), 1)
        else:
            above = sa.func.timestampadd(sa.literal_column("DAY"), 1, sa.literal_column("TIMESTAMP'9999-12-31 00:00:00'"))
            below = sa.func.timestampadd(sa.literal_column("MICROSECOND"), -1,
                                         sa.literal_column("TIMESTAMP'0001-01-01 00:00:00'"))
        return sa.func.nullif(sa.func.nullif(sa.func.greatest(sa.func.least(shifted, above), below), above), below)

    # ---- strings ------------------------------------------------------------------------------

    def regex_match(self, value, pattern):
        return value.op("RLIKE", is_comparison=True)(sa.literal(re2_to_java(pattern.value, pattern.span), sa.String))

    def like(self, value, pattern):
        return value.like(sa.literal(like_for_spark(pattern.value), sa.String), escape="!")

    # ---- lists: the snapshot's list column, or JSON arrays decoded; array functions ------------

    def array_of(self, list_value: ColumnElement, type_: PqlType | None) -> ColumnElement:
        """The list's elements as an array of the element type. A list attribute's column in the
        snapshot (typed_column: ``a.<key>``, array<string>) holds what ``from_json`` decodes here
        from the JSON text: read as it is, no document parsed per profile per test."""
        if isinstance(list_value.type, sa.ARRAY):
            elements = list_value
        else:
            elements = sa.func.from_json(list_value, sa.literal_column("'array<string>'"))
        element = _ELEMENT_TYPES.get(type_.element.name) if type_ is not None and type_.element is not None else None
        if element is None:
            return elements
        return sa.func.transform(elements, sa.literal_column(f"pqlx -> CAST(pqlx AS {element})"))

    def list_elements(self, list_value):
        """The common answer's table of elements (c_Has and list_size here use array functions
        instead: a correlated generator in FROM needs LATERAL on Spark)."""
        return (sa.func.explode(self.array_of(list_value, None)).table_valued("value").render_derived()
                .alias(self.fresh("je")))

    def present_element(self, elements):
        return elements.c.value.is_not(None)

    def list_size(self, list_value):
        present = sa.func.filter(self.array_of(list_value, None), sa.literal_column("pqlx -> pqlx IS NOT NULL"))
        return sa.case((list_value.is_(None), sa.null()), else_=sa.cast(sa.func.size(present), sa.BigInteger))

    def c_Has(self, node: ast.Has, ctx):
        list_value = self.value(node.value, ctx)
        element_type = node.value.type.element if node.value.type is not None and node.value.type.is_list else None
        other_type = node.other.type if node.op == "has" else node.other.type.element
        doubles = compared_as_doubles(element_type, other_type)
        # elements as doubles when an integer meets a number; a list of dates tested for a
        # datetime as midnights (the session's time zone is UTC), as `=` takes a date
        as_type = (list_of(NUMBER) if doubles else
                   list_of(DATETIME) if (element_type, other_type) == (DATE, DATETIME) else node.value.type)
        array = self.array_of(list_value, as_type)

        def item_value(item: ast.Node) -> ColumnElement:
            compiled = self.value(item, ctx)
            if doubles:
                return self.as_double(item, compiled)
            if (element_type, item.type) == (DATETIME, DATE):
                return self.to_datetime(compiled)
            return compiled

        def contains(item: ColumnElement) -> ColumnElement:  # FALSE for a null item (no element equals it)
            return sa.func.coalesce(sa.func.array_position(array, item) > 0, sa.false())

        if node.op == "has":
            item = item_value(node.other)
            return sa.case((sa.or_(list_value.is_(None), item.is_(None)), sa.null()),
                           else_=sa.func.array_position(array, item) > 0)
        items = [item_value(i) for i in node.other.items]
        if not items:
            test = sa.false() if node.op == "has any" else sa.true()
        elif node.op == "has any":
            test = sa.or_(*[contains(i) for i in items])
        else:
            test = sa.and_(*[contains(i) for i in items])
        return sa.case((list_value.is_(None), sa.null()), else_=test)

    # ---- sequences: one join, as Spark resolves only the immediately enclosing query ---------

    def c_Name(self, node: ast.Name, ctx):
        if node.binding == "alias":
            level = self._levels.get(id(ctx.aliases.get(node.path[0])), 0)
        else:
            level = 0 if node.binding == "profile" else self._level
        if self._level - level > 1:
            raise UnsupportedOnBackend(self.dialect, f"{node.dotted!r} is read inside a `then no event` step from "
                                       "two queries out, which Spark cannot resolve; evaluate it on DuckDB or in "
                                       "the database", node.span)
        return super().c_Name(node, ctx)

    @property
    def _levels(self) -> dict:
        return self.__dict__.setdefault("_level_of", {})

    @property
    def _level(self) -> int:
        return self.__dict__.get("_depth", 0)

    def semi_join(self, node):
        """An `exists event` that reads nothing of the profile runs as `p.pk IN (SELECT profile_pk
        …)`, which Spark plans as a LEFT SEMI join of the profiles to the events found once for
        all profiles (a `then no event` inside: a LEFT ANTI join of those events to the later
        ones). Correlated, Spark first joins every profile to its events and tests the sequence
        per pair: the cart abandoners took 1.5× the hand-written query, which drives from the
        carts as this does. `no event` stays a NOT EXISTS (a LEFT ANTI join; NOT IN would be
        Spark's null-aware anti-join, a nested loop)."""
        return isinstance(node, ast.Exists) and self.independent_of_profile(node)

    def c_BoolChain(self, node: ast.BoolChain, ctx):
        """`and`: the event terms that run as semi-joins first. Spark joins a filter's subqueries
        in the order of its conjuncts, each to what the ones before left: the cart abandoners'
        `exists event as cart … then no event …` first leaves a few hundred profiles for the
        attribute-reading `exists event` (a join testing JSON per (profile, event) pair), where
        in the order written that join runs over every profile with a tier (1.5× the
        hand-written query, which names the carts first). AND commutes in SQL's three-valued
        logic, and Spark promises no order of evaluation anyway. An aggregate comparison run as
        `p.pk IN (…)` (cdp.engine.sql.grouped) counts as a semi-join."""
        self.deciding_operands(node)
        if node.op != "and":
            return super().c_BoolChain(node, ctx)
        ordered = sorted(node.operands, key=lambda o: not ((isinstance(o, ast.Exists) and self.semi_join(o))
                                                          or self.grouped_semi_join(o)))
        return sa.and_(*[self.value(o, ctx) for o in ordered]).self_group()

    def c_Exists(self, node: ast.Exists, ctx):
        """`event … then event …`: the steps up to a `then no event` are one join in one EXISTS
        (the same question as nested EXISTS: existence commutes), a `then no event` one NOT
        EXISTS over its step and the steps after it."""
        if not node.steps:
            return super().c_Exists(node, ctx)
        semi = self.semi_join(node)
        table = events.alias(self.fresh("e"))
        aliases = {node.filter.alias: table} if node.filter.alias else {}
        self.__dict__["_depth"] = self._level + 1
        try:
            for t in aliases.values():
                self._levels[id(t)] = self._level
            conditions = self.filter_conditions(table, node.filter, _Ctx(event=table, aliases=aliases),
                                                owner=None if semi else self.profile.c.pk)
            tables = [table]
            self.chain(node.steps, 0, table, dict(aliases), tables, conditions)
        finally:
            self.__dict__["_depth"] = self._level - 1
        if semi:
            return self.profile.c.pk.in_(sa.select(table.c.profile_pk).select_from(*tables).where(*conditions))
        return sa.exists(sa.select(sa.literal_column("1")).select_from(*tables).where(*conditions)
                         .correlate_except(*tables))

    def chain(self, steps, index: int, previous, aliases: dict, tables: list, conditions: list) -> None:
        if index >= len(steps):
            return
        step = steps[index]
        table = events.alias(self.fresh("e"))
        scope = dict(aliases)
        if step.negated:
            self.__dict__["_depth"] = self._level + 1
        try:
            if step.filter.alias:
                scope[step.filter.alias] = table
                self._levels[id(table)] = self._level
            own = self.filter_conditions(table, step.filter, _Ctx(event=table, aliases=scope), absolute=False,
                                         owner=previous.c.profile_pk)
            own += [table.c.ts > previous.c.ts, table.c.ts <= self.as_of_param]
            if isinstance(step.filter.window, ast.WithinGap):
                gap = ast.DurationLiteral(step.filter.window.amount, step.filter.window.unit)
                own.append(table.c.ts <= self.gap_limit(previous.c.ts, gap))
            if not step.negated:
                tables.append(table)
                conditions.extend(own)
                self.chain(steps, index + 1, table, scope, tables, conditions)
                return
            inner_tables = [table]
            self.chain(steps, index + 1, table, scope, inner_tables, own)
        finally:
            if step.negated:
                self.__dict__["_depth"] = self._level - 1
        conditions.append(sa.not_(sa.exists(sa.select(sa.literal_column("1")).select_from(*inner_tables)
                                            .where(*own).correlate_except(*inner_tables))))

    # ---- aggregates: a correlated scalar subquery must aggregate on Spark ---------------------

    def c_Aggregate(self, node: ast.Aggregate, ctx):
        if node.function not in ("first", "last"):
            return super().c_Aggregate(node, ctx)
        table = events.alias(self.fresh("e"))
        inner = _Ctx(event=table, aliases={node.filter.alias: table} if node.filter.alias else {})
        conditions = self.filter_conditions(table, node.filter, inner, owner=self.profile.c.pk)
        key = ".".join(node.path)
        value = self.event_field(table, key, self.schema.event_type(key))
        pick = sa.func.min_by if node.function == "first" else sa.func.max_by
        order = sa.func.struct(table.c.ts, table.c.event_id)  # by time, then id by code point
        return (sa.select(pick(value, order)).select_from(table).where(*conditions, value.is_not(None))
                .correlate_except(table).scalar_subquery())

    def sum_or_avg_parts(self, fn, value, field_type):
        if field_type == INTEGER:
            exact = sa.func.sum(sa.cast(value, sa.Numeric(38, 0)))
            if fn == "sum":  # exact in DECIMAL(38, 0); null outside 64 bits
                return sa.try_cast(sa.func.coalesce(exact, 0), sa.BigInteger), None
            return sa.cast(exact, DOUBLE) / sa.func.nullif(sa.cast(sa.func.count(value), DOUBLE), 0.0), None
        if fn == "sum":
            return self.double_or_null(sa.func.coalesce(sa.func.sum(value), sa.literal(0.0, DOUBLE))), None
        return self.double_or_null(sa.func.avg(value)), None

    def sum_or_avg(self, fn, table, value, field_type, conditions):
        aggregate, _ = self.sum_or_avg_parts(fn, value, field_type)
        return sa.select(aggregate).select_from(table).where(*conditions).correlate_except(table).scalar_subquery()


# ---- SQL text: Spark's spelling of what the compiler builds ------------------------------------


class _SparkTypes(sql_compiler.GenericTypeCompiler):
    def visit_string(self, type_, **kw):
        return "STRING"

    visit_VARCHAR = visit_unicode = visit_text = visit_string

    def visit_float(self, type_, **kw):
        return "DOUBLE"

    def visit_big_integer(self, type_, **kw):
        return "BIGINT"

    def visit_datetime(self, type_, **kw):
        return "TIMESTAMP"

    visit_DATETIME = visit_TIMESTAMP = visit_datetime

    def visit_numeric(self, type_, **kw):
        return f"DECIMAL({type_.precision or 38}, {type_.scale or 0})"


class _SparkStatements(sql_compiler.SQLCompiler):
    def _generate_prefixes(self, stmt, prefixes, **kw):
        # `AS MATERIALIZED`: Spark has no such hint (it plans a CTE used twice once anyway)
        return super()._generate_prefixes(stmt, [p for p in prefixes if str(p[0]) != "MATERIALIZED"], **kw)

    def visit_try_cast(self, element, **kw):
        return f"try_cast({self.process(element.clause, **kw)} AS {self.process(element.typeclause, **kw)})"

    def visit_true(self, expr, **kw):
        return "true"

    def visit_false(self, expr, **kw):
        return "false"


class _SparkIdentifiers(sql_compiler.IdentifierPreparer):
    def __init__(self, dialect):
        super().__init__(dialect, initial_quote="`", escape_quote="`")


class SparkDialect(default.DefaultDialect):
    """Renders the compiler's query as Spark SQL with named parameter markers (``:name``), which
    ``SparkSession.sql(text, args=…)`` binds: nothing the user wrote is spliced into the text."""

    name = "spark"
    paramstyle = "named"
    positional = False
    supports_native_boolean = True
    supports_statement_cache = False
    statement_compiler = _SparkStatements
    type_compiler_cls = _SparkTypes
    preparer = _SparkIdentifiers

    def __init__(self, **kwargs):
        super().__init__(paramstyle="named", **kwargs)
