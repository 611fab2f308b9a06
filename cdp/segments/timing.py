"""The next instant at which a profile's answer for a streaming segment can change with time
alone (no new data): :func:`next_change`, from what the segment reads (cdp/segments/streaming.py
:class:`Reads`) and the profile's instants. Stored in ``segment_due``; the ``segments.due`` job
re-evaluates the profile then."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

_TICK = timedelta(microseconds=1)


def _instant(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return datetime.combine(value, time(), tzinfo=timezone.utc)


def _instants_of(value: Any, into: set[datetime]) -> None:
    if isinstance(value, (datetime, date)):
        into.add(_instant(value))
    elif isinstance(value, Mapping):
        for v in value.values():
            _instants_of(v, into)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _instants_of(v, into)


def _add_months(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    for day in (at.day, 30, 29, 28):
        try:
            return at.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise ValueError(at)


def _points(reads: Any, profile: Any, cache: dict | None) -> list[datetime]:
    """The profile's instants a segment's answer can turn on, sorted: its date and datetime
    attributes, the instants of the events of the types it reads, its literal instants. Shared
    (``cache``) by the segments of one evaluation: the sorted list per set of types read, and
    its parts — the attributes' instants, each type's — computed once."""
    key = (None if reads.any_event else reads.event_types, reads.literal_instants)
    found = None if cache is None else cache.get(key)
    if found is None:
        if cache is None:
            cache = {}
        points: set[datetime] = set(reads.literal_instants)
        points |= _part(cache, _ATTRIBUTES, profile.attributes)
        if reads.any_event:
            points |= _part(cache, _ALL_EVENTS, profile.events)
        else:
            for event_type in reads.event_types:  # only the events its filters can admit
                points |= _part(cache, (_TYPE, event_type), profile.by_type.get(event_type, ((),))[0])
        found = cache[key] = sorted(points)
    return found


_ATTRIBUTES, _ALL_EVENTS, _TYPE = object(), object(), object()  # keys of a cache's parts
_SHIFTS: dict[frozenset, tuple[timedelta, ...]] = {}  # window lengths → the shifts they give


def _part(cache: dict, key: Any, values: Any) -> set[datetime]:
    found = cache.get(key)
    if found is None:
        found = cache[key] = set()
        _instants_of(values, found)
    return found


def next_change(reads: Any, profile: Any, as_of: datetime, cache: dict | None = None) -> datetime | None:
    """An instant after ``as_of``, never later than the first at which the answer for a profile
    can change with time alone; None when it cannot. Candidates: every instant of the profile
    (times and date values of the events of the types it reads, date and datetime attributes)
    shifted by each window length (and one tick after, windows being closed or open at either
    end), the literal instants, and, for calendar windows and clock functions, the next UTC
    midnight and the profile's instants moved by whole days.

    The earliest candidate after ``as_of`` is found without listing them all: a candidate ``c``
    counts as ``c`` when after ``as_of``, as ``as_of`` + 1 µs when equal to it; for one shift the
    earliest comes from the earliest instant ``p`` with ``p + shift ≥ as_of`` (a binary search
    among the sorted instants). ``cache``: shared by the segments of one profile's evaluation."""
    if not reads.timed:
        return None
    as_of = _instant(as_of)
    points = _points(reads, profile, cache)
    best: datetime | None = None

    def consider(candidate: datetime) -> None:
        nonlocal best
        if candidate < as_of:
            return
        if candidate == as_of:
            candidate = as_of + _TICK
        if best is None or candidate < best:
            best = candidate

    shifts = _SHIFTS.get(reads.durations)
    if shifts is None:
        shifts = _SHIFTS[reads.durations] = tuple(
            {timedelta(0)} | set(reads.durations) | {-d for d in reads.durations})
        if len(_SHIFTS) > 10_000:
            _SHIFTS.clear()
    for shift in shifts:
        try:
            start = bisect_left(points, as_of - shift)
        except OverflowError:  # as_of - shift is before year 1 (every instant qualifies) or after 9999 (none)
            start = 0 if shift > timedelta(0) else len(points)
        for point in points[start:start + 2]:  # the first that can overflow is skipped, as before
            try:
                consider(point + shift)
                break
            except OverflowError:
                continue
    for point in points if reads.months else ():
        for months in reads.months:
            for sign in (1, -1):
                try:
                    consider(_add_months(point, sign * months))
                except (ValueError, OverflowError):
                    continue
    if reads.clock or reads.periods:
        day = timedelta(days=1)
        for point in points:
            if point <= as_of:  # the next instant with the same time of day
                try:
                    consider(point + ((as_of - point) // day + 1) * day)
                except OverflowError:
                    pass
        consider(datetime.combine(as_of.date() + day, time(), tzinfo=timezone.utc))
    return best
