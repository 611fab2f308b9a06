"""Every construct of DSL.md parses into the tree we expect; bad syntax is a syntax_error."""

import time

import pytest

from cdp.dsl import ast, parse, PqlError
from cdp.dsl.parser import MAX_BYTES


def one_error(text: str) -> "object":
    with pytest.raises(PqlError) as info:
        parse(text)
    assert len(info.value.errors) >= 1
    return info.value.errors[0]


def test_keywords_are_case_insensitive():
    assert parse("a AND b Or NOT c") == parse("a and b or not c")
    assert parse("LOWER(email) = 'x'") == parse('lower(email) = "x"')
    assert parse("exists EVENT Where type = 'x' WITHIN LAST 7 DAYS") == parse(
        'exists event where type = "x" within last 7 days')


def test_comments_and_whitespace_mean_nothing():
    assert parse("a # first\n  and # second\n b") == parse("a and b")


def test_backtick_names_and_profile_prefix():
    node = parse("`from`.city = 'x'")
    assert node.left == ast.Name(("from", "city"))
    node = parse("profile.`first name` = 'x'")
    assert node.left == ast.Name(("first name",), profile_prefix=True)
    assert parse("product.size = 'L'").left == ast.Name(("product", "size"))  # keyword after a dot


def test_strings_and_escapes():
    assert parse(r'"a\"b\'c\\d\ne\tf\u00e9"').value == "a\"b'c\\d\ne\tf\u00e9"
    assert parse(r"'it\'s'").value == "it's"
    assert parse(r'"\ud83d\ude00"').value == "\U0001F600"


@pytest.mark.parametrize("bad", [r'"luma\.com"', r'"100\%"', r'"\u12"'])
def test_invalid_escapes(bad):
    error = one_error(bad)
    assert error.code == "invalid_literal"
    assert "\\\\" in error.hint


def test_numbers_durations_booleans_null_lists():
    assert parse("42") == ast.NumberLiteral(42)
    assert parse("3.5") == ast.NumberLiteral(3.5)
    assert parse("-2") == ast.Negate(ast.NumberLiteral(2))
    assert parse("5 days") == ast.DurationLiteral(5, "day")
    assert parse("1 DAY") == ast.DurationLiteral(1, "day")
    assert parse("true") == ast.BooleanLiteral(True)
    assert parse("null") == ast.NullLiteral()
    assert parse("[]") == ast.ListLiteral(())
    assert parse('["a", "b"]') == ast.ListLiteral((ast.StringLiteral("a"), ast.StringLiteral("b")))
    assert one_error("1.5 days").code == "invalid_literal"
    assert one_error("99999999999999999999").code == "invalid_literal"


def test_precedence():
    node = parse("a or b and not c")
    assert isinstance(node, ast.BoolChain) and node.op == "or"
    assert node.operands[1] == ast.BoolChain("and", (ast.Name(("b",)), ast.Not(ast.Name(("c",)))))
    node = parse("1 + 2 * -3 > 4")
    assert node.left == ast.Arithmetic(
        (ast.NumberLiteral(1), ast.Arithmetic((ast.NumberLiteral(2), ast.Negate(ast.NumberLiteral(3))), ("*",))),
        ("+",))
    assert parse("a - b - c") == ast.Arithmetic((ast.Name(("a",)), ast.Name(("b",)), ast.Name(("c",))), ("-", "-"))


@pytest.mark.parametrize("text, cls", [
    ("x = 1", ast.Comparison), ("x != 1", ast.Comparison), ("x <= 1", ast.Comparison),
    ("x in [1]", ast.InList), ("x not in [1]", ast.InList),
    ("x between 1 and 2", ast.Between), ("x not between 1 and 2", ast.Between),
    ("x is null", ast.IsNull), ("x is not null", ast.IsNull),
    ("s contains 'a'", ast.StringTest), ("s starts with 'a'", ast.StringTest), ("s ends with 'a'", ast.StringTest),
    ("s like 'a%'", ast.StringTest), ("s matches 'a+'", ast.StringTest),
    ("l has 'a'", ast.Has), ("l has any ['a']", ast.Has), ("l has all ['a']", ast.Has),
    ('in segment "k"', ast.SegmentRef),
])
def test_every_predicate(text, cls):
    assert isinstance(parse(text), cls)


def test_not_forms():
    assert parse("x not in [1]").negated is True
    assert parse("x not between 1 and 2").negated is True
    assert parse('not in segment "k"') == ast.Not(ast.SegmentRef("k"))


def test_event_terms_and_windows():
    node = parse('exists event as c where type = "x" within last 7 days')
    assert node.filter.alias == "c" and node.filter.window == ast.WithinLast(7, "day")
    assert parse("no event within today").filter.window == ast.WithinPeriod("today")
    assert parse("exists event within this week").filter.window == ast.WithinPeriod("week")
    assert isinstance(parse("exists event since now() - 2 hours").filter.window, ast.Since)
    assert isinstance(parse('exists event before date("2026-01-01")').filter.window, ast.Before)
    assert isinstance(parse('exists event from date("2026-01-01") to date("2026-02-01")').filter.window, ast.FromTo)
    count = parse('count(event where type = "purchase" within last 90 days)')
    assert count == ast.Aggregate("count", None, ast.EventFilter(
        None, ast.Comparison(ast.Name(("type",)), "=", ast.StringLiteral("purchase")), ast.WithinLast(90, "day")))
    assert parse("sum(event.order.total)").path == ("order", "total")
    assert parse("LAST(event.timestamp)").function == "last"


def test_open_where_extends_to_the_right():
    node = parse('a and exists event where b = 1 or c = 2')
    assert isinstance(node, ast.BoolChain) and node.op == "and"
    assert isinstance(node.operands[1].filter.condition, ast.BoolChain)
    node = parse('(exists event where b = 1) or c = 2')
    assert node.op == "or"


def test_sequences():
    node = parse('exists event as cart where type = "addToCart" within last 7 days '
                 'then event within 1 hour then no event where type = "purchase" within 1 day')
    assert len(node.steps) == 2
    assert node.steps[1].negated and node.steps[1].filter.window == ast.WithinGap(1, "day")


@pytest.mark.parametrize("text, fragment", [
    ('exists event then no event then event', "only be the last"),
    ('exists event within 1 day', "gap of a `then` step"),
    ('exists event then event within last 1 day', "takes only a gap"),
    ('exists event as a then event as a', "used twice"),
    ('exists event where (exists event where type = "x")', "inside another"),
    ('count(event where count(event) > 1) > 0', "inside another"),
])
def test_sequence_and_nesting_rules(text, fragment):
    error = one_error(text)
    assert error.code == "syntax_error"
    assert fragment in error.message or fragment in (error.hint or "")


@pytest.mark.parametrize("text", ["a = b = c", "x < 1 < 2", "a ==  b", "a and", "(a", "a)", "", "   # only a comment",
                                  "x between 1", "exists", "count(event.x)", "`unterminated", "'open", "a && b"])
def test_syntax_errors(text):
    assert one_error(text).code == "syntax_error"


def test_limits_are_too_complex_and_fast():
    for text in ["(" * 70 + "a" + ")" * 70, "not " * 200 + "a", "-" * 5000 + "1",
                 "x in [" + ", ".join(["1"] * 10_001) + "]", "a or " * 20_000 + "a"]:
        started = time.perf_counter()
        with pytest.raises(PqlError) as info:
            parse(text)
        # a guard against hangs and quadratic blow-ups, not a benchmark (bench/ measures speed)
        assert time.perf_counter() - started < 10.0
        assert info.value.errors[0].code == "too_complex", text[:30]
    flat = " or ".join(["a"] * 5000)  # one level however long
    assert len(parse(flat).operands) == 5000
    with pytest.raises(PqlError) as info:
        parse("a" * (MAX_BYTES + 1))
    assert info.value.errors[0].code == "too_complex"
    assert parse("(" * 64 + "a" + ")" * 64) == ast.Name(("a",))
