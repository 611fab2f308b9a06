"""Hypothesis strategies for well-typed PQL trees over the Luma schema (shared by property tests).

The generator covers every construct of DSL.md: every grammar rule, every function of the
registry, every aggregate, window, unit and operator, dates and datetimes (and the two compared),
`profile.x` inside an event `where`, sequences whose steps read earlier steps through aliases, and
integers at the edge of the 64-bit range. tests/test_differential.py checks that it does
(`test_the_generator_covers_every_construct`).

Trees are built by type: ``typed(T, scope)`` draws an expression of type T ("string", "integer",
"number", "boolean", "date", "datetime") that checks in ``scope`` (outside or inside an event's
`where`, and which aliases of earlier steps it may read).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from hypothesis import strategies as st

from cdp.dsl import ast

INT_MAX = 2**63 - 1

PROFILE = {
    "string": [("loyalty", "tier"), ("email",), ("home_address", "country"), ("preferred_category",),
               ("person", "first_name")],
    "integer": [("loyalty", "points")],
    "number": [("lifetime_value",)],
    "boolean": [("email_opt_in",)],
    "date": [("person", "birth_date"), ("loyalty", "joined")],
    "datetime": [("created_at",)],
}
EVENT = {
    "string": [("type",), ("channel",), ("product", "category"), ("product", "size"), ("product", "sku")],
    "integer": [("product", "quantity")],
    "number": [("product", "price"), ("order", "total")],
    "datetime": [("timestamp",)],
}
UNITS = ["second", "minute", "hour", "day", "week", "month", "year"]
DATE_UNITS = ["day", "week", "month", "year"]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
short_text = st.text(alphabet=st.sampled_from(list("aAbB zZ_%.-@éÉßİıΣσς😀\\\"'1")), max_size=4)
strings = st.builds(ast.StringLiteral, st.one_of(text, short_text, st.sampled_from(["gold", "US", "mens", "S"])))
# integers at the edge of the 64-bit range too (DSL.md §9: an overflow is null)
integers = st.builds(ast.NumberLiteral, st.one_of(
    st.integers(0, 1000), st.integers(0, 10**6),
    st.sampled_from([INT_MAX, INT_MAX - 1, 2**62, 2**32, 3037000500, 2**53, 2**53 + 1])))
small_integers = st.builds(ast.NumberLiteral, st.integers(0, 400))
decimals = st.builds(ast.NumberLiteral, st.one_of(
    st.integers(0, 10**9).map(lambda n: n / 1000),
    st.sampled_from([0.5, 0.25, 1.125, 100.75, 3.3, 1.1, 0.1, 1e300, 2.5, 1.25, 2.0**53, 2.0**63])))
date_literals = st.dates().map(lambda d: ast.Call("date", (ast.StringLiteral(d.isoformat()),)))
datetime_literals = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda d: ast.Call("datetime", (ast.StringLiteral(d.isoformat().replace("+00:00", "Z")),)))


@dataclass(frozen=True)
class Scope:
    event: bool = False  # inside an event's `where`: bare names are the event's fields
    aliases: tuple[str, ...] = ()  # earlier steps' events, readable as ALIAS.field


OUTSIDE = Scope()


def name(path, scope: Scope, prefix_ok: bool = True):
    """A profile attribute: bare outside an event, `profile.` inside it (or by choice outside)."""
    if scope.event:
        return st.just(ast.Name(path, profile_prefix=True))
    return st.builds(lambda p: ast.Name(path, profile_prefix=p), st.booleans() if prefix_ok else st.just(False))


@cache  # one strategy object per argument: building them is what costs
def leaves(type_: str, scope: Scope):
    options = []
    options += [name(p, scope) for p in PROFILE.get(type_, [])]
    if scope.event:
        options += [st.just(ast.Name(p)) for p in EVENT.get(type_, [])]
        options += [st.just(ast.Name((a, *p))) for a in scope.aliases for p in EVENT.get(type_, [])]
    literal = {"string": strings, "integer": integers, "number": st.one_of(decimals, integers),
               "boolean": st.builds(ast.BooleanLiteral, st.booleans()),
               "date": st.one_of(date_literals, st.just(ast.Call("today", ()))),
               "datetime": st.one_of(datetime_literals, st.just(ast.Call("now", ())))}[type_]
    options.append(literal)
    return st.one_of(options)


@cache  # one strategy object per argument: building them is what costs
def typed(type_: str, scope: Scope = OUTSIDE, depth: int = 2):
    """An expression of the given type that checks in scope."""
    if depth <= 0:
        return leaves(type_, scope)
    inner = lambda t: typed(t, scope, depth - 1)  # noqa: E731
    numeric = st.one_of(inner("integer"), inner("number"))
    temporal = st.one_of(inner("date"), inner("datetime"))
    options = [leaves(type_, scope)]
    if type_ == "string":
        options += [
            st.builds(lambda f, x: ast.Call(f, (x,)), st.sampled_from(["lower", "upper", "trim"]), inner("string")),
            st.builds(lambda xs: ast.Call("concat", tuple(xs)), st.lists(inner("string"), min_size=1, max_size=3)),
            st.builds(lambda xs, n: ast.Call("coalesce", tuple(xs) + ((ast.NullLiteral(),) if n else ())),
                      st.lists(inner("string"), min_size=1, max_size=2), st.booleans()),
        ]
    elif type_ == "integer":
        options += [
            st.builds(lambda xs, ops: ast.Arithmetic(tuple(xs), tuple(ops[:len(xs) - 1])),
                      st.lists(inner("integer"), min_size=2, max_size=3),
                      st.lists(st.sampled_from(["+", "-"]), min_size=2, max_size=2)),
            st.builds(lambda xs, ops: ast.Arithmetic(tuple(xs), tuple(ops[:len(xs) - 1])),
                      st.lists(inner("integer"), min_size=2, max_size=3),
                      st.lists(st.sampled_from(["*", "%"]), min_size=2, max_size=2)),
            # a chain longer than PostgreSQL's nested checks (a running sum there)
            st.builds(lambda xs: ast.Arithmetic(tuple(xs), ("+", "-") * 4 + ("+",)),
                      st.lists(inner("integer"), min_size=10, max_size=10)),
            st.builds(ast.Negate, inner("integer")),
            st.builds(lambda f, x: ast.Call(f, (x,)), st.sampled_from(["abs", "round", "floor", "ceil"]), inner("integer")),
            st.builds(lambda x, d: ast.Call("round", (x, d)), inner("integer"),
                      st.one_of(small_integers, st.builds(ast.Negate, small_integers))),
            st.builds(lambda x: ast.Call("length", (x,)), inner("string")),
            st.builds(lambda p: ast.Call("size", (ast.Name(("interests",), profile_prefix=p),)),
                      st.booleans() if not scope.event else st.just(True)),
            *[st.builds(lambda x, f=f: ast.Call(f, (x,)), temporal)
              for f in ("year", "month", "day", "day_of_week", "days_since", "days_until", "age")],
            st.builds(lambda xs: ast.Call("coalesce", tuple(xs)), st.lists(inner("integer"), min_size=1, max_size=3)),
        ]
        if not scope.event:
            options += [
                st.builds(lambda f: ast.Aggregate("count", None, f), filters()),
                st.builds(lambda path, f: ast.Aggregate("count_distinct", path, f),
                          st.sampled_from([p for ps in EVENT.values() for p in ps]), value_filters()),
                st.builds(lambda f: ast.Aggregate("sum", ("product", "quantity"), f), value_filters()),
                *[st.builds(lambda f, fn=fn: ast.Aggregate(fn, ("product", "quantity"), f), value_filters())
                  for fn in ("min", "max", "first", "last")],
            ]
    elif type_ == "number":
        options += [
            st.builds(lambda xs, ops: ast.Arithmetic(tuple(xs), tuple(ops[:len(xs) - 1])),
                      st.lists(numeric, min_size=2, max_size=3),
                      st.lists(st.sampled_from(["+", "-"]), min_size=2, max_size=2)),
            st.builds(lambda xs, ops: ast.Arithmetic(tuple(xs), tuple(ops[:len(xs) - 1])),
                      st.lists(numeric, min_size=2, max_size=3),
                      st.lists(st.sampled_from(["*", "/", "%"]), min_size=2, max_size=2)),
            st.builds(lambda a, b: ast.Arithmetic((a, b), ("/",)), numeric, numeric),
            st.builds(ast.Negate, inner("number")),
            st.builds(lambda f, x: ast.Call(f, (x,)), st.sampled_from(["abs", "round", "floor", "ceil"]), inner("number")),
            st.builds(lambda x, d: ast.Call("round", (x, d)), inner("number"),
                      st.one_of(small_integers, st.builds(ast.Negate, small_integers))),
            st.builds(lambda xs: ast.Call("coalesce", tuple(xs)), st.lists(numeric, min_size=1, max_size=3)),
        ]
        if not scope.event:
            options += [
                st.builds(lambda path, f: ast.Aggregate("sum", path, f), st.sampled_from(EVENT["number"]), value_filters()),
                st.builds(lambda path, f: ast.Aggregate("avg", path, f),
                          st.sampled_from(EVENT["number"] + EVENT["integer"]), value_filters()),
                st.builds(lambda fn, path, f: ast.Aggregate(fn, path, f), st.sampled_from(["min", "max", "first", "last"]),
                          st.sampled_from(EVENT["number"]), value_filters()),
            ]
    elif type_ == "date":
        options += [
            st.builds(lambda d, op, n, u: ast.Arithmetic((d, ast.DurationLiteral(n, u)), (op,)),
                      inner("date"), st.sampled_from(["+", "-"]), st.integers(0, 400), st.sampled_from(DATE_UNITS)),
            st.builds(lambda n, u, d: ast.Arithmetic((ast.DurationLiteral(n, u), d), ("+",)),
                      st.integers(0, 40), st.sampled_from(DATE_UNITS), inner("date")),
            st.builds(lambda xs: ast.Call("coalesce", tuple(xs)), st.lists(inner("date"), min_size=1, max_size=2)),
        ]
    elif type_ == "datetime":
        options += [
            st.builds(lambda d, op, n, u: ast.Arithmetic((d, ast.DurationLiteral(n, u)), (op,)),
                      inner("datetime"), st.sampled_from(["+", "-"]), st.integers(0, 400), st.sampled_from(UNITS)),
            # a date among datetimes is widened to midnight UTC (DSL.md §2)
            st.builds(lambda a, b: ast.Call("coalesce", (a, b)), inner("date"), inner("datetime")),
        ]
        if not scope.event:
            options += [st.builds(lambda fn, f: ast.Aggregate(fn, ("timestamp",), f),
                                  st.sampled_from(["min", "max", "first", "last"]), value_filters())]
    elif type_ == "boolean":
        return conditions(scope, depth)
    return st.one_of(options)


@cache  # one strategy object per argument: building them is what costs
def string_lists(scope: Scope):
    return st.builds(lambda xs: ast.ListLiteral(tuple(xs)), st.lists(strings, max_size=3))


@cache  # one strategy object per argument: building them is what costs
def predicates(scope: Scope, depth: int):
    inner = lambda t: typed(t, scope, max(depth - 1, 0))  # noqa: E731
    numeric = st.one_of(inner("integer"), inner("number"))
    temporal = st.one_of(inner("date"), inner("datetime"))
    compare = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    options = [
        st.builds(ast.Comparison, numeric, compare, numeric),
        st.builds(ast.Comparison, inner("string"), compare, inner("string")),
        st.builds(ast.Comparison, temporal, compare, temporal),
        st.builds(ast.Comparison, inner("boolean") if depth > 1 else leaves("boolean", scope),
                  st.sampled_from(["=", "!="]), leaves("boolean", scope)),
        st.builds(ast.InList, inner("string"), string_lists(scope), st.booleans()),
        st.builds(ast.InList, numeric, st.builds(lambda xs: ast.ListLiteral(tuple(xs)),
                                                 st.lists(st.one_of(integers, decimals), max_size=3)), st.booleans()),
        st.builds(ast.InList, temporal, st.builds(lambda xs: ast.ListLiteral(tuple(xs)),
                                                  st.lists(date_literals, max_size=2)), st.booleans()),
        st.builds(ast.Between, numeric, numeric, numeric, st.booleans()),
        st.builds(ast.Between, temporal, temporal, temporal, st.booleans()),
        st.builds(ast.Between, inner("string"), strings, strings, st.booleans()),
        st.builds(ast.IsNull, st.one_of(numeric, inner("string"), temporal), st.booleans()),
        st.builds(ast.StringTest, st.sampled_from(["contains", "starts with", "ends with"]), inner("string"), inner("string")),
        st.builds(ast.StringTest, st.just("like"), inner("string"),
                  st.builds(ast.StringLiteral, st.sampled_from(["a%", "_b", "%\\%%", "%", "", "%é_", "S"]))),
        st.builds(ast.StringTest, st.just("matches"), inner("string"),
                  st.builds(ast.StringLiteral, st.sampled_from(["^a", "b+$", "luma\\.com", "(?i)^gold$", "\\d", "é.", ""]))),
        st.builds(ast.Has, st.just("has"), name(("interests",), scope), strings),
        st.builds(ast.Has, st.sampled_from(["has any", "has all"]), name(("interests",), scope), string_lists(scope)),
        name(("email_opt_in",), scope),
    ]
    if not scope.event:
        options += [st.builds(ast.SegmentRef, st.sampled_from(["vip", "churn-risk"])), event_terms(), event_terms(),
                    sequences()]
    return st.one_of(options)


@cache  # one strategy object per argument: building them is what costs
def conditions(scope: Scope = OUTSIDE, depth: int = 2):
    return st.recursive(predicates(scope, depth), lambda inner: st.one_of(
        st.builds(lambda xs: ast.BoolChain("and", tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda xs: ast.BoolChain("or", tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(ast.Not, inner),
    ), max_leaves=4)


# ---- event terms -----------------------------------------------------------------------------

@cache  # one strategy object per argument: building them is what costs
def bounds():
    """A window bound: anything temporal that does not read the filtered event (a bare name in a
    bound is a profile attribute), or null (an empty window)."""
    return st.one_of(
        st.builds(lambda n, u: ast.Arithmetic((ast.Call("now", ()), ast.DurationLiteral(n, u)), ("-",)),
                  st.integers(0, 400), st.sampled_from(UNITS)),
        date_literals, datetime_literals,
        st.sampled_from([ast.Name(p) for p in PROFILE["date"] + PROFILE["datetime"]]),
        st.just(ast.NullLiteral()),
    )


@cache  # one strategy object per argument: building them is what costs
def absolute_windows():
    return st.one_of(
        st.none(),
        st.builds(ast.WithinLast, st.integers(0, 400), st.sampled_from(UNITS)),
        st.builds(ast.WithinPeriod, st.sampled_from(["today", "week", "month", "year"])),
        st.builds(ast.Since, bounds()),
        st.builds(ast.Before, bounds()),
        st.builds(ast.FromTo, bounds(), bounds()),
    )


@cache  # one strategy object per argument: building them is what costs
def event_conditions(aliases: tuple[str, ...] = ()):
    return st.one_of(st.none(), conditions(Scope(event=True, aliases=aliases), 1))


@cache  # one strategy object per argument: building them is what costs
def filters():
    return st.builds(ast.EventFilter, st.sampled_from([None, "x"]), event_conditions(), absolute_windows())


@cache  # one strategy object per argument: building them is what costs
def value_filters():  # an aggregate over event.PATH takes no alias
    return st.builds(ast.EventFilter, st.none(), event_conditions(), absolute_windows())


@st.composite
def sequences(draw):
    """exists event as s0 … then [no] event as s1 … : later steps may read earlier ones."""
    count = draw(st.integers(1, 3))
    first = ast.EventFilter("s0", draw(event_conditions()), draw(absolute_windows()))
    steps = []
    aliases: tuple[str, ...] = ("s0",)
    for k in range(1, count + 1):
        negated = k == count and draw(st.booleans())
        gap = draw(st.one_of(st.none(), st.builds(ast.WithinGap, st.integers(0, 48), st.sampled_from(UNITS))))
        condition = draw(st.one_of(event_conditions(aliases), st.builds(
            lambda a, p: ast.Comparison(ast.Name((a, *p)), "=", ast.Name(p)),
            st.sampled_from(aliases), st.sampled_from(EVENT["string"] + EVENT["integer"]))))
        alias = draw(st.sampled_from([None, f"s{k}"]))
        steps.append(ast.SequenceStep(negated, ast.EventFilter(alias, condition, gap)))
        if alias:
            aliases += (alias,)
    return ast.Exists(first, tuple(steps))


@cache  # one strategy object per argument: building them is what costs
def event_terms():
    return st.one_of(
        st.builds(ast.Exists, filters()),
        sequences(),
        st.builds(ast.NoEvent, filters()),
        st.builds(lambda f, n: ast.Comparison(ast.Aggregate("count", None, f), ">=", ast.NumberLiteral(n)),
                  filters(), st.integers(0, 3)),
    )


def expressions(type_: str):
    """An expression of the type, outside any event (a short repr: Hypothesis prints it)."""
    return st.deferred(lambda: typed(type_))


# deferred: the strategy's repr stays short (the built one's runs to hundreds of kB)
segments = st.deferred(lambda: conditions(OUTSIDE, 2))
