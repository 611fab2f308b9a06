"""The exact text users see for a dozen typical mistakes: code, position, caret, hint."""

import pytest

from cdp.dsl import PqlError, check

SNAPSHOTS = [
    ('loyality.tier = "gold"',
     'unknown_field at line 1, column 1: unknown field `loyality.tier`\n'
     'loyality.tier = "gold"\n'
     '^^^^^^^^^^^^^\n'
     'hint: did you mean `loyalty.tier`?'),
    ('loyalty.tier == "gold"',
     'syntax_error at line 1, column 14: unexpected `==`\n'
     'loyalty.tier == "gold"\n'
     '             ^^\n'
     'hint: use `=` to test equality'),
    ('loyalty.points > "500"',
     'type_mismatch at line 1, column 1: cannot compare an integer with a string\n'
     'loyalty.points > "500"\n'
     '^^^^^^^^^^^^^^^^^^^^^^\n'
     'hint: there is no implicit conversion: write the number without quotes, 500'),
    ('email = null',
     'type_mismatch at line 1, column 1: `= null` can never be TRUE: a comparison with null is UNKNOWN\n'
     'email = null\n'
     '^^^^^^^^^^^^\n'
     'hint: use `email is null`'),
    ('exists event where type = "purchase" and loyalty.tier = "gold"',
     'unknown_field at line 1, column 42: unknown event field `loyalty.tier`\n'
     'exists event where type = "purchase" and loyalty.tier = "gold"\n'
     '                                         ^^^^^^^^^^^^\n'
     'hint: `loyalty.tier` is a profile attribute: inside an event condition write `profile.loyalty.tier`'),
    ('lowr(email) = "x"',
     'unknown_function at line 1, column 1: unknown function `lowr`\n'
     'lowr(email) = "x"\n'
     '^^^^\n'
     'hint: did you mean `lower` or `floor`?'),
    ('lower(loyalty.points) = "x"',
     'wrong_arguments at line 1, column 7: argument `s` of `lower` must be a string, not integer\n'
     'lower(loyalty.points) = "x"\n'
     '      ^^^^^^^^^^^^^^\n'
     'hint: lower(s): The string in lower case, one code point to one (`ß` stays `ß`; `İ` lowers to `i`).'),
    ('email matches "luma\\.com"',
     'invalid_literal at line 1, column 15: invalid escape `\\.` in a string\n'
     'email matches "luma\\.com"\n'
     '              ^^^^^^^^^^^\n'
     'hint: escapes are \\" \\\' \\\\ \\n \\t \\uXXXX; write `\\\\` for a backslash (a regex for a literal dot is "luma\\\\.com")'),
    ('email matches "(unclosed"',
     'invalid_regex at line 1, column 15: invalid regular expression: missing ): (unclosed\n'
     'email matches "(unclosed"\n'
     '              ^^^^^^^^^^^\n'
     'hint: the syntax is RE2\'s; write `\\\\.` for a literal dot'),
    ('loyalty.points > 5 days',
     'type_mismatch at line 1, column 1: cannot compare an integer with a duration\n'
     'loyalty.points > 5 days\n'
     '^^^^^^^^^^^^^^^^^^^^^^^'),
    ('a < b < c',
     'syntax_error at line 1, column 7: comparisons cannot be chained: unexpected `<`\n'
     'a < b < c\n'
     '      ^\n'
     'hint: combine the comparisons with `and`, e.g. `a < b and b < c`'),
    ('loyalty.tier = "gold" and\n  (exists event where type = "purchase"',
     'syntax_error at line 2, column 40: the expression ends too early; expected `)`\n'
     '  (exists event where type = "purchase"\n'
     '                                       ^'),
    ('person.birth_date - 3 hours > now()',
     'type_mismatch at line 1, column 1: a date - hours is not a date: only days, weeks, months and years apply to a date\n'
     'person.birth_date - 3 hours > now()\n'
     '^^^^^^^^^^^^^^^^^^^^^^^^^^^\n'
     'hint: add days, weeks, months or years to a date; for hours, start from a datetime such as `now()`'),
]


@pytest.mark.parametrize("text, expected", SNAPSHOTS, ids=[s[0][:30] for s in SNAPSHOTS])
def test_error_snapshot(text, expected):
    with pytest.raises(PqlError) as info:
        check(text)
    assert str(info.value.errors[0]) == expected


def test_every_error_is_reported_not_only_the_first():
    with pytest.raises(PqlError) as info:
        check('loyality.tier = "gold" and lowr(email) = "x" and loyalty.points > "5" and email like "a\\\\"')
    assert info.value.codes == ["unknown_field", "unknown_function", "type_mismatch", "invalid_literal"]
