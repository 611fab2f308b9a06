"""What a segment reads, from its checked tree: the event types its filters admit (or any type),
the profile attributes it names, the segments it references, and what makes its answer depend on
time (window lengths, calendar windows, clock functions, date literals). Streaming evaluation
(cdp/segments/streaming.py) re-evaluates a segment only for a :class:`Change` its reads touch, and
next_change (cdp/segments/timing.py) reads the time-dependent part."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cdp.dsl import ast, check
from cdp.schema import Schema
from cdp.segments.timing import _instant

_UNITS = {"second": timedelta(seconds=1), "minute": timedelta(minutes=1), "hour": timedelta(hours=1),
          "day": timedelta(days=1), "week": timedelta(weeks=1)}


@dataclass(frozen=True)
class Reads:
    """What an expression reads (see the module doc)."""

    any_event: bool = False  # a filter that admits events of any type
    event_types: frozenset[str] = frozenset()
    attributes: frozenset[tuple[str, ...]] = frozenset()
    references: frozenset[str] = frozenset()
    durations: frozenset[timedelta] = frozenset()
    periods: frozenset[str] = frozenset()  # today | week | month | year
    months: frozenset[int] = frozenset()  # window lengths in months / years (as months)
    clock: bool = False  # calls a function of the clock (now(), today(), days_until …)
    literal_instants: frozenset[datetime] = frozenset()

    @property
    def timed(self) -> bool:
        # events count from their timestamp on: one stored ahead of the clock enters later
        return bool(self.durations or self.periods or self.months or self.clock or self.literal_instants
                    or self.any_event or self.event_types)

    def union(self, other: Reads) -> Reads:
        return Reads(*(getattr(self, f.name) | getattr(other, f.name) for f in dataclasses.fields(self)))

    def touched_by(self, change: Change) -> bool:
        if change.everything:
            return True
        if change.event_types and (self.any_event or self.event_types & change.event_types):
            return True
        for path in change.attributes:
            for read in self.attributes:
                n = min(len(path), len(read))
                if path[:n] == read[:n]:
                    return True
        return False


@dataclass(frozen=True)
class Change:
    """What a record changed on a profile."""

    event_types: frozenset[str] = frozenset()
    attributes: frozenset[tuple[str, ...]] = frozenset()
    everything: bool = False  # a merge, a deletion: every segment can be affected
    # the new events as inserted (rows with event_id, type, ts, fields): streaming skips a segment
    # none of whose filters can admit one (cdp/segments/relevance.py). Not part of equality: a
    # plan's selection by types and paths is cached per change
    events: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, hash=False)


def _event_types(condition: ast.Node | None) -> frozenset[str] | None:
    """The types a filter's condition admits when it says so at its top (``type = "x"``, ``type
    in [...]``, in an ``and``); None: any type."""
    if condition is None:
        return None
    if isinstance(condition, ast.BoolChain) and condition.op == "and":
        found = None
        for operand in condition.operands:
            types = _event_types(operand)
            if types is not None:
                found = types if found is None else found & types
        return found
    if isinstance(condition, ast.BoolChain) and condition.op == "or":
        parts = [_event_types(operand) for operand in condition.operands]
        return None if any(p is None for p in parts) else frozenset().union(*parts)

    def is_type(node: ast.Node) -> bool:
        return isinstance(node, ast.Name) and node.binding == "event" and node.path == ("type",)

    if isinstance(condition, ast.Comparison) and condition.op == "=":
        for name, value in ((condition.left, condition.right), (condition.right, condition.left)):
            if is_type(name) and isinstance(value, ast.StringLiteral):
                return frozenset([value.value])
    if (isinstance(condition, ast.InList) and not condition.negated and is_type(condition.value)
            and isinstance(condition.items, ast.ListLiteral)
            and all(isinstance(i, ast.StringLiteral) for i in condition.items.items)):
        return frozenset(i.value for i in condition.items.items)
    return None


def _own_reads(tree: ast.Node) -> Reads:
    from cdp.functions.registry import lookup

    any_event = False
    types: set[str] = set()
    attributes: set[tuple[str, ...]] = set()
    references: set[str] = set()
    durations: set[timedelta] = set()
    periods: set[str] = set()
    months: set[int] = set()
    instants: set[datetime] = set()
    clock = False
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
            continue
        if not isinstance(node, ast.Node):
            continue
        if isinstance(node, ast.EventFilter):
            admitted = _event_types(node.condition)
            if admitted is None:
                any_event = True
            else:
                types |= admitted
        elif isinstance(node, ast.Name) and node.binding in (None, "profile"):
            attributes.add(node.path)
        elif isinstance(node, ast.SegmentRef):
            references.add(node.key)
        elif isinstance(node, (ast.WithinLast, ast.WithinGap, ast.DurationLiteral)):
            amount, unit = node.amount, node.unit
            if unit in ("month", "year"):
                months.add(amount * (12 if unit == "year" else 1))
            else:
                durations.add(amount * _UNITS[unit])
        elif isinstance(node, ast.WithinPeriod):
            periods.add(node.period)
        elif isinstance(node, ast.Call):
            function = lookup(node.function)
            if function is None or function.needs_clock or function.stage == "as_of":
                clock = True
        elif isinstance(node, ast.StringLiteral):
            try:
                instants.add(_instant(datetime.fromisoformat(node.value)))
            except ValueError:
                pass
        for f in dataclasses.fields(node):
            if f.name not in ("span", "type", "nullable"):
                stack.append(getattr(node, f.name))
    if any(isinstance(n, (ast.Since, ast.Before, ast.FromTo)) for n in _walk(tree)):
        clock = clock or not instants
    return Reads(any_event, frozenset(types), frozenset(attributes), frozenset(references), frozenset(durations),
                 frozenset(periods), frozenset(months), clock, frozenset(instants))


def _walk(tree: ast.Node) -> Iterable[ast.Node]:
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
        elif isinstance(node, ast.Node):
            yield node
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node)
                         if f.name not in ("span", "type", "nullable"))


_cache: dict[tuple, Reads] = {}
_cache_lock = threading.Lock()


def own_reads(text: str, schema: Schema | None) -> Reads:
    """What an expression reads itself, not through the segments it references (their keys are
    in ``references``); cached per schema and text."""
    cache_key = (id(schema), getattr(schema, "version", None), text)
    with _cache_lock:
        found = _cache.get(cache_key)
    if found is None:
        found = _own_reads(check(text, schema))
        with _cache_lock:
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[cache_key] = found
    return found


def reads_of(key: str, catalogue: Mapping[str, str], schema: Schema | None) -> Reads:
    """What segment ``key`` reads, through the segments it references (checked against
    ``schema``); cached per schema and the texts involved."""
    seen: dict[str, Reads] = {}

    def own(k: str) -> Reads:
        if k not in seen:
            seen[k] = own_reads(catalogue[k], schema)
        return seen[k]

    total = Reads()
    stack, visited = [key], set()
    while stack:
        k = stack.pop()
        if k in visited or k not in catalogue:
            continue
        visited.add(k)
        r = own(k)
        total = total.union(r)
        stack.extend(r.references)
    return total


def reads_of_tree(tree: ast.Node, catalogue: Mapping[str, str], schema: Schema | None = None) -> Reads:
    """What a checked tree reads, through the segments of ``catalogue`` it references."""
    total = _own_reads(tree)
    for key in total.references:
        if key in catalogue:
            total = total.union(reads_of(key, catalogue, schema))
    return total
