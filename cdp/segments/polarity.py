"""Which way a segment's answer can move when a profile only gains events, from its checked tree:
streaming evaluation (cdp/segments/streaming.py) skips a segment for a record that only adds
events when the profile is a member of it and its answer is *monotone* (more events never make
TRUE into not-TRUE), or is not a member and its answer is *antitone* (more events never make
not-TRUE into TRUE).

**What is compared.** Fix the instant ``t`` and the profile's attributes; let E ⊆ E' be the
profile's events before and after a record that only adds events (no attribute, no merge, no
deletion). An expression's value at ``t`` is a function of the event set. Membership is "the
answer is TRUE" (DSL.md §9: only TRUE qualifies), so for a boolean expression two two-valued
predicates are tracked: ``T(e)`` = "e is TRUE" and ``F(e)`` = "e is FALSE" (UNKNOWN is neither).
Each gets a :data:`Sign`: CONSTANT (the same for E and E'), MONOTONE (true for E ⇒ true for E'),
ANTITONE (true for E' ⇒ true for E), or UNKNOWN. Tracking ``F`` beside ``T`` is what makes
``not`` exact under SQL's three-valued logic: ``T(not e) = F(e)``, ``F(not e) = T(e)``; Kleene's
``and``/``or`` are ``T(a and b) = T(a) ∧ T(b)``, ``F(a and b) = F(a) ∨ F(b)`` (dually for
``or``), and a conjunction or disjunction of predicates with one sign keeps it (CONSTANT joins
with anything; MONOTONE with ANTITONE is UNKNOWN). A segment is monotone when ``T(root)`` is
MONOTONE or CONSTANT, antitone when it is ANTITONE or CONSTANT.

**Event filters.** A filter admits an event by the event's own values, the profile's attributes,
the instant and earlier steps' aliases — never by the other events — when its condition and
window hold no event term and no segment reference (DSL.md §6 forbids event terms in a
``where``; a bound is checked too). Such a filter admits, from E', a superset of what it admits
from E. Otherwise every term over it is UNKNOWN.

* ``exists F`` (and a sequence whose steps are all positive: the events that satisfied every step
  in order still do — DSL.md §7 "some choice of events") is never UNKNOWN: ``T`` MONOTONE,
  ``F`` ANTITONE; ``no F`` the reverse. A sequence ending in ``then no event`` is UNKNOWN.
* Values: each numeric/temporal term gets a *direction* — CONSTANT, UP ("once non-null it stays
  non-null and does not decrease"), DOWN (the same, not increasing) or UNKNOWN — and whether it is
  *total* (never null). ``count`` and ``count_distinct`` are UP and total (0 when none);
  ``max`` UP and ``min`` DOWN (null when none); ``last(event.timestamp …)`` is the latest
  admitted timestamp, so UP, and ``first(event.timestamp …)`` DOWN; ``days_since(x)`` turns UP
  into DOWN and back, ``days_until(x)`` keeps it. ``sum`` (values may be negative, and it
  overflows to null), ``avg``, ``first``/``last`` of any other field, arithmetic and every other
  function are UNKNOWN. A part with no event term and no segment reference is CONSTANT.
* ``x > y`` / ``x >= y`` (``<``, ``<=`` with the sides swapped): when x is UP or CONSTANT and y
  DOWN or CONSTANT, ``T`` is MONOTONE (x(E) > y(E) both non-null ⇒ x(E') ≥ x(E) > y(E) ≥ y(E')),
  and ``F`` is ANTITONE if the non-constant sides are total (``F`` at E' needs both non-null at
  E; ``max(…) > 5`` is null, so not FALSE, before the first event); mirrored when x falls and y
  rises. ``=`` and ``!=`` over a moving side are UNKNOWN. ``between`` is its two comparisons
  joined by ``and`` (DSL.md §5). ``x is null`` over an UP or DOWN x: ``T`` ANTITONE (a non-null
  value stays non-null), ``F`` MONOTONE; over a total one, CONSTANT.
* ``in segment "k"`` is TRUE exactly when k's expression is TRUE (DSL.md §8), never UNKNOWN:
  ``T`` has k's sign, ``F`` the opposite. A reference that cannot be resolved is UNKNOWN.
* Anything else holding an event term or a reference is UNKNOWN: UNKNOWN means "evaluate".

**By the types added.** A record's new events have known types. With ``added`` (the types of
the new events), a term whose filters all read no other event (as above) and admit none of those
types by their condition (``type = "x"``, ``type in [...]`` at the top of an ``and``: the types
selection reads, cdp/segments/reads.py) admits the same events from E' as from E: it is CONSTANT.
A sequence whose touched steps are all positive is MONOTONE (every choice of events that
satisfied it still does: the ``then no`` step admits no new event), one whose only touched step is
its ``then no`` is ANTITONE (more candidates for the ``no`` only remove choices), both: UNKNOWN.
So ``cart then no purchase`` is monotone for a new cart, antitone for a new purchase, where it is
unknown for events of any type.

tests/test_streaming_polarity.py checks, for generated expressions, profiles and added events,
that a TRUE answer stays TRUE at sampled instants whenever this says monotone, and a not-TRUE one
stays not-TRUE whenever it says antitone — for events of any type, and for the added events'
own types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cdp.dsl import ast
from cdp.segments.reads import _event_types

CONSTANT, MONOTONE, ANTITONE, UNKNOWN = "constant", "monotone", "antitone", "unknown"
Sign = str

UP, DOWN = MONOTONE, ANTITONE  # a value's direction, named as the signs they join with

_TERMS = (ast.Exists, ast.NoEvent, ast.Aggregate, ast.EventFilter, ast.SegmentRef)


def join(a: Sign, b: Sign) -> Sign:
    """The sign of a conjunction or disjunction of two predicates with signs ``a`` and ``b``."""
    if a == b or b == CONSTANT:
        return a
    if a == CONSTANT:
        return b
    return UNKNOWN


def opposite(sign: Sign) -> Sign:
    return {MONOTONE: ANTITONE, ANTITONE: MONOTONE}.get(sign, sign)


@dataclass(frozen=True)
class Truth:
    """The signs of "is TRUE" and "is FALSE" of a boolean expression."""

    true: Sign
    false: Sign

    def negated(self) -> Truth:
        return Truth(self.false, self.true)


@dataclass(frozen=True)
class Value:
    """A value's direction (CONSTANT, UP, DOWN, UNKNOWN) and whether it is never null."""

    direction: Sign
    total: bool = False


_CONSTANT_TRUTH = Truth(CONSTANT, CONSTANT)
_UNKNOWN_TRUTH = Truth(UNKNOWN, UNKNOWN)
_CONSTANT_VALUE = Value(CONSTANT, True)
_UNKNOWN_VALUE = Value(UNKNOWN)


def _reads_events(node: ast.Node) -> bool:
    return any(isinstance(n, _TERMS) for n in ast.walk(node))


def _filter_grows(flt: ast.EventFilter) -> bool:
    """Does the filter admit, from a larger set of events, a superset of what it admits (its
    condition and window read no other event and no segment)?"""
    return not any(part is not None and _reads_events(part) for part in (flt.condition, flt.window))


class Polarity:
    """Signs of the segments of one catalogue; ``tree_of(key)``: a segment's checked tree (None:
    none). Each segment's sign is computed once. ``added``: the types of the events added (None:
    any type; see the module doc). ``like``: an analysis of the same trees for other types, whose
    answers that do not depend on the types are shared."""

    def __init__(self, tree_of: Callable[[str], ast.Node | None], added: frozenset[str] | None = None,
                 like: Polarity | None = None):
        self.tree_of = tree_of
        self.added = added
        # id(node) → (node, whether it can change with the addition): truth() and value() ask it at
        # every level of a tree (the node is held, so that its id is not reused meanwhile)
        self._moving: dict[int, tuple[ast.Node, bool]] = {}
        self._quiet: dict[int, tuple[ast.Node, bool]] = {}  # the same for :meth:`_untouched`
        # the same for :meth:`_reads` (whatever the types)
        self._reading: dict[int, tuple[ast.Node, bool]] = {} if like is None else like._reading
        self._signs: dict[str, Sign] = {}
        self._open: set[str] = set()  # being computed: a cycle (rejected on save) is UNKNOWN

    def segment(self, key: str) -> Sign:
        """The sign of "segment ``key``'s expression is TRUE"."""
        found = self._signs.get(key)
        if found is None:
            if key in self._open:
                return UNKNOWN
            self._open.add(key)
            try:
                tree = self.tree_of(key)
                found = UNKNOWN if tree is None else self.truth(tree).true
            finally:
                self._open.discard(key)
            self._signs[key] = found
        return found

    def _reads(self, node: ast.Node) -> bool:
        """:func:`_reads_events`, kept per node: asked at every level of a tree, it walked the
        subtree each time (an analysis of 500 segments took ~11 ms, most of it here)."""
        found = self._reading.get(id(node))
        if found is None:
            reads = isinstance(node, _TERMS) or any(self._reads(child) for child in node.children())
            found = self._reading[id(node)] = (node, reads)
        return found[1]

    def _grows(self, flt: ast.EventFilter) -> bool:
        """:func:`_filter_grows` through :meth:`_reads`."""
        return not any(part is not None and self._reads(part) for part in (flt.condition, flt.window))

    def _untouched(self, flt: ast.EventFilter) -> bool:
        """Whether the filter admits the same events after the addition: it reads no other event
        and its condition admits none of the added types."""
        if self.added is None:
            return False
        found = self._quiet.get(id(flt))
        if found is None:
            types = _event_types(flt.condition)
            found = self._quiet[id(flt)] = (flt, types is not None and not (types & self.added)
                                            and self._grows(flt))
        return found[1]

    def _moves(self, node: ast.Node) -> bool:
        """Whether an event term or reference in ``node`` can change with the addition."""
        found = self._moving.get(id(node))
        if found is not None:
            return found[1]
        if isinstance(node, ast.EventFilter):
            moves = not self._untouched(node)
        elif isinstance(node, ast.SegmentRef):
            moves = self.segment(node.key) != CONSTANT
        else:
            moves = False
        moves = moves or any(self._moves(child) for child in node.children())
        self._moving[id(node)] = (node, moves)
        return moves

    def truth(self, node: ast.Node) -> Truth:
        if not self._reads(node) or (self.added is not None and not self._moves(node)):
            return _CONSTANT_TRUTH
        if isinstance(node, ast.BoolChain):
            true, false = CONSTANT, CONSTANT
            for operand in node.operands:
                part = self.truth(operand)
                true, false = join(true, part.true), join(false, part.false)
            return Truth(true, false)
        if isinstance(node, ast.Not):
            return self.truth(node.operand).negated()
        if isinstance(node, ast.Exists):
            filters = [node.filter, *(step.filter for step in node.steps)]
            if not all(self._grows(f) for f in filters):
                return _UNKNOWN_TRUTH
            # the steps the addition can touch: positive ones only, monotone; the `then no` only,
            # antitone (no choice is added, some may be removed)
            touched = [k > 0 and node.steps[k - 1].negated for k, f in enumerate(filters) if not self._untouched(f)]
            if not any(touched):
                return Truth(MONOTONE, ANTITONE)
            if all(touched):
                return Truth(ANTITONE, MONOTONE)
            return _UNKNOWN_TRUTH
        if isinstance(node, ast.NoEvent):
            return Truth(ANTITONE, MONOTONE) if self._grows(node.filter) else _UNKNOWN_TRUTH
        if isinstance(node, ast.SegmentRef):
            sign = self.segment(node.key)
            return Truth(sign, opposite(sign))
        if isinstance(node, ast.Comparison):
            return _compare(self.value(node.left), node.op, self.value(node.right))
        if isinstance(node, ast.Between):
            value = self.value(node.value)
            low = _compare(value, ">=", self.value(node.low))
            high = _compare(value, "<=", self.value(node.high))
            both = Truth(join(low.true, high.true), join(low.false, high.false))
            return both.negated() if node.negated else both
        if isinstance(node, ast.IsNull):
            value = self.value(node.value)
            if value.direction == CONSTANT or value.total:
                found = _CONSTANT_TRUTH
            elif value.direction in (UP, DOWN):
                found = Truth(ANTITONE, MONOTONE)  # a non-null value stays non-null
            else:
                found = _UNKNOWN_TRUTH
            return found.negated() if node.negated else found
        return _UNKNOWN_TRUTH

    def value(self, node: ast.Node) -> Value:
        if not self._reads(node) or (self.added is not None and not self._moves(node)):
            return _CONSTANT_VALUE
        if isinstance(node, ast.Aggregate):
            if not self._grows(node.filter):
                return _UNKNOWN_VALUE
            function = node.function
            if function in ("count", "count_distinct"):
                return Value(UP, True)
            if function == "max" or (function == "last" and node.path == ("timestamp",)):
                return Value(UP)
            if function == "min" or (function == "first" and node.path == ("timestamp",)):
                return Value(DOWN)
            return _UNKNOWN_VALUE
        if isinstance(node, ast.Call) and node.function in ("days_since", "days_until") and len(node.args) == 1:
            inner = self.value(node.args[0])
            if inner.direction not in (UP, DOWN):
                return _UNKNOWN_VALUE
            return Value(opposite(inner.direction) if node.function == "days_since" else inner.direction, inner.total)
        return _UNKNOWN_VALUE


def _compare(left: Value, op: str, right: Value) -> Truth:
    if left.direction == CONSTANT and right.direction == CONSTANT:
        return _CONSTANT_TRUTH
    if op in ("<", "<="):
        left, right, op = right, left, ">"
    if op not in (">", ">="):
        return _UNKNOWN_TRUTH
    total = all(side.direction == CONSTANT or side.total for side in (left, right))
    if left.direction in (CONSTANT, UP) and right.direction in (CONSTANT, DOWN):  # left − right rises
        return Truth(MONOTONE, ANTITONE if total else UNKNOWN)
    if left.direction in (CONSTANT, DOWN) and right.direction in (CONSTANT, UP):  # it falls
        return Truth(ANTITONE if total else UNKNOWN, MONOTONE)
    return _UNKNOWN_TRUTH


def grows(sign: Sign) -> bool:
    """A member stays a member when events are added."""
    return sign in (MONOTONE, CONSTANT)


def shrinks(sign: Sign) -> bool:
    """A non-member stays a non-member when events are added."""
    return sign in (ANTITONE, CONSTANT)
