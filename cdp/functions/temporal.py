"""Date and time functions. The clock is `as_of`, passed in; nothing here reads the wall."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from cdp.pqltypes import DATE, DATETIME, INTEGER
from cdp.functions.registry import Function, Param, fixed, python_udf, register

_D = Param("d", "temporal")
_ONE_DAY = timedelta(days=1)


def parse_date_literal(text: str) -> date:
    if len(text) != 10:
        raise ValueError("expected YYYY-MM-DD")
    return date.fromisoformat(text)


def parse_datetime_literal(text: str) -> datetime:
    """ISO 8601; without an offset the time is UTC. Always returns an aware UTC datetime."""
    if len(text) < 10:
        raise ValueError("expected an ISO 8601 date and time")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _literal_error(parser):
    def validate(text: str) -> str | None:
        try:
            parser(text)
        except ValueError as exc:
            return str(exc)
        except OverflowError:  # an offset that moves the instant out of years 1 to 9999
            return "outside the range of datetimes, 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z in UTC"
        return None
    return validate


def as_date(d: date | datetime) -> date:
    return d.date() if isinstance(d, datetime) else d


def days_since(as_of: datetime, d: date | datetime) -> int:
    if isinstance(d, datetime):
        return (as_of - d) // _ONE_DAY
    return (as_of.date() - d).days


def days_until(as_of: datetime, d: date | datetime) -> int:
    if isinstance(d, datetime):
        return (d - as_of) // _ONE_DAY
    return (d - as_of.date()).days


def age(as_of: datetime, d: date | datetime) -> int:
    born = as_date(d)
    today = as_of.date()
    # A 29 February birthday is reached on 1 March in common years: (2, 28) < (2, 29).
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _part_postgresql(field: str):
    def form(compiler, node, args):
        return sa.cast(sa.func.extract(field, args[0]), sa.BigInteger)
    return form


def _days_postgresql(direction: int):
    def form(compiler, node, args):
        d = args[0]
        if node.args[0].type.name == "date":
            difference = compiler.today_param.op("-")(d) if direction > 0 else d.op("-")(compiler.today_param)
            return sa.cast(difference, sa.BigInteger)
        delta = compiler.as_of_param.op("-")(d) if direction > 0 else d.op("-")(compiler.as_of_param)
        return sa.cast(sa.func.floor(sa.func.extract("epoch", delta) / 86400), sa.BigInteger)
    return form


def _age_postgresql(compiler, node, args):
    born = sa.cast(args[0], sa.Date)
    today = compiler.today_param
    part = lambda field, d: sa.func.extract(field, d)  # noqa: E731
    not_yet = sa.case((sa.tuple_(part("month", today), part("day", today))
                       < sa.tuple_(part("month", born), part("day", born)), 1), else_=0)
    return sa.cast(part("year", today) - part("year", born) - not_yet, sa.BigInteger)


def _days_spark(direction: int):
    def form(compiler, node, args):
        d = args[0]
        if node.args[0].type.name == "date":
            return sa.cast(sa.func.datediff(compiler.today_param, d) if direction > 0
                           else sa.func.datediff(d, compiler.today_param), sa.BigInteger)
        micros = sa.func.unix_micros(compiler.as_of_param) - sa.func.unix_micros(d)
        micros = micros if direction > 0 else -micros
        # whole days rounded down, exactly (a double would round microseconds away)
        return sa.cast(sa.func.floor(sa.cast(micros, sa.Numeric(38, 0)) / 86_400_000_000), sa.BigInteger)
    return form


def _age_spark(compiler, node, args):
    born = sa.cast(args[0], sa.Date)
    today = compiler.today_param
    day_in_year = lambda d: sa.func.month(d) * 100 + sa.func.dayofmonth(d)  # noqa: E731
    not_yet = sa.case((day_in_year(today) < day_in_year(born), 1), else_=0)
    return sa.cast(sa.func.year(today) - sa.func.year(born) - not_yet, sa.BigInteger)


register(Function(
    name="now", params=(), result=fixed(DATETIME), python=lambda as_of: as_of, never_null=True, stage="as_of",
    sql={"default": lambda c, n, a: c.as_of_param},
    needs_clock=True, doc="`as_of` as a datetime.", example="created_at > now() - 30 days",
))
register(Function(
    name="today", params=(), result=fixed(DATE), python=lambda as_of: as_of.date(), never_null=True, stage="as_of",
    sql={"default": lambda c, n, a: c.today_param},
    needs_clock=True, doc="The date of `as_of` in UTC.", example="loyalty.joined = today()",
))
register(Function(
    name="date", params=(Param("text", "string", literal_only=True),), result=fixed(DATE),
    python=parse_date_literal, never_null=True, stage="compile", validate_literal=_literal_error(parse_date_literal),
    sql={"default": lambda c, n, a: c.date_literal(parse_date_literal(n.args[0].value))},
    doc='A date literal, `date("2026-11-28")`; a malformed one is an error at check time.',
    example='loyalty.joined >= date("2026-01-01")',
))
register(Function(
    name="datetime", params=(Param("text", "string", literal_only=True),), result=fixed(DATETIME),
    python=parse_datetime_literal, never_null=True, stage="compile",
    sql={"default": lambda c, n, a: c.datetime_literal(parse_datetime_literal(n.args[0].value))},
    validate_literal=_literal_error(parse_datetime_literal),
    doc='A datetime literal, `datetime("2026-11-28T10:00:00Z")` (no offset means UTC).',
    example='created_at < datetime("2026-11-28T10:00:00Z")',
))
register(Function(
    name="year", params=(_D,), result=fixed(INTEGER), sql={"sqlite": python_udf, "postgresql": _part_postgresql("year"), "duckdb": _part_postgresql("year"), "spark": _part_postgresql("year")}, python=lambda d: d.year,
    doc="The year of a date or datetime (UTC).", example="year(loyalty.joined) = 2026",
))
register(Function(
    name="month", params=(_D,), result=fixed(INTEGER), sql={"sqlite": python_udf, "postgresql": _part_postgresql("month"), "duckdb": _part_postgresql("month"), "spark": _part_postgresql("month")}, python=lambda d: d.month,
    doc="The month (1–12) of a date or datetime (UTC).",
    example="month(person.birth_date) = month(today())",
))
register(Function(
    name="day", params=(_D,), result=fixed(INTEGER), sql={"sqlite": python_udf, "postgresql": _part_postgresql("day"), "duckdb": _part_postgresql("day"), "spark": _part_postgresql("day")}, python=lambda d: d.day,
    doc="The day of the month of a date or datetime (UTC).", example="day(person.birth_date) = 1",
))
register(Function(
    name="day_of_week", params=(_D,), result=fixed(INTEGER), sql={"sqlite": python_udf, "postgresql": _part_postgresql("isodow"), "duckdb": _part_postgresql("isodow"), "spark": _part_postgresql("dayofweek_iso")}, python=lambda d: d.isoweekday(),
    doc="1 = Monday … 7 = Sunday.", example="day_of_week(created_at) >= 6",
))
register(Function(
    name="days_since", params=(_D,), result=fixed(INTEGER), python=days_since, needs_clock=True,
    sql={"sqlite": python_udf, "postgresql": _days_postgresql(+1), "duckdb": _days_postgresql(+1),
         "spark": _days_spark(+1)},
    doc="For a date: calendar days from it to `today()`. For a datetime: whole days of elapsed "
        "time to `as_of`, rounded down (negative when it lies after `as_of`).",
    example='days_since(last(event.timestamp where type = "purchase")) > 180',
))
register(Function(
    name="days_until", params=(_D,), result=fixed(INTEGER), python=days_until, needs_clock=True,
    sql={"sqlite": python_udf, "postgresql": _days_postgresql(-1), "duckdb": _days_postgresql(-1),
         "spark": _days_spark(-1)},
    doc="For a date: calendar days from `today()` to it. For a datetime: whole days of time from "
        "`as_of` to it, rounded down.",
    example="days_until(loyalty.joined) < 0",
))
register(Function(
    name="age", params=(_D,), result=fixed(INTEGER), python=age, needs_clock=True, sql={"sqlite": python_udf, "postgresql": _age_postgresql, "duckdb": _age_postgresql, "spark": _age_spark},
    doc="Whole years from the date (a datetime's UTC date) to `today()`; a 29 February birthday "
        "is reached on 1 March in common years.",
    example="age(person.birth_date) >= 18",
))
