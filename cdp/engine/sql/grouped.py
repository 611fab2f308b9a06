"""An event aggregate compared to a constant, as one pre-aggregation of the events per profile
(DuckDB and Spark; issue 21).

The common compiler reads ``sum(event.order.total where …) > 1000`` as a scalar subquery
correlated to the profile. DuckDB and Spark decorrelate it into an aggregate over every profile
joined back to the profiles, where the query a user writes groups only the matching events and
keeps the groups that pass (``GROUP BY profile_pk HAVING …``): on DuckDB the correlated form took
1.7–2.6× the hand-written query (bench/RESULTS.md, issue 21, session 8). This mixin compiles
such a comparison, where it decides membership, as

- ``p.pk IN (SELECT profile_pk FROM <per-profile aggregate> WHERE <comparison>)`` when the
  comparison is not TRUE for a profile without matching events, or
- ``NOT EXISTS (SELECT 1 FROM <per-profile aggregate> g WHERE g.profile_pk = p.pk AND NOT
  coalesce(<comparison>, FALSE))`` when it is (``count(…) < 3``: a profile without such events
  qualifies), an anti-join.

Exact where it applies, by DSL.md §6 and §9:

- The per-profile aggregate has a row for every profile with at least one matching event, and its
  value there is the scalar subquery's (the same dialect expression: sum 0 over null values only,
  avg/min/max null, null outside 64 bits). A profile without matching events has no row; the
  aggregate over no events is 0 (count, count_distinct, sum) or null (avg, min, max), so the
  comparison on it is a constant decided here: the other side must be a number literal for
  count/count_distinct/sum (avg/min/max: null, so UNKNOWN whatever the other side).
- Both forms are TRUE or FALSE, where the comparison may be UNKNOWN (a sum outside 64 bits, an
  avg of null values, a comparison with null): they are used only where UNKNOWN and FALSE mean
  the same, a "deciding" position — the condition of a segment and the operands of `and`/`or`
  in such a position (an `and`/`or` is TRUE exactly when it is with each UNKNOWN operand read
  as FALSE). Under `not`, inside arithmetic, `is null` or a function, the scalar form stays.
- The events read must not depend on the profile (no profile attribute in the condition or the
  window, no segment, no nested event term), and the other side neither: they are computed once
  for all profiles.
"""

from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from cdp.dsl import ast
from cdp.engine.sql.base import _Ctx
from cdp.storage.models import events

_GROUPED_FUNCTIONS = frozenset({"count", "count_distinct", "sum", "avg", "min", "max"})
_ZERO_ON_EMPTY = frozenset({"count", "count_distinct", "sum"})  # the others: null (DSL.md §6)
_FLIPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_HOLDS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
          "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def reads_profile(node: ast.Node) -> bool:
    """Whether a subtree reads the profile at hand: an attribute, a segment, an event term."""
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and n.binding == "profile":
            return True
        if isinstance(n, (ast.SegmentRef, ast.Aggregate, ast.Exists, ast.NoEvent)):
            return True
    return False


def _number(node: ast.Node) -> int | float | None:
    if isinstance(node, ast.NumberLiteral):
        return node.value
    if isinstance(node, ast.Negate) and isinstance(node.operand, ast.NumberLiteral):
        return -node.operand.value
    return None


def grouped_shape(node: ast.Node) -> tuple[ast.Aggregate, bool] | None:
    """(the aggregate, whether the comparison is TRUE over no matching events) of a comparison
    this mixin can group, else None."""
    if not isinstance(node, ast.Comparison):
        return None
    for aggregate, other, op in ((node.left, node.right, node.op), (node.right, node.left, _FLIPPED[node.op])):
        if not isinstance(aggregate, ast.Aggregate) or aggregate.function not in _GROUPED_FUNCTIONS:
            continue
        if reads_profile(aggregate.filter) or reads_profile(other):
            return None
        if aggregate.function not in _ZERO_ON_EMPTY:
            return aggregate, False  # null over no events: UNKNOWN, not TRUE
        constant = _number(other)
        if constant is None:
            return None
        return aggregate, _HOLDS[op](0, constant)
    return None


class GroupedAggregates:
    """Mixed into a SqlCompiler subclass before it; the dialect gives ``sum_or_avg_parts``."""

    def sum_or_avg_parts(self, fn: str, value: ColumnElement, field_type
                         ) -> tuple[ColumnElement, Callable[[ColumnElement], ColumnElement] | None]:
        """The `sum`/`avg` aggregate over the matching events, and what is applied to its column
        from outside the grouping (None: nothing), together the dialect's `sum_or_avg`."""
        raise NotImplementedError

    @property
    def _deciding(self) -> dict[int, ast.Node]:
        # id → node (kept alive, so an id is never reused for another node while it is here)
        return self.__dict__.setdefault("_deciding_nodes", {})

    @property
    def _substituted(self) -> dict[int, ColumnElement]:
        return self.__dict__.setdefault("_substituted_values", {})

    def condition(self, tree: ast.Node) -> ColumnElement:
        self._deciding[id(tree)] = tree
        return super().condition(tree)

    def deciding_operands(self, node: ast.BoolChain) -> None:
        """An `and`/`or` in a deciding position passes it on to its operands."""
        if id(node) in self._deciding:
            for operand in node.operands:
                self._deciding[id(operand)] = operand

    def grouped(self, node: ast.Node) -> tuple[ast.Aggregate, bool] | None:
        """The grouped form's shape, when ``node`` sits in a deciding position."""
        return grouped_shape(node) if id(node) in self._deciding else None

    def grouped_semi_join(self, node: ast.Node) -> bool:
        """Whether ``node`` compiles to `p.pk IN (…)` here (a semi-join a dialect may put first)."""
        shape = self.grouped(node)
        return shape is not None and not shape[1]

    def value(self, node: ast.Node, ctx: _Ctx) -> ColumnElement:
        found = self._substituted.get(id(node))
        return found if found is not None else super().value(node, ctx)

    def c_Comparison(self, node: ast.Comparison, ctx):
        shape = self.grouped(node)
        if shape is None:
            return super().c_Comparison(node, ctx)
        aggregate, true_when_empty = shape
        per_profile, value = self.per_profile(aggregate)
        self._substituted[id(aggregate)] = value
        try:
            comparison = super().c_Comparison(node, ctx)
        finally:
            del self._substituted[id(aggregate)]
        if not true_when_empty:
            return self.profile.c.pk.in_(sa.select(per_profile.c.profile_pk).where(comparison))
        failing = sa.not_(sa.func.coalesce(comparison, sa.false()))
        return sa.not_(sa.exists(sa.select(sa.literal_column("1")).select_from(per_profile)
                                 .where(per_profile.c.profile_pk == self.profile.c.pk, failing)
                                 .correlate_except(per_profile)))

    def per_profile(self, node: ast.Aggregate) -> tuple[Any, ColumnElement]:
        """The matching events grouped by profile (a derived table: profile_pk, v), and the
        aggregate's value read from it."""
        table = events.alias(self.fresh("e"))
        inner = _Ctx(event=table, aliases={node.filter.alias: table} if node.filter.alias else {})
        conditions = self.filter_conditions(table, node.filter, inner, owner=None)
        finish = None
        if node.function == "count":
            aggregate = sa.func.count()
        else:
            key = ".".join(node.path)
            field_type = self.schema.event_type(key)
            value = self.event_field(table, key, field_type)
            if node.function in ("sum", "avg"):
                aggregate, finish = self.sum_or_avg_parts(node.function, value, field_type)
            elif node.function == "count_distinct":
                aggregate = sa.func.count(sa.distinct(value))
            else:
                aggregate = getattr(sa.func, node.function)(self.collated(value, field_type))
        grouped = (sa.select(table.c.profile_pk, aggregate.label("v")).select_from(table).where(*conditions)
                   .group_by(table.c.profile_pk).subquery(self.fresh("g")))
        return grouped, grouped.c.v if finish is None else finish(grouped.c.v)
