"""The language's functions inside SQLite, registered on every connection.

SQLite lacks simple Unicode case mapping, RE2, SQL-style `%` on reals, calendar arithmetic,
case-sensitive LIKE and 64-bit integer arithmetic that gives null rather than an error on
overflow (DSL.md §9). Two kinds of functions fill the gaps:

* every function of the registry whose SQLite form is ``python_udf`` runs its very Python form
  as ``pql_<name>`` (derived from the record here: nothing to write per function);
* the operators' helpers below run the in-memory runtime's code.

So SQLite and the in-memory engine cannot disagree on these; PostgreSQL, whose forms are
native, is what the differential test holds them against. Dates arrive as 'YYYY-MM-DD' text,
datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

from cdp.dsl.regex import compile_regex, like_to_regex
from cdp.dsl import runtime
from cdp.functions.registry import Function, all_functions, python_udf, udf_name
from cdp.dsl.runtime import checked


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


def to_sqlite(value):
    """A Python result as SQLite holds it; out-of-range numbers are null (DSL.md §9)."""
    if isinstance(value, (date, datetime)):
        return to_text(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    return checked(value)


_FROM_SQLITE = {
    "temporal": to_value,
    "list": lambda text: None if text is None else tuple(json.loads(text)),
}


def udf(function: Function):
    """``pql_<name>``: the record's Python form over SQLite's values."""
    python = function.python
    convert = [_FROM_SQLITE.get(p.accepts) for p in function.params]
    clock = function.needs_clock
    propagate = function.null_propagating

    def call(*args):
        prefix = []
        if clock:
            prefix, args = [to_value(args[0])], args[1:]
        if propagate and any(a is None for a in args):
            return None
        values = []
        for index, arg in enumerate(args):
            conversion = convert[min(index, len(convert) - 1)] if convert else None
            values.append(conversion(arg) if conversion is not None and arg is not None else arg)
        return to_sqlite(python(*prefix, *values))

    low, high = function.arity
    arity = -1 if high is None or high != low else low + (1 if clock else 0)
    return arity, call


def _null_safe(function):
    def wrapper(*args):
        if any(a is None for a in args):
            return None
        return function(*args)
    return wrapper


def _add(text, amount, unit, sign):
    if text is None:
        return None
    return to_text(runtime.add_duration(to_value(text), amount, unit, sign))


def _like(value, pattern):
    if value is None or pattern is None:
        return None
    return int(compile_regex(like_to_regex(pattern)).search(value) is not None)


def _regex(value, pattern):
    if value is None or pattern is None:
        return None
    return int(compile_regex(pattern).search(value) is not None)


def _arithmetic(operation):
    """The runtime's arithmetic: an integer outside 64 bits or a number that is not finite is
    null (DSL.md §9), where SQLite says "integer overflow" or gives an infinity."""
    return _null_safe(lambda *args: checked(operation(*args)))


# The operators' helpers (not functions of the language).
OPERATORS = {
    "pql_mod": (2, _null_safe(runtime.modulo)),
    "pql_add": (4, _add),
    "pql_to_datetime": (1, _null_safe(lambda text: to_text(runtime.to_datetime(to_value(text))))),
    "pql_like": (2, _like),
    "pql_regex": (2, _regex),
    "pql_plus": (2, _arithmetic(lambda a, b: a + b)),
    "pql_minus": (2, _arithmetic(lambda a, b: a - b)),
    "pql_times": (2, _arithmetic(lambda a, b: a * b)),
    "pql_divide": (2, _null_safe(runtime.divide)),
    "pql_negate": (1, _arithmetic(lambda a: -a)),
    "pql_arithmetic": (-1, lambda operators, *values: runtime.fold_arithmetic(tuple(operators), list(values))),
}


class Average:
    """`avg` as the in-memory engine computes it: the exact sum of the non-null values (Python
    integers do not overflow) divided by their number; null when none, or not finite (§9)."""

    def __init__(self):
        self.total, self.count = 0, 0

    def step(self, value):
        if value is not None:
            self.total += value
            self.count += 1

    def finalize(self):
        return checked(self.total / self.count) if self.count else None


AGGREGATES = {"pql_avg": (1, Average)}


def functions() -> dict[str, tuple[int, object]]:
    """Every function to register: the operators' helpers and one per registry record whose
    SQLite form is its Python form."""
    found = dict(OPERATORS)
    for function in all_functions():
        if function.sql.get("sqlite") is python_udf:
            found[udf_name(function.name)] = udf(function)
    return found


def register(connection) -> None:
    for name, (arity, function) in functions().items():
        connection.create_function(name, arity, function, deterministic=True)
    for name, (arity, aggregate) in AGGREGATES.items():
        connection.create_aggregate(name, arity, aggregate)
