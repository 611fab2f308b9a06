"""The language's values at run time (DSL.md §9): SQL's null logic, 64-bit arithmetic that is null
on overflow, calendar arithmetic, windows and sequences. The in-memory engine's generated code
calls these, and so do SQLite's functions (cdp/storage/sqlite_functions.py), so the two cannot
disagree; it lives with the language, below storage and the engines, for both to import.
Everything here receives `as_of`; nothing reads the wall clock."""

from __future__ import annotations

import calendar
import math
from decimal import Decimal, localcontext
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


# ---- arithmetic with SQL's nulls ------------------------------------------------------------

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def checked(x):
    """DSL.md §9: an integer result outside the 64-bit range is null, and so is a number result
    that is not finite. Every backend applies this to every arithmetic result."""
    if x.__class__ is int:
        return x if INT_MIN <= x <= INT_MAX else None
    if x.__class__ is float:
        return x if -math.inf < x < math.inf else None
    return x



def as_double(x):
    """A `number` as SQL holds it: a double, also when the data wrote a whole number."""
    return float(x) if x.__class__ is int else x


def divide(a, b):
    """True division of doubles, as SQL divides (an integer operand is first a double); division
    by zero is null (DSL.md §4), and so is a result that is not finite (§9)."""
    if b == 0:
        return None
    return checked(float(a) / float(b))


def modulo(a, b):
    """Remainder with the sign of the left operand (truncating, as SQL); by zero it is null.

    For decimals, the remainder of the decimal values as written (their shortest repr, as
    `round` takes them), so `3.3 % 1.1` is 0 — every backend computes it so (PostgreSQL in
    numeric) — rather than fmod's 1.0999999999999996 from the binary values."""
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        r = abs(a) % abs(b)
        return -r if a < 0 else r
    with localcontext() as ctx:
        ctx.prec = 1000  # the quotient of 1e308 by 1e-308 has 617 digits; Decimal needs them
        return checked(float(Decimal(repr(a)) % Decimal(repr(b))))


def to_datetime(d: date | datetime) -> datetime:
    """A date compared with a datetime is midnight UTC of that date (DSL.md §2)."""
    if isinstance(d, datetime):
        return d
    return datetime.combine(d, time(0), tzinfo=timezone.utc)


def add_months(d: date | datetime, months: int):
    """Calendar months, clamped to the month's last day (2026-03-31 − 1 month = 2026-02-28)."""
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day)


def add_duration(d, amount: int, unit: str, sign: int = 1):
    """d ± amount unit; months and years are calendar units. Out of range gives null."""
    try:
        if unit == "month":
            return add_months(d, sign * amount)
        if unit == "year":
            return add_months(d, sign * amount * 12)
        return d + timedelta(seconds=sign * amount * _UNIT_SECONDS[unit])
    except (OverflowError, ValueError):
        return None


# ---- windows (DSL.md §6) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Range:
    """Timestamps in (or at) lo … hi; None for lo means unbounded; empty when `empty`."""

    lo: datetime | None
    lo_inclusive: bool
    hi: datetime
    hi_inclusive: bool
    empty: bool = False

    def indexes(self, timestamps: list) -> tuple[int, int]:
        if self.empty:
            return 0, 0
        if self.lo is None:
            start = 0
        elif self.lo_inclusive:
            start = bisect_left(timestamps, self.lo)
        else:
            start = bisect_right(timestamps, self.lo)
        end = bisect_right(timestamps, self.hi) if self.hi_inclusive else bisect_left(timestamps, self.hi)
        return start, max(start, end)


EMPTY_RANGE = Range(None, True, datetime.min.replace(tzinfo=timezone.utc), False, empty=True)


def range_all(as_of: datetime) -> Range:
    return Range(None, True, as_of, True)


def range_within_last(as_of: datetime, amount: int, unit: str) -> Range:
    lo = add_duration(as_of, amount, unit, -1)
    return Range(lo, False, as_of, True)


def period_start(as_of: datetime, period: str) -> datetime:
    day = as_of.date()
    if period == "week":
        day = day - timedelta(days=day.weekday())  # weeks start on Monday
    elif period == "month":
        day = day.replace(day=1)
    elif period == "year":
        day = day.replace(month=1, day=1)
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def window_start(as_of: datetime, amount: int, unit: str) -> datetime:
    """The exclusive lower bound of `within last N UNIT` (the earliest instant when out of range)."""
    lo = add_duration(as_of, amount, unit, -1)
    return lo if lo is not None else datetime.min.replace(tzinfo=timezone.utc)


def window_start_by(as_of: datetime, length: timedelta) -> datetime:
    """:func:`window_start` for a fixed-unit length given as a timedelta."""
    try:
        return as_of - length
    except OverflowError:
        return datetime.min.replace(tzinfo=timezone.utc)


def timedelta_of(amount: int, unit: str) -> timedelta:
    return timedelta(seconds=amount * _UNIT_SECONDS[unit])


def range_period(as_of: datetime, period: str) -> Range:
    return Range(period_start(as_of, period), True, as_of, True)


def range_since(as_of: datetime, bound) -> Range:
    if bound is None:
        return EMPTY_RANGE
    return Range(to_datetime(bound), True, as_of, True)


def range_before(as_of: datetime, bound) -> Range:
    if bound is None:
        return EMPTY_RANGE
    bound = to_datetime(bound)
    if bound <= as_of:
        return Range(None, True, bound, False)
    return Range(None, True, as_of, True)


def range_from_to(as_of: datetime, start, end) -> Range:
    if start is None or end is None:
        return EMPTY_RANGE
    start, end = to_datetime(start), to_datetime(end)
    if end <= as_of:
        return Range(start, True, end, False)
    return Range(start, True, as_of, True)


# ---- sequences (DSL.md §7) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One `then` step, ready to search.

    ``events``/``timestamps``: its candidate events in time order (already filtered by the
    condition when ``condition`` is None). ``condition(event, chain)`` tests a candidate given
    the events chosen for the earlier steps. ``gap(t)`` is the latest timestamp allowed after an
    event at t (None: up to as_of). ``needed``: indexes of earlier steps whose events the rest of
    the sequence reads through aliases (they are part of the memo key)."""

    events: list
    timestamps: list
    condition: Callable | None
    gap: Callable | None
    negated: bool
    needed: tuple[int, ...]


def sequence_exists(first: list, steps: tuple[Step, ...], as_of: datetime) -> bool:
    """TRUE when some choice of events satisfies every step in order.

    Depth-first over the candidates of each step, memoised on (step, previous event, events the
    remaining steps read): each (step, event) pair is explored once, so a two-step sequence costs
    O(m log n) for m first-step candidates, not O(n²).
    """
    if not steps:
        return bool(first)
    memo: dict = {}
    last = len(steps) - 1

    def search(k: int, previous: dict, chain: tuple) -> bool:
        step = steps[k]
        key = (k, id(previous), tuple(id(chain[i]) for i in step.needed))
        found = memo.get(key)
        if found is not None:
            return found
        t = previous["timestamp"]
        hi = as_of
        if step.gap is not None:
            limit = step.gap(t)
            if limit is not None and limit < hi:
                hi = limit
        start = bisect_right(step.timestamps, t)
        end = bisect_right(step.timestamps, hi)
        events = step.events
        condition = step.condition
        if step.negated:
            if condition is None:
                result = start >= end
            else:
                result = not any(condition(events[i], chain) for i in range(start, end))
        else:
            result = False
            for i in range(start, end):
                event = events[i]
                if condition is not None and not condition(event, chain):
                    continue
                if k == last or search(k + 1, event, chain + (event,)):
                    result = True
                    break
        memo[key] = result
        return result

    for event in first:
        if search(0, event, (event,)):
            return True
    return False


def gap_function(amount: int, unit: str) -> Callable[[datetime], datetime | None]:
    if unit in _UNIT_SECONDS:
        delta = timedelta(seconds=amount * _UNIT_SECONDS[unit])

        def gap(t: datetime) -> datetime | None:
            try:
                return t + delta
            except OverflowError:
                return None
        return gap
    return lambda t: add_duration(t, amount, unit)


# ---- long arithmetic chains -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Duration:
    amount: int
    unit: str


def fold_arithmetic(operators: tuple[str, ...], values: list):
    """Left-to-right arithmetic over a long chain (generated inline code would nest too deeply
    for Python's parser); null anywhere gives null, as inline code does."""
    current = values[0]
    for op, value in zip(operators, values[1:]):
        if current is None or value is None:
            return None
        if isinstance(current, Duration):
            current = add_duration(value, current.amount, current.unit, 1)
        elif isinstance(value, Duration):
            current = add_duration(current, value.amount, value.unit, 1 if op == "+" else -1)
        elif op == "+":
            current = checked(current + value)
        elif op == "-":
            current = checked(current - value)
        elif op == "*":
            current = checked(current * value)
        elif op == "/":
            current = divide(current, value)
        else:
            current = modulo(current, value)
    return current
