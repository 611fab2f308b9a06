"""DSL.md §1 and §11, rule by rule: every error's code and exact span (line, column, end line,
end column; columns count code points, end exclusive), across multi-line input, tabs and
non-ASCII text. The snapshots (test_error_snapshots.py) show the full text for a few."""

from __future__ import annotations

import pytest

from cdp.dsl import PqlError, check, parse
from cdp.dsl.parser import MAX_BYTES
from cdp.dsl.render import keywords

Span = tuple[str, int, int, int, int]  # code, line, column, end line, end column


def errors(text: str, **kwargs) -> list[Span]:
    with pytest.raises(PqlError) as info:
        check(text, **kwargs)
    return [(d.code, d.span.line, d.span.column, d.span.end_line, d.span.end_column) for d in info.value.errors]


def first(text: str, **kwargs) -> Span:
    return errors(text, **kwargs)[0]


def diagnostic(text: str, **kwargs):
    with pytest.raises(PqlError) as info:
        check(text, **kwargs)
    return info.value.errors[0]


# ---- §11: every error carries a code, a message, its start and end, a caret, a hint ---------

@pytest.mark.parametrize("text, expected", [
    ('a < b < c', ("syntax_error", 1, 7, 1, 8)),
    ('loyality.tier = "gold"', ("unknown_field", 1, 1, 1, 14)),
    ('loyalty.points > "500"', ("type_mismatch", 1, 1, 1, 23)),
    ('lowr(email) = "x"', ("unknown_function", 1, 1, 1, 5)),
    ('lower(loyalty.points) = "x"', ("wrong_arguments", 1, 7, 1, 21)),
    ('email matches "luma\\.com"', ("invalid_literal", 1, 15, 1, 26)),
    ('email matches "(unclosed"', ("invalid_regex", 1, 15, 1, 26)),
    ('"x" = email and in segment "nope"', ("unknown_segment", 1, 17, 1, 34)),
    ('in segment "me"', ("segment_cycle", 1, 1, 1, 16)),
    ('x in [' + ", ".join(["1"] * 10_001) + ']', ("too_complex", 1, 6, 1, 30_009)),
])
def test_every_code_has_its_span(text, expected):
    segments = {"gold": 'loyalty.tier = "gold"'} if "nope" in text else None
    key = "me" if '"me"' in text else None
    if key:
        with pytest.raises(PqlError) as info:
            check(text, segments={"me": text}, key=key)
        got = info.value.errors[0]
        assert (got.code, got.span.line, got.span.column, got.span.end_line, got.span.end_column) == expected
        return
    assert first(text, segments=segments) == expected


def test_an_error_has_a_message_a_caret_under_the_whole_span_and_a_hint():
    error = diagnostic('loyalty.points > "500"')
    assert error.message and error.hint
    assert error.to_dict() == {"code": "type_mismatch", "message": error.message, "line": 1, "column": 1,
                               "end_line": 1, "end_column": 23, "hint": error.hint}
    assert error.snippet() == 'loyalty.points > "500"\n' + "^" * 22


def test_the_checker_reports_every_error_not_only_the_first():
    text = 'loyality.tier = "gold"\n  and lowr(email) = "x"\n  and not email'
    assert errors(text) == [("unknown_field", 1, 1, 1, 14), ("unknown_function", 2, 7, 2, 11),
                            ("type_mismatch", 3, 7, 3, 16)]


# ---- §11: lines and columns count from 1; columns count code points ---------------------------

def test_columns_count_code_points_not_bytes_or_utf16_units():
    # é is 2 bytes, 😀 is 4 bytes and 2 UTF-16 units: each is one column
    assert first('"é😀" = email and lowr(email) = "x"') == ("unknown_function", 1, 18, 1, 22)
    assert first('email = "😀😀😀" and loyality.tier = "x"') == ("unknown_field", 1, 19, 1, 32)


def test_a_tab_is_one_column_and_the_caret_keeps_it():
    error = diagnostic('\tnot email')
    assert (error.span.line, error.span.column, error.span.end_column) == (1, 2, 11)
    assert error.snippet() == "\tnot email\n\t^^^^^^^^^"


def test_multi_line_input_reports_the_line_of_the_start():
    text = 'email_opt_in\n\tand "é" = lower(\n\t\tloyalty.points)'
    assert first(text) == ("wrong_arguments", 3, 3, 3, 17)
    error = diagnostic(text)
    assert error.snippet() == "\t\tloyalty.points)\n\t\t" + "^" * 14


def test_a_span_over_several_lines_ends_on_its_last_line():
    assert first('loyalty.points\n  > "500"') == ("type_mismatch", 1, 1, 2, 10)


# ---- §11: the span of each kind of error ---------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    # the name, for unknown names and functions
    ('profile.loyality.tier = "x"', ("unknown_field", 1, 1, 1, 22)),
    ('exists event where type = "x" and\n    loyalty.tier = "gold"', ("unknown_field", 2, 5, 2, 17)),
    ('count(event.sku) > 1', ("syntax_error", 1, 12, 1, 13)),
    ('max(event.prodct.price) > 1', ("unknown_field", 1, 5, 1, 23)),
    ('  Lower2(email) = "x"', ("unknown_function", 1, 3, 1, 9)),
])
def test_unknown_names_span_the_name(text, expected):
    assert first(text) == expected


@pytest.mark.parametrize("text, expected", [
    # the whole operation, left operand to right operand
    ('loyalty.points > 5 days', ("type_mismatch", 1, 1, 1, 24)),
    ('email_opt_in or email + 1 > 0', ("type_mismatch", 1, 17, 1, 26)),
    ('1 + 2 + email > 0', ("type_mismatch", 1, 1, 1, 14)),
    ('person.birth_date - 3 hours > now()', ("type_mismatch", 1, 1, 1, 28)),
    ('-email > 0', ("type_mismatch", 1, 1, 1, 7)),
    ('not email', ("type_mismatch", 1, 1, 1, 10)),
    ('email_opt_in and\n  not   email', ("type_mismatch", 2, 3, 2, 14)),
    ('email_opt_in and email', ("type_mismatch", 1, 1, 1, 23)),
    ('email or email_opt_in', ("type_mismatch", 1, 1, 1, 6)),
    ('email between "a" and 5', ("type_mismatch", 1, 1, 1, 24)),
    ('email in [1]', ("type_mismatch", 1, 1, 1, 13)),
    ('email in interests', ("type_mismatch", 1, 1, 1, 19)),
    ('interests has 5', ("type_mismatch", 1, 1, 1, 16)),
    ('email contains 5', ("type_mismatch", 1, 1, 1, 17)),
    ('loyalty.points like "a"', ("type_mismatch", 1, 1, 1, 24)),
    ('email = null', ("type_mismatch", 1, 1, 1, 13)),
    ('(email) = 1', ("type_mismatch", 1, 1, 1, 12)),
])
def test_an_operators_type_mismatch_spans_the_whole_operation(text, expected):
    assert first(text) == expected


@pytest.mark.parametrize("text, expected", [
    # the offending argument, whole
    ('sum(event.timestamp) > 1', ("wrong_arguments", 1, 5, 1, 20)),
    ('avg(event.product.sku) > 1', ("wrong_arguments", 1, 5, 1, 22)),
    ('lower(profile.loyalty.points) = "x"', ("wrong_arguments", 1, 7, 1, 29)),
    ('lower((1 + 2)) = "x"', ("wrong_arguments", 1, 7, 1, 14)),
    ('concat(email,\n       loyalty.points) = "x"', ("wrong_arguments", 2, 8, 2, 22)),
    ('date(email) < today()', ("wrong_arguments", 1, 6, 1, 11)),
    # the whole call when the number of arguments is wrong
    ('round() = 1', ("wrong_arguments", 1, 1, 1, 8)),
    ('lower(email, email) = "x"', ("wrong_arguments", 1, 1, 1, 20)),
])
def test_wrong_arguments_span_the_argument_or_the_call(text, expected):
    assert first(text) == expected


@pytest.mark.parametrize("text, expected", [
    # the literal, for invalid_literal and invalid_regex
    ('1.5 days > now() - now()', ("invalid_literal", 1, 1, 1, 9)),
    ('99999999999999999999 > 1', ("invalid_literal", 1, 1, 1, 21)),
    ('loyalty.points in [1, null]', ("invalid_literal", 1, 23, 1, 27)),
    ('date("2026-13-01") < today()', ("invalid_literal", 1, 6, 1, 18)),
    ('email like "a\\\\"', ("invalid_literal", 1, 12, 1, 17)),
    ('email = "é" or email matches\n\t"(a"', ("invalid_regex", 2, 2, 2, 6)),
])
def test_literal_errors_span_the_literal(text, expected):
    assert first(text) == expected


@pytest.mark.parametrize("text, expected", [
    # the second operator of a chained comparison
    ('a = b = c', ("syntax_error", 1, 7, 1, 8)),
    ('a <= b\n  >= c', ("syntax_error", 2, 3, 2, 5)),
    ('a = b between 1 and 2', ("syntax_error", 1, 7, 1, 14)),
    ('a is null = 1', ("syntax_error", 1, 11, 1, 12)),
    ('x in [1] in [2]', ("syntax_error", 1, 10, 1, 12)),
])
def test_a_chained_comparison_points_at_the_second_operator(text, expected):
    assert first(text) == expected
    assert "chained" in diagnostic(text).message


@pytest.mark.parametrize("text, expected", [
    # the unexpected token: a leading or doubled operator
    ('and email_opt_in', ("syntax_error", 1, 1, 1, 4)),
    ('or email_opt_in', ("syntax_error", 1, 1, 1, 3)),
    ('email_opt_in and and email_opt_in', ("syntax_error", 1, 18, 1, 21)),
    ('email_opt_in or\n   or email_opt_in', ("syntax_error", 2, 4, 2, 6)),
    ('email_opt_in and or email_opt_in', ("syntax_error", 1, 18, 1, 20)),
    ('a = = 1', ("syntax_error", 1, 5, 1, 6)),
    ('a + + 1 > 0', ("syntax_error", 1, 5, 1, 6)),
    ('a == 1', ("syntax_error", 1, 3, 1, 5)),
    ('not not', ("syntax_error", 1, 8, 1, 8)),
    # a window where the grammar forbids it: the window, from its first token
    ('exists event within 1 day', ("syntax_error", 1, 14, 1, 26)),
    ('exists event within 1 day then event', ("syntax_error", 1, 14, 1, 26)),
    ('exists event then event within last 1 day', ("syntax_error", 1, 25, 1, 42)),
    ('exists event then event since now()', ("syntax_error", 1, 25, 1, 36)),
    ('exists event\n  then event\n  before today()', ("syntax_error", 3, 3, 3, 17)),
    ('exists event within last 7 days within last 1 day', ("syntax_error", 1, 33, 1, 39)),
    # a step after `then no event`: the step that follows it (its `then`)
    ('exists event then no event then event', ("syntax_error", 1, 28, 1, 38)),
    ('exists event\n  then no event\n  then event', ("syntax_error", 3, 3, 3, 13)),
    ('no event then event', ("syntax_error", 1, 10, 1, 14)),
    # an event term nested inside a `where`
    ('exists event where exists event', ("syntax_error", 1, 20, 1, 26)),
    ('exists event where type = "x" and\n  no event', ("syntax_error", 2, 3, 2, 5)),
    ('exists event where (exists event where type = "x")', ("syntax_error", 1, 21, 1, 50)),
    ('exists event where type = "x" and count(event) > 1', ("syntax_error", 1, 35, 1, 47)),
    ('count(event where sum(event.order.total) > 1) > 0', ("syntax_error", 1, 19, 1, 41)),
    # the position just past the end when the input ends too early
    ('email_opt_in and', ("syntax_error", 1, 17, 1, 17)),
    ('a and\n  (b', ("syntax_error", 2, 5, 2, 5)),
    ('loyalty.points between 1', ("syntax_error", 1, 25, 1, 25)),
])
def test_other_syntax_errors_span_the_unexpected_token(text, expected):
    assert first(text) == expected


# ---- §1: keywords are reserved ---------------------------------------------------------------

@pytest.mark.parametrize("word", sorted(keywords() - {"true", "false", "null"}))  # those are values
def test_every_keyword_in_a_names_place_is_a_syntax_error_on_the_keyword(word):
    # at the start, after an operator, and on a later line after a tab
    for text, line, column in ((f'{word} = "x"', 1, 1), (f'email = {word}', 1, 9),
                               (f'email_opt_in and\n\t{word} = "x"', 2, 2)):
        error = diagnostic(text)
        assert error.code == "syntax_error", (text, error)
        assert (error.span.line, error.span.column, error.span.end_column) == (line, column, column + len(word)), \
            (text, str(error))
        assert f"`{word}`" in str(error), text
    # in backticks it is a name like any other (here an unknown one)
    assert first(f'`{word}` = "x"') == ("unknown_field", 1, 1, 1, len(word) + 3)


def test_keyword_hint_says_to_write_backticks():
    error = diagnostic('where = "x"')
    assert (error.code, error.span.column, error.span.end_column) == ("syntax_error", 1, 6)
    assert "`` `where` ``" in error.hint
    assert "`` `LOWER` ``" in diagnostic('LOWER = "x"').hint  # as written


def test_keywords_are_names_after_a_dot_and_in_backticks():
    assert parse("product.size = 'L'").left.path == ("product", "size")
    assert parse("`from`.city = 'x'").left.path == ("from", "city")
    assert parse("a.from.where = 1").left.path == ("a", "from", "where")
    assert parse("sum(event.count) > 1").left.path == ("count",)


def test_too_complex_spans():
    assert first("a" * (MAX_BYTES + 1)) == ("too_complex", 1, 1, 1, 2)
    deep = "(" * 70 + "email_opt_in" + ")" * 70
    assert first(deep) == ("too_complex", 1, 65, 1, 89)  # the 65th parenthesis, to its match
