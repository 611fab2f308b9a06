"""The language's functions inside SQLite, registered on every connection.

SQLite lacks simple Unicode case mapping, RE2, SQL-style `%` on reals, calendar arithmetic and
case-sensitive LIKE; each of these runs the very Python form of the function registry (or of
the in-memory runtime), so SQLite and the in-memory engine cannot disagree. Dates arrive as
'YYYY-MM-DD' text, datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC).
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from cdp.dsl.regex import compile_regex
from cdp.engine import runtime
from cdp.functions import lookup


def to_value(text):
    """SQLite text → date or aware datetime."""
    if text is None:
        return None
    if len(text) == 10:
        return date.fromisoformat(text)
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def to_text(value):
    if value is None:
        return None
    if isinstance(value, datetime):  # the year in four digits, as stored (cdp.storage.database.sqlite_text)
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value.isoformat()


def _null_safe(function):
    def wrapper(*args):
        if any(a is None for a in args):
            return None
        return function(*args)
    return wrapper


def _temporal(name: str):
    python = lookup(name).python
    return _null_safe(lambda text: python(to_value(text)))


def _clocked(name: str):
    python = lookup(name).python
    return _null_safe(lambda as_of, text: python(to_value(as_of), to_value(text)))


def _add(text, amount, unit, sign):
    if text is None:
        return None
    return to_text(runtime.add_duration(to_value(text), amount, unit, sign))


def _like(value, pattern):
    from cdp.engine.memory import like_to_regex

    if value is None or pattern is None:
        return None
    return int(compile_regex(like_to_regex(pattern)).search(value) is not None)


def _regex(value, pattern):
    if value is None or pattern is None:
        return None
    return int(compile_regex(pattern).search(value) is not None)


def _round(x, digits):
    if x is None or digits is None:
        return None
    return lookup("round").python(x, digits)


def _floor(x):
    return None if x is None else lookup("floor").python(x)


def _ceil(x):
    return None if x is None else lookup("ceil").python(x)


FUNCTIONS = {
    "pql_lower": (1, _null_safe(lookup("lower").python)),
    "pql_upper": (1, _null_safe(lookup("upper").python)),
    "pql_round": (2, _round),
    "pql_floor": (1, _floor),
    "pql_ceil": (1, _ceil),
    "pql_mod": (2, _null_safe(runtime.modulo)),
    "pql_year": (1, _temporal("year")),
    "pql_month": (1, _temporal("month")),
    "pql_day": (1, _temporal("day")),
    "pql_day_of_week": (1, _temporal("day_of_week")),
    "pql_days_since": (2, _clocked("days_since")),
    "pql_days_until": (2, _clocked("days_until")),
    "pql_age": (2, _clocked("age")),
    "pql_add": (4, _add),
    "pql_to_datetime": (1, _null_safe(lambda text: to_text(runtime.to_datetime(to_value(text))))),
    "pql_like": (2, _like),
    "pql_regex": (2, _regex),
}


def register(connection) -> None:
    for name, (arity, function) in FUNCTIONS.items():
        connection.create_function(name, arity, function, deterministic=True)
