"""Our own typed AST for PQL.

Frozen, slotted dataclasses. Every node carries its source ``span`` and, once checked, its
``type`` and whether it can be ``nullable``; none of the three take part in equality, so
``parse(render(tree)) == tree`` compares meaning, not layout.

Chains of one operator level (``a and b and c``, ``x + y - z``) are one node with a tuple of
operands: a 64 KiB chain must not become a 20,000-deep tree that recursion cannot walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Iterator, Union

from cdp.dsl.errors import NO_SPAN, Span
from cdp.pqltypes import PqlType


@dataclass(frozen=True, slots=True)
class Node:
    span: Span = field(default=NO_SPAN, compare=False, repr=False, kw_only=True)
    type: PqlType | None = field(default=None, compare=False, repr=False, kw_only=True)
    nullable: bool = field(default=True, compare=False, repr=False, kw_only=True)

    def children(self) -> Iterator["Node"]:
        for f in fields(self):
            if f.name in ("span", "type", "nullable"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Node):
                yield value
            elif isinstance(value, tuple):
                for item in value:
                    if isinstance(item, Node):
                        yield item

    def annotated(self, **changes) -> "Node":
        return replace(self, **changes)


# ---- literals -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringLiteral(Node):
    value: str


@dataclass(frozen=True, slots=True)
class NumberLiteral(Node):
    value: int | float


@dataclass(frozen=True, slots=True)
class BooleanLiteral(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class NullLiteral(Node):
    pass


DURATION_UNITS = ("second", "minute", "hour", "day", "week", "month", "year")


@dataclass(frozen=True, slots=True)
class DurationLiteral(Node):
    amount: int
    unit: str  # singular, one of DURATION_UNITS


@dataclass(frozen=True, slots=True)
class ListLiteral(Node):
    items: tuple["Expr", ...]


# ---- names and calls ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Name(Node):
    """``a.b.c`` or ``profile.a.b.c``. The checker fills ``binding``:
    ``"profile"``, ``"event"`` (the filtered event) or ``"alias"`` (an earlier step's event,
    named by ``path[0]``)."""

    path: tuple[str, ...]
    profile_prefix: bool = False
    binding: str | None = field(default=None, compare=False, repr=False)

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Call(Node):
    function: str  # lower case
    args: tuple["Expr", ...]


# ---- operators ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoolChain(Node):
    op: str  # "and" | "or"
    operands: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: "Expr"


@dataclass(frozen=True, slots=True)
class Negate(Node):
    operand: "Expr"


@dataclass(frozen=True, slots=True)
class Arithmetic(Node):
    """``operands[0] operators[0] operands[1] …`` evaluated left to right; one precedence level
    (``+ -`` or ``* / %``) per node."""

    operands: tuple["Expr", ...]
    operators: tuple[str, ...]


# ---- predicates (DSL.md §5) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison(Node):
    left: "Expr"
    op: str  # = != < <= > >=
    right: "Expr"


@dataclass(frozen=True, slots=True)
class InList(Node):
    value: "Expr"
    items: "Expr"
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Between(Node):
    value: "Expr"
    low: "Expr"
    high: "Expr"
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    value: "Expr"
    negated: bool = False


@dataclass(frozen=True, slots=True)
class StringTest(Node):
    """``contains``, ``starts with``, ``ends with``, ``like``, ``matches``."""

    op: str
    value: "Expr"
    pattern: "Expr"


@dataclass(frozen=True, slots=True)
class Has(Node):
    """``l has v`` (op "has"), ``l has any [..]``, ``l has all [..]``."""

    op: str  # "has" | "has any" | "has all"
    value: "Expr"
    other: "Expr"


@dataclass(frozen=True, slots=True)
class SegmentRef(Node):
    key: str


# ---- events (DSL.md §6, §7) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WithinLast(Node):
    amount: int
    unit: str


@dataclass(frozen=True, slots=True)
class WithinGap(Node):
    """``within N UNIT`` on a ``then`` step: the gap after the previous step's event."""

    amount: int
    unit: str


@dataclass(frozen=True, slots=True)
class WithinPeriod(Node):
    period: str  # "today" | "week" | "month" | "year"


@dataclass(frozen=True, slots=True)
class Since(Node):
    bound: "Expr"


@dataclass(frozen=True, slots=True)
class Before(Node):
    bound: "Expr"


@dataclass(frozen=True, slots=True)
class FromTo(Node):
    start: "Expr"
    end: "Expr"


Window = Union[WithinLast, WithinGap, WithinPeriod, Since, Before, FromTo]


@dataclass(frozen=True, slots=True)
class EventFilter(Node):
    alias: str | None
    condition: "Expr | None"
    window: Window | None


@dataclass(frozen=True, slots=True)
class SequenceStep(Node):
    """``then event …`` or, with ``negated``, ``then no event …`` (last step only)."""

    negated: bool
    filter: EventFilter


@dataclass(frozen=True, slots=True)
class Exists(Node):
    filter: EventFilter
    steps: tuple[SequenceStep, ...] = ()


@dataclass(frozen=True, slots=True)
class NoEvent(Node):
    filter: EventFilter


AGGREGATES = ("count", "count_distinct", "sum", "avg", "min", "max", "first", "last")


@dataclass(frozen=True, slots=True)
class Aggregate(Node):
    """``count(FILTER)`` (path is None) or ``func(event.PATH [where …] [window])``."""

    function: str
    path: tuple[str, ...] | None
    filter: EventFilter
    path_span: Span = field(default=NO_SPAN, compare=False, repr=False)
    # the aggregated event field's type, set by the checker (count_distinct of a `number` field
    # counts doubles, so the in-memory engine needs it beside the result's type)
    field_type: PqlType | None = field(default=None, compare=False, repr=False, kw_only=True)


Expr = Union[
    StringLiteral, NumberLiteral, BooleanLiteral, NullLiteral, DurationLiteral, ListLiteral,
    Name, Call, BoolChain, Not, Negate, Arithmetic, Comparison, InList, Between, IsNull,
    StringTest, Has, SegmentRef, Exists, NoEvent, Aggregate,
]


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children, without recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(current.children())))


def segment_references(node: Node) -> set[str]:
    return {n.key for n in walk(node) if isinstance(n, SegmentRef)}
