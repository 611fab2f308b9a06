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


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _instants_of(value: Any, into: set[datetime]) -> None:
    cls = value.__class__
    if cls in _SCALARS:  # most values: no instant (the isinstance checks below are slow, Mapping's most)
        return
    if cls is datetime and value.tzinfo is timezone.utc:  # as loaded profiles hold them
        into.add(value)
    elif cls is dict:
        for v in value.values():
            if v.__class__ not in _SCALARS:
                _instants_of(v, into)
    elif isinstance(value, (datetime, date)):
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


def _points(reads: Any, profile: Any, cache: dict | None) -> tuple[tuple, list[datetime]]:
    """The profile's instants a segment's answer can turn on, sorted: its date and datetime
    attributes, the instants of the events of the types it reads, its literal instants — and the
    key they are shared under. Shared (``cache``) by the segments of one evaluation: the sorted
    list per set of types read, and its parts — the attributes' instants, each type's — computed
    once."""
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
    return key, found


_ATTRIBUTES, _ALL_EVENTS, _TYPE = object(), object(), object()  # keys of a cache's parts
_DAILY = object()  # key of a cache's "same time of day" candidate
_SHIFTS: dict[frozenset, tuple[timedelta, ...]] = {}  # window lengths → the shifts they give
_ZERO, _DAY = timedelta(0), timedelta(days=1)


def _part(cache: dict, key: Any, values: Any) -> set[datetime]:
    found = cache.get(key)
    if found is None:
        found = cache[key] = set()
        _instants_of(values, found)
    return found


def _after(candidate: datetime | None, as_of: datetime) -> datetime | None:
    """A candidate as it counts: itself when after ``as_of``, ``as_of`` + 1 µs when equal to it,
    nothing when before."""
    if candidate is None or candidate < as_of:
        return None
    return as_of + _TICK if candidate == as_of else candidate


def _shifted(points: list[datetime], as_of: datetime, shift: timedelta) -> datetime | None:
    """The earliest ``p + shift`` (as it counts) over the points: from the earliest ``p`` with
    ``p + shift ≥ as_of`` (a binary search)."""
    try:
        start = bisect_left(points, as_of - shift)
    except OverflowError:  # as_of - shift is before year 1 (every instant qualifies) or after 9999 (none)
        start = 0 if shift > _ZERO else len(points)
    for point in points[start:start + 2]:  # the first that can overflow is skipped, as before
        try:
            return _after(point + shift, as_of)
        except OverflowError:
            continue
    return None


def _monthly(points: list[datetime], as_of: datetime, months: int) -> datetime | None:
    best = None
    for point in points:
        for sign in (1, -1):
            try:
                candidate = _after(_add_months(point, sign * months), as_of)
            except (ValueError, OverflowError):
                continue
            if candidate is not None and (best is None or candidate < best):
                best = candidate
    return best


def _daily(points: list[datetime], as_of: datetime) -> datetime | None:
    """The next instant with the time of day of a point at or before ``as_of``, and the next UTC
    midnight (calendar windows and clock functions)."""
    best = _after(datetime.combine(as_of.date() + _DAY, time(), tzinfo=timezone.utc), as_of)
    for point in points:
        if point <= as_of:
            try:
                candidate = _after(point + ((as_of - point) // _DAY + 1) * _DAY, as_of)
            except OverflowError:
                continue
            if candidate is not None and candidate < best:
                best = candidate
    return best


_MISSING = object()


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
    among the sorted instants). ``cache``: shared by the segments of one profile's evaluation
    (one ``as_of``) — the instants per set of types read, and the earliest candidate per
    (instants, shift), per (instants, months) and per instants for the daily ones, so segments
    differing only in some window lengths share the rest."""
    if not reads.timed:
        return None
    if as_of.__class__ is not datetime or as_of.tzinfo is not timezone.utc:
        as_of = _instant(as_of)
    key, points = _points(reads, profile, cache)
    shifts = _SHIFTS.get(reads.durations)
    if shifts is None:
        shifts = _SHIFTS[reads.durations] = tuple(
            {_ZERO} | set(reads.durations) | {-d for d in reads.durations})
        if len(_SHIFTS) > 10_000:
            _SHIFTS.clear()
    # the earliest candidate per shift / months / daily, for these instants at this as_of: shared
    # by the segments of the evaluation (one dict per set of instants, looked up once here)
    shared: dict | None = None
    if cache is not None:
        shared = cache.get((_CANDIDATES, key, as_of))
        if shared is None:
            shared = cache[(_CANDIDATES, key, as_of)] = {}
    best: datetime | None = None
    for shift in shifts:
        if shared is None:
            candidate = _shifted(points, as_of, shift)
        else:
            candidate = shared.get(shift, _MISSING)
            if candidate is _MISSING:
                candidate = shared[shift] = _shifted(points, as_of, shift)
        if candidate is not None and (best is None or candidate < best):
            best = candidate
    for months in reads.months if points else ():
        if shared is None:
            candidate = _monthly(points, as_of, months)
        else:
            candidate = shared.get((_MONTHS, months), _MISSING)
            if candidate is _MISSING:
                candidate = shared[(_MONTHS, months)] = _monthly(points, as_of, months)
        if candidate is not None and (best is None or candidate < best):
            best = candidate
    if reads.clock or reads.periods:
        if shared is None:
            candidate = _daily(points, as_of)
        else:
            candidate = shared.get(_DAILY, _MISSING)
            if candidate is _MISSING:
                candidate = shared[_DAILY] = _daily(points, as_of)
        if candidate is not None and (best is None or candidate < best):
            best = candidate
    return best


_CANDIDATES = object()  # key of a cache's candidates per set of instants
_MONTHS = object()


# ---- the earliest over many segments -------------------------------------------------------------

def timing_parts(reads: Any) -> tuple[tuple, frozenset[timedelta], frozenset[int], bool] | None:
    """What :func:`next_change` computes from for one segment's ``reads``, in the form
    :func:`earliest_change` merges: (the key of the instants it reads, its shifts, its window
    lengths in months, whether it has daily candidates); None when its answer cannot change with
    time alone."""
    if not reads.timed:
        return None
    key = (None if reads.any_event else reads.event_types, reads.literal_instants)
    return (key, frozenset({_ZERO} | set(reads.durations) | {-d for d in reads.durations}), reads.months,
            bool(reads.clock or reads.periods))


def earliest_change(parts: Any, profile: Any, as_of: datetime) -> datetime | None:
    """The earliest of :func:`next_change` over several segments (None: none of them can change),
    given their :func:`timing_parts` (None entries skipped), for one profile at ``as_of``.

    Exactly ``min`` of the segments' own next_change: each one's is the earliest candidate over its
    instants × its shifts (and months, and daily ones), so segments reading the same instants
    (the same event types and literal instants) are merged into one set of shifts, months and a
    daily flag (:func:`merge_timing`), and the earliest over the merged candidates is the earliest
    of theirs (:func:`earliest_merged`)."""
    return earliest_merged(merge_timing(parts), profile, as_of)


def merge_timing(parts: Any) -> tuple[tuple[tuple, tuple[timedelta, ...], tuple[int, ...], bool], ...]:
    """:func:`timing_parts` (None entries skipped) merged per key of the instants they read: (key,
    the shifts sorted, the months, daily). A function of the parts alone: streaming keeps it per
    set of segments evaluated."""
    merged: dict[tuple, list] = {}
    for part in parts:
        if part is None:
            continue
        key, shifts, months, daily = part
        found = merged.get(key)
        if found is None:
            merged[key] = [set(shifts), set(months), daily]
        else:
            found[0].update(shifts)
            if months:
                found[1].update(months)
            if daily:
                found[2] = True
    return tuple((key, tuple(sorted(shifts)), tuple(sorted(months)), daily)
                 for key, (shifts, months, daily) in merged.items())


def earliest_merged(merged: Any, profile: Any, as_of: datetime, instants: SchemaInstants | None = None
                    ) -> datetime | None:
    """:func:`earliest_change` from :func:`merge_timing`'s answer. Per set of instants the shifts
    are searched from the instants' side — for each instant the least shift reaching ``as_of`` (a
    binary search among the sorted shifts) — so a profile with a few events and a catalogue with
    many window lengths costs a few searches, not one per window length. ``instants``: where a
    profile loaded under the schema holds instants (:class:`SchemaInstants`; the same answer,
    without walking every value of the profile)."""
    if not merged:
        return None
    if as_of.__class__ is not datetime or as_of.tzinfo is not timezone.utc:
        as_of = _instant(as_of)
    cache: dict = {}
    stamped = False
    if instants is not None:
        instants.prime(cache, profile)
        stamped = instants.events_by_timestamp
    best: datetime | None = None
    for key, ordered, months, daily in merged:
        points = _points_of(key, profile, cache, stamped)
        if points:
            count = len(ordered)
            for point in points:
                start = bisect_left(ordered, as_of - point)  # the least shift with point + shift ≥ as_of
                if start < count:
                    try:
                        candidate = _after(point + ordered[start], as_of)
                    except OverflowError:  # and every larger shift
                        continue
                    if candidate is not None and (best is None or candidate < best):
                        best = candidate
            for m in months:
                candidate = _monthly(points, as_of, m)
                if candidate is not None and (best is None or candidate < best):
                    best = candidate
        if daily:
            candidate = _daily(points, as_of)
            if candidate is not None and (best is None or candidate < best):
                best = candidate
    return best


def _points_of(key: tuple, profile: Any, cache: dict, stamped: bool = False) -> list[datetime]:
    """:func:`_points` by its key: (event types read, None: any; literal instants). ``stamped``:
    an event's only instant is its timestamp (:class:`SchemaInstants`)."""
    types, literal_instants = key
    points: set[datetime] = set(literal_instants)
    points |= _part(cache, _ATTRIBUTES, profile.attributes)
    if types is None:
        if stamped:
            points |= _stamped(cache, _ALL_EVENTS, profile.timestamps)
        else:
            points |= _part(cache, _ALL_EVENTS, profile.events)
    else:
        for event_type in types:
            if stamped:
                points |= _stamped(cache, (_TYPE, event_type), profile.by_type.get(event_type, _NO_EVENTS)[1])
            else:
                points |= _part(cache, (_TYPE, event_type), profile.by_type.get(event_type, ((),))[0])
    return sorted(points)


_NO_EVENTS: tuple[tuple, tuple] = ((), ())


def _dated(type_: Any) -> bool:
    """Whether a value of this schema type holds dates or datetimes (a date, a datetime, a list of them)."""
    name = getattr(type_, "name", None)
    if name == "list":
        name = getattr(getattr(type_, "element", None), "name", None)
    return name in ("date", "datetime")


class SchemaInstants:
    """Where a profile loaded under ``schema`` holds its instants, so that :func:`earliest_merged`
    need not walk every value of it. A loaded profile's values are converted by the schema
    (cdp/profiles/documents.py ``_stored_fields``, cdp/engine/profile.py ``load_profile``): a
    field the schema types as a date or datetime (or a list of them) holds dates or datetimes; a
    field it does not know keeps its JSON value, and JSON has no date. So the attributes' instants
    are those of the schema's date and datetime paths, and — when the schema's events have no date
    or datetime field but the timestamp — an event's only instant is its timestamp: a type's
    instants are its timestamp list (``by_type``), the profile's all its events'
    (``timestamps``) — exactly what walking the values gives (the same instants, each converted by
    :func:`_instants_of` as the walk converts it)."""

    __slots__ = ("attribute_paths", "events_by_timestamp")

    def __init__(self, schema: Any):
        self.attribute_paths = tuple(sorted(path for path, type_ in schema.profile.items() if _dated(type_)))
        self.events_by_timestamp = not any(_dated(type_) for path, type_ in schema.all_event_fields().items()
                                           if path != "timestamp")

    def prime(self, cache: dict, profile: Any) -> None:
        """The attributes' instants, in ``cache`` under the key :func:`_part` reads."""
        found: set[datetime] = set()
        attributes = profile.attributes
        for path in self.attribute_paths:
            value = attributes.get(path)
            if value is not None:
                _instants_of(value, found)
        cache[_ATTRIBUTES] = found


def _stamped(cache: dict, key: Any, stamps: Any) -> set[datetime]:
    """:func:`_part` of events whose only instant is their timestamp, from their timestamps."""
    found = cache.get(key)
    if found is None:
        found = cache[key] = _stamps(stamps)
    return found


def _stamps(stamps: list) -> set[datetime]:
    """The instants of events whose only instant is their timestamp, as :func:`_instants_of` gives them."""
    found: set[datetime] = set()
    for stamp in stamps:
        if stamp.__class__ is datetime and stamp.tzinfo is timezone.utc:
            found.add(stamp)
        else:
            _instants_of(stamp, found)
    return found
