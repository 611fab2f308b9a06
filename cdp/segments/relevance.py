"""Which new events can change a segment's answer, from its checked tree: streaming evaluation
(cdp/segments/streaming.py) skips a segment for a record whose events none of its event filters
can admit.

An expression reads events only through event terms (DSL.md §6, §7), and every event term is a
function of the events its filter admits: ``exists`` and ``no`` of whether one is admitted,
``count`` and the aggregates of the admitted ones (with their values), ``first``/``last`` of
the admitted ones in time order, a sequence of the events each step admits (a ``then no`` step
included). So an event that no filter of the expression — nor of the segments it references,
transitively — admits at any instant from now on leaves every event term, hence the answer, the
same at every instant from now on: the membership and the stored next instant
(cdp/segments/timing.py) stay right without evaluating.

For each filter a *guard* is derived, a condition every admitted event satisfies:

* the part of the ``where`` that reads only the event itself (its fields and constants — no
  profile attribute, no earlier step's alias, no clock): in an ``and``, the conjuncts that do
  (and what a non-closed conjunct requires, recursively); in an ``or``, the disjunction of what
  each operand requires, when each requires something; anything else requires nothing. It is
  evaluated on the event alone by the in-memory engine, with SQL's three-valued logic: UNKNOWN
  does not admit (DSL.md §9: an event whose condition is UNKNOWN does not match);
* a window with constant bounds (``since``/``before``/``from … to`` over literals): the event's
  timestamp inside the bounds, as the same engine compares it;
* a window relative to the instant (``within last N UNIT``, ``within today`` / ``this
  week|month|year``): its lower bound only moves forward, so an event at or before the bound at
  ``now`` (before it, for a calendar period) stays out of it at every later instant.

What is not decided is admitted: an unfiltered ``count(event)`` or ``last(…)`` admits every
event; a window bound from the clock (``since now() - 2 hours``) or a profile attribute, a gap
of a ``then`` step, a condition on the profile or an alias require nothing. An event stored
ahead of the clock is admitted by a relative window (it enters later).
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdp.dsl import PqlError, ast, check, render
from cdp.dsl import runtime
from cdp.engine.profile import LoadedProfile
from cdp.schema import Schema


@dataclass(frozen=True)
class Guard:
    """What every event one filter admits satisfies: ``condition`` (canonical text of a condition
    on the event alone; None: any) and ``window`` (a window relative to the instant, or None)."""

    condition: str | None
    window: ast.WithinLast | ast.WithinPeriod | None
    never: bool = False  # the filter admits nothing (a `null` window bound)


def guards_of(tree: ast.Node) -> frozenset[Guard]:
    """The guards of every event filter of a checked tree (not through its references)."""
    found: set[Guard] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.EventFilter):
            found.add(_guard(node))
    return frozenset(found)


def _guard(flt: ast.EventFilter) -> Guard:
    required: list[ast.Node] = []
    needed = _required(flt.condition) if flt.condition is not None else None
    if needed is not None:
        required.append(needed)
    relative = None
    window = flt.window
    if isinstance(window, (ast.WithinLast, ast.WithinPeriod)):
        relative = window
    elif isinstance(window, (ast.Since, ast.Before, ast.FromTo)):
        bounds = [window.start, window.end] if isinstance(window, ast.FromTo) else [window.bound]
        if any(isinstance(b, ast.NullLiteral) for b in bounds):
            return Guard(None, None, never=True)  # DSL.md §6: a null bound leaves the window empty
        if all(_closed(b, bound=True) for b in bounds):
            required += _bound_conditions(window)
    if not required:
        return Guard(None, relative)
    condition = required[0] if len(required) == 1 else ast.BoolChain("and", tuple(required))
    return Guard(render(condition), relative)


def _bound_conditions(window: ast.Since | ast.Before | ast.FromTo) -> list[ast.Node]:
    stamp = ast.Name(("timestamp",))
    if isinstance(window, ast.Since):
        return [ast.Comparison(stamp, ">=", window.bound)]
    if isinstance(window, ast.Before):
        return [ast.Comparison(stamp, "<", window.bound)]
    return [ast.Comparison(stamp, ">=", window.start), ast.Comparison(stamp, "<", window.end)]


def _required(condition: ast.Node) -> ast.Node | None:
    """A condition on the event alone that is TRUE whenever ``condition`` is (None: nothing)."""
    if _closed(condition):
        return condition
    if isinstance(condition, ast.BoolChain):
        parts = [_required(operand) for operand in condition.operands]
        if condition.op == "and":
            kept = [p for p in parts if p is not None]
        elif any(p is None for p in parts):  # an `or` with a branch that requires nothing
            return None
        else:
            kept = parts
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else ast.BoolChain(condition.op, tuple(kept))
    return None


def _closed(node: ast.Node, *, bound: bool = False) -> bool:
    """Reads nothing but the filtered event (in a window bound: nothing at all) and constants:
    no profile attribute, alias, segment, clock or event term."""
    from cdp.functions.registry import lookup

    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            if bound or n.binding != "event":
                return False
        elif isinstance(n, (ast.SegmentRef, ast.Exists, ast.NoEvent, ast.Aggregate, ast.EventFilter)):
            return False
        elif isinstance(n, ast.Call):
            function = lookup(n.function)
            if function is None or function.needs_clock or function.stage == "as_of":
                return False
    return True


class Relevance:
    """The guards of a catalogue's segments (through their references), compiled once against a
    schema; :meth:`admits` answers per event, each distinct guard evaluated once per event."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self._predicates: dict[str, Any] = {}
        self._lock = threading.Lock()

    def segment_guards(self, key: str, tree_of: Callable[[str], ast.Node | None]) -> frozenset[Guard] | None:
        """The guards of segment ``key`` and of every segment it references (``tree_of``: a
        segment's checked tree, None when it has none); None when one has none (then every event
        is admitted)."""
        found: set[Guard] = set()
        stack, seen = [key], set()
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            tree = tree_of(k)
            if tree is None:
                return None
            found |= guards_of(tree)
            stack.extend(ast.segment_references(tree))
        return frozenset(g for g in found if not g.never)

    def admits(self, guard: Guard, event: Mapping[str, Any], now: datetime, memo: dict | None = None) -> bool:
        """Can ``guard``'s filter admit ``event`` (as the engine holds events) at ``now`` or later?
        ``memo``: shared by the guards asked about one event at one ``now`` (a window's bound
        and a condition's verdict computed once for all the guards that have them)."""
        if guard.never:
            return False
        if memo is None:
            memo = {}
        window = guard.window
        if window is not None:
            bound = memo.get(window)
            if bound is None:
                if isinstance(window, ast.WithinLast):
                    bound = memo[window] = (runtime.window_start(now, window.amount, window.unit), True)
                else:
                    bound = memo[window] = (runtime.period_start(
                        now, "day" if window.period == "today" else window.period), False)
            lowest, exclusive = bound  # (lowest, now] or [lowest, now]: the lowest only moves forward
            stamp = event["timestamp"]
            if stamp < lowest or (exclusive and stamp == lowest):
                return False
        condition = guard.condition
        if condition is None:
            return True
        found = memo.get(condition)
        if found is None:
            found = memo[condition] = self.holds(condition, event)
        return found

    def holds(self, condition: str, event: Mapping[str, Any]) -> bool:
        """Is ``condition`` (a guard's, on the event alone) TRUE for ``event``? (True when it
        could not be compiled: admitting is always sound.)"""
        return self.holds_alone(condition, event, None)

    def holds_alone(self, condition: str, event: Mapping[str, Any], alone: LoadedProfile | None) -> bool:
        """:meth:`holds`, given ``alone``: the profile holding only the event (``_alone(event)``;
        None: made here) — made once for the conditions asked of one event."""
        predicate = self._predicate(condition)
        return predicate is None or bool(predicate(_alone(event) if alone is None else alone, event["timestamp"], {}))

    def _predicate(self, condition: str):
        found = self._predicates.get(condition, _UNSET)
        if found is _UNSET:
            from cdp.engine.memory import compile_predicate

            try:  # `exists` over a profile holding only the event, at its instant: the condition's truth
                found = compile_predicate(check(f"exists event where {condition}", self.schema), self.schema)
            except PqlError:  # not expected (a part of a checked tree); admitting is always sound
                found = None
            with self._lock:
                self._predicates[condition] = found
        return found


_UNSET = object()


def _alone(event: Mapping[str, Any]) -> LoadedProfile:
    return LoadedProfile("", [], {}, [dict(event)])


def relevant(positions: Sequence[int], guards: Sequence[frozenset[Guard] | None], relevance: Relevance,
             events: Iterable[Mapping[str, Any]], now: datetime) -> list[int]:
    """The ``positions`` whose guards admit at least one of ``events`` (``guards[i]`` None: every
    event is admitted); each distinct guard evaluated at most once per event."""
    memos = [(event, {}) for event in events]
    verdicts: dict[Guard, bool] = {}

    def admitted(guard: Guard) -> bool:
        found = verdicts.get(guard)
        if found is None:
            found = verdicts[guard] = any(relevance.admits(guard, event, now, memo) for event, memo in memos)
        return found

    kept = []
    for i in positions:
        own = guards[i]
        if own is None or any(admitted(guard) for guard in own):
            kept.append(i)
    return kept


_ALWAYS, _FIXED, _CALENDAR, _PERIOD = range(4)  # a guard's window, as Screen checks it


class Screen:
    """:func:`relevant` for one list of positions, prepared once (streaming keeps one per
    selection) and cheap per record: the positions' distinct guards numbered, each one's window
    reduced to a comparison (a fixed length: ``stamp > now - length``), each distinct condition
    evaluated at most once per event, and a guard once it admitted one event not asked again.
    Gives exactly :func:`relevant`'s answer (tests/test_streaming_relevance.py)."""

    def __init__(self, relevance: Relevance, positions: Sequence[int], guards: Sequence[frozenset[Guard] | None]):
        self.relevance = relevance
        numbered: dict[Guard, int] = {}
        self.rows: list[tuple[int, tuple[int, ...] | None]] = []
        for i in positions:
            own = guards[i]
            self.rows.append((i, None if own is None else tuple(
                numbered.setdefault(guard, len(numbered)) for guard in sorted(own, key=repr))))
        # keep()'s last step from the guards' side: the positions kept whatever the events (no
        # guard), and per guard the positions it stands for; used when the positions come in
        # ascending order (the plan's do), so that sorting what is kept gives them in their order
        self.always = frozenset(i for i, numbers in self.rows if numbers is None)
        members_of: list[list[int]] = [[] for _ in numbered]
        for i, numbers in self.rows:
            for n in numbers or ():
                members_of[n].append(i)
        self.members_of = [tuple(found) for found in members_of]
        self.ordered = len(set(positions)) == len(positions) and list(positions) == sorted(positions)
        self.conditions = sorted({g.condition for g in numbered if g.condition is not None})
        slot = {condition: k for k, condition in enumerate(self.conditions)}
        self.checks: list[tuple[bool, int, int, Any]] = []  # (never, condition slot or -1, window kind, parameter)
        for guard in numbered:
            window = guard.window
            if window is None:
                kind, parameter = _ALWAYS, None
            elif isinstance(window, ast.WithinPeriod):
                kind, parameter = _PERIOD, "day" if window.period == "today" else window.period
            elif window.unit in ("month", "year"):
                kind, parameter = _CALENDAR, (window.amount, window.unit)
            else:
                kind, parameter = _FIXED, runtime.timedelta_of(window.amount, window.unit)
            self.checks.append((guard.never, slot.get(guard.condition, -1), kind, parameter))
        # the checks grouped by window (a guard that never admits left out): per event a window's
        # lowest instant is compared once for all its guards; in a group, the guards without a
        # condition and those with one (guard number, condition slot)
        groups: dict[tuple[int, Any], tuple[list[int], list[tuple[int, int]]]] = {}
        for number, (never, condition, kind, parameter) in enumerate(self.checks):
            if never:
                continue
            group = groups.setdefault((kind, parameter), ([], []))
            if condition < 0:
                group[0].append(number)
            else:
                group[1].append((number, condition))
        self.groups = [(kind, parameter, tuple(plain), tuple(conditional))
                       for (kind, parameter), (plain, conditional) in groups.items() if kind != _FIXED]
        # the fixed-length windows sorted by length: an event is in the window of every length
        # greater than its age (``stamp > now - length`` ⇔ ``now - stamp < length``), a binary search
        fixed = sorted((parameter, tuple(plain), tuple(conditional))
                       for (kind, parameter), (plain, conditional) in groups.items() if kind == _FIXED)
        self.lengths = [length for length, _, _ in fixed]
        self.fixed = [(plain, conditional) for _, plain, conditional in fixed]
        self._kept: dict[tuple[bool, ...], list[int]] = {}  # keep()'s answer per admitted guards

    def keep(self, events: Sequence[Mapping[str, Any]], now: datetime) -> list[int]:
        """The positions whose guards admit one of ``events`` at ``now`` (a list kept for the
        next record admitting the same guards: not to be modified)."""
        admitted = [False] * len(self.checks)
        starts: dict[Any, datetime] = {}  # a window's lowest instant at now, per window
        for event in events:
            stamp = event["timestamp"]
            holds: list[bool | None] = [None] * len(self.conditions)
            alone = None  # the profile holding only the event, made for its first condition
            inside = []
            for kind, parameter, plain, conditional in self.groups:
                if kind != _ALWAYS:
                    lowest = starts.get(parameter)
                    if lowest is None:
                        lowest = starts[parameter] = self._lowest(kind, parameter, now)
                    # (lowest, now] — or [lowest, now] for a calendar period; the lowest only moves forward
                    if stamp < lowest or (stamp == lowest and kind != _PERIOD):
                        continue
                inside.append((plain, conditional))
            if self.fixed:
                if stamp.year > 1:
                    inside += self.fixed[bisect_right(self.lengths, now - stamp):]
                else:  # a window reaching before the calendar admits any event after its lowest (_lowest)
                    inside += [group for length, group in zip(self.lengths, self.fixed)
                               if stamp > self._lowest(_FIXED, length, now)]
            for plain, conditional in inside:
                for number in plain:
                    admitted[number] = True
                for number, condition in conditional:
                    if admitted[number]:
                        continue
                    verdict = holds[condition]
                    if verdict is None:
                        if alone is None:
                            alone = _alone(event)
                        verdict = holds[condition] = self.relevance.holds_alone(self.conditions[condition], event,
                                                                                alone)
                    if verdict:
                        admitted[number] = True
        pattern = tuple(admitted)
        found = self._kept.get(pattern)
        if found is not None:
            return found
        if not self.ordered:
            found = [i for i, numbers in self.rows if numbers is None or any(admitted[n] for n in numbers)]
        else:
            kept = set(self.always)
            members_of = self.members_of
            for number, yes in enumerate(admitted):
                if yes:
                    kept.update(members_of[number])
            found = sorted(kept)
        if len(self._kept) > 1024:
            self._kept.clear()
        self._kept[pattern] = found
        return found

    @staticmethod
    def _lowest(kind: int, parameter: Any, now: datetime) -> datetime:
        if kind == _PERIOD:
            return runtime.period_start(now, parameter)
        if kind == _CALENDAR:
            return runtime.window_start(now, *parameter)
        try:
            return now - parameter
        except OverflowError:  # as window_start: a bound before the calendar admits every past event
            return datetime.min.replace(tzinfo=now.tzinfo)
