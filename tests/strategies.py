"""Hypothesis strategies for well-typed PQL trees over the Luma schema (shared by property tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from cdp.dsl import ast

PROFILE_NUMERIC = [("loyalty", "points"), ("lifetime_value",)]
PROFILE_STRING = [("loyalty", "tier"), ("email",), ("home_address", "country"), ("preferred_category",)]
PROFILE_DATE = [("person", "birth_date"), ("loyalty", "joined")]
EVENT_NUMERIC = [("product", "price"), ("product", "quantity"), ("order", "total")]
EVENT_STRING = [("type",), ("channel",), ("product", "category"), ("product", "size"), ("product", "sku")]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
strings = st.builds(ast.StringLiteral, text)
integers = st.builds(ast.NumberLiteral, st.integers(min_value=0, max_value=10**6))
decimals = st.builds(ast.NumberLiteral, st.integers(0, 10**9).map(lambda n: n / 1000))


def names(paths, event: bool, profile_prefix_ok: bool = True):
    if event:
        return st.sampled_from(paths).map(lambda p: ast.Name(p))
    return st.builds(lambda p, prefix: ast.Name(p, profile_prefix=prefix), st.sampled_from(paths),
                     st.booleans() if profile_prefix_ok else st.just(False))


def numeric(event: bool):
    base = st.one_of(integers, decimals, names(EVENT_NUMERIC if event else PROFILE_NUMERIC, event))
    return st.recursive(base, lambda inner: st.one_of(
        st.builds(lambda ops, xs: ast.Arithmetic(tuple(xs), tuple(ops[:len(xs) - 1])),
                  st.lists(st.sampled_from(["+", "-"]), min_size=3, max_size=3),
                  st.lists(inner, min_size=2, max_size=4)),
        st.builds(lambda ops, xs: ast.Arithmetic(tuple(xs), tuple(ops[:len(xs) - 1])),
                  st.lists(st.sampled_from(["*", "/", "%"]), min_size=3, max_size=3),
                  st.lists(inner, min_size=2, max_size=4)),
        st.builds(ast.Negate, inner),
        st.builds(lambda x: ast.Call("abs", (x,)), inner),
        st.builds(lambda x, d: ast.Call("round", (x, d)), inner, integers),
    ), max_leaves=6)


def string_value(event: bool):
    base = st.one_of(strings, names(EVENT_STRING if event else PROFILE_STRING, event))
    return st.recursive(base, lambda inner: st.one_of(
        st.builds(lambda x: ast.Call("lower", (x,)), inner),
        st.builds(lambda xs: ast.Call("concat", tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: ast.Call("coalesce", tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
    ), max_leaves=4)


def predicates(event: bool):
    num, s = numeric(event), string_value(event)
    comparisons = st.one_of(
        st.builds(ast.Comparison, num, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), num),
        st.builds(ast.Comparison, s, st.sampled_from(["=", "!=", "<", ">="]), s),
        st.builds(ast.InList, s, st.builds(lambda xs: ast.ListLiteral(tuple(xs)), st.lists(strings, max_size=3)),
                  st.booleans()),
        st.builds(ast.Between, num, num, num, st.booleans()),
        st.builds(ast.IsNull, st.one_of(num, s), st.booleans()),
        st.builds(ast.StringTest, st.sampled_from(["contains", "starts with", "ends with"]), s, s),
        st.builds(ast.StringTest, st.just("like"), s, st.builds(ast.StringLiteral, st.sampled_from(["a%", "_b", "%\\%%"]))),
        st.builds(ast.StringTest, st.just("matches"), s, st.builds(ast.StringLiteral, st.sampled_from(["^a", "b+$", "luma\\.com"]))),
    )
    if event:
        return comparisons
    return st.one_of(
        comparisons,
        st.builds(ast.Has, st.sampled_from(["has any", "has all"]), st.just(ast.Name(("interests",))),
                  st.builds(lambda xs: ast.ListLiteral(tuple(xs)), st.lists(strings, max_size=3))),
        st.just(ast.Name(("email_opt_in",))),
        st.builds(ast.SegmentRef, st.sampled_from(["vip", "churn-risk"])),
        event_terms(),
    )


def conditions(event: bool):
    return st.recursive(predicates(event), lambda inner: st.one_of(
        st.builds(lambda xs: ast.BoolChain("and", tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda xs: ast.BoolChain("or", tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(ast.Not, inner),
    ), max_leaves=5)


units = st.sampled_from(["second", "minute", "hour", "day", "week", "month", "year"])
absolute_windows = st.one_of(
    st.none(),
    st.builds(ast.WithinLast, st.integers(0, 400), units),
    st.builds(ast.WithinPeriod, st.sampled_from(["today", "week", "month", "year"])),
    st.builds(lambda n, u: ast.Since(ast.Arithmetic((ast.Call("now", ()), ast.DurationLiteral(n, u)), ("-",))),
              st.integers(0, 100), units),
    st.builds(lambda: ast.Before(ast.Name(("loyalty", "joined"), profile_prefix=True))),
)


def event_terms():
    flt = st.builds(ast.EventFilter, st.none(), st.one_of(st.none(), conditions(True)), absolute_windows)
    step = st.builds(lambda neg, cond, n, u: ast.SequenceStep(neg, ast.EventFilter(None, cond, ast.WithinGap(n, u) if n else None)),
                     st.booleans(), st.one_of(st.none(), conditions(True)), st.integers(0, 48), units)
    return st.one_of(
        st.builds(lambda f, steps: ast.Exists(f, tuple(
            s if i == len(steps) - 1 else ast.SequenceStep(False, s.filter) for i, s in enumerate(steps))),
            flt, st.lists(step, max_size=2)),
        st.builds(ast.NoEvent, flt),
        st.builds(lambda f, n: ast.Comparison(ast.Aggregate("count", None, f), ">=", ast.NumberLiteral(n)),
                  flt, st.integers(0, 3)),
        st.builds(lambda f, path: ast.Comparison(ast.Aggregate("sum", path, f), ">", ast.NumberLiteral(0)),
                  flt, st.sampled_from(EVENT_NUMERIC)),
        st.builds(lambda f, fn: ast.IsNull(ast.Aggregate(fn, ("product", "category"), f), True),
                  flt, st.sampled_from(["first", "last", "min", "max"])),
    )


segments = conditions(False)
