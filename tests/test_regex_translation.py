"""The RE2 → PostgreSQL and RE2 → Java translations (cdp.engine.sql.regex_translation and its two
dialects) against the engines themselves: for patterns generated from RE2's grammar, a translated
pattern finds a match in a string exactly when RE2 does — on a real PostgreSQL (the `~` operator)
and in Java's java.util.regex (Spark's RLIKE is `Pattern.compile(p).matcher(s).find()`), through
the test run's Spark JVM — or the translation refuses it with its backend's UnsupportedOnBackend.
A translated pattern the engine rejects fails the test too."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import re2
import sqlalchemy as sa
from hypothesis import HealthCheck, given, note, settings, strategies as st

from cdp.engine.sql.postgresql_regex import re2_to_postgres
from cdp.engine.sql.spark_regex import re2_to_java
from cdp.engine.support import UnsupportedOnBackend
from cdp.storage.database import create_engine
from tests.regex_patterns import re2_patterns, subjects

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def re2_finds(pattern: str, texts: list[str]) -> list[bool]:
    compiled = re2.compile(pattern)
    return [compiled.search(text) is not None for text in texts]


@pytest.fixture(scope="module")
def postgres(postgres_url_factory):
    engine = create_engine(postgres_url_factory())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        yield connection
    engine.dispose()


def postgres_finds(connection, translated: str, texts: list[str]) -> list[bool]:
    query = sa.text("SELECT subject ~ :pattern FROM unnest(CAST(:texts AS text[])) WITH ORDINALITY AS t(subject, n) "
                    "ORDER BY n")
    return list(connection.execute(query, {"pattern": translated, "texts": texts}).scalars())


def java_finds(spark_session) -> Callable[[str, list[str]], list[bool]]:
    """Java's `Pattern.compile(p).matcher(s).find()` in the Spark JVM (a function: Hypothesis
    probes a test's arguments, and a JVM class answers every attribute)."""
    pattern_class = spark_session.spark.sparkContext._jvm.java.util.regex.Pattern

    def finds(translated: str, texts: list[str]) -> list[bool]:
        compiled = pattern_class.compile(translated)
        return [compiled.matcher(text).find() for text in texts]
    return finds


@pytest.fixture(scope="module", params=["postgresql", "spark"])
def engine(request) -> tuple[str, Callable[[str], str], Callable[[str, list[str]], list[bool]]]:
    """(backend, its translation, whether its engine finds the translated pattern in each text)."""
    if request.param == "postgresql":
        connection = request.getfixturevalue("postgres")
        return "postgresql", re2_to_postgres, lambda translated, texts: postgres_finds(connection, translated, texts)
    return "spark", re2_to_java, java_finds(request.getfixturevalue("spark_session"))


@PROPERTY
@given(data=st.data(), pattern=re2_patterns)
def test_the_engine_finds_what_re2_finds(engine, data, pattern):
    backend, translate, engine_finds = engine
    try:
        translated = translate(pattern)
    except UnsupportedOnBackend as refusal:
        assert refusal.backend == backend
        return
    note(f"{pattern!r} is translated to {translated!r}")
    texts = data.draw(subjects(pattern))
    assert engine_finds(translated, texts) == re2_finds(pattern, texts)


# Patterns a translation used to get wrong (a different answer, or an error from the engine at run
# time; all but the last on PostgreSQL), each with a subject on which the answer shows. Both
# engines are held to every case.
@pytest.mark.parametrize("pattern, subject", [
    (r"\x41B", "AB"), (r"\x41B", "\u041b"),  # ARE's \x takes every hex digit that follows
    (r"\x{41}", "A"), (r"[\x{e9}]", "é"),  # ARE has no \x{…}
    (r"[[]\d", "[5"), (r"[a[].", "a\n"),  # a [ inside a class lost track of the class
    (r"[[.a]", "."), (r"[[=a]", "="),  # ARE's collating elements and equivalence classes
    (r"a{1", "a{1"), (r"a{2,", "a{2,"),  # RE2's literal brace, ARE's unbalanced braces
    (r"^{2}a", "ab"), (r"x\b{0,3}y", "xy"), (r"\b{255}", "a"),  # a repeated empty-width assertion
    (r"\bcafé\b", "café!"), (r"\bé", "xé"), (r"é\B", "éa"),  # ARE's \y and \Y take é as a word character
    (r"(?i)x\b", "x\u212a"), (r"(?i)x\B", "x\u017f"),  # Java's (?iu)[k] takes the Kelvin sign, [s] ſ
    # PostgreSQL's (?i) folds one pair at a time: the third member of an orbit did not match
    (r"(?i)s", "\u017f"), (r"(?i)ǆ", "ǅ"), (r"(?i)[a-z]", "\u212a"), (r"(?i)\w", "\u017f"), (r"(?i)[^k]", "\u212a"),
    (r"(?i)\W", "\u212a"), (r"(?i)[\x{17f}]", "S"), (r"(?i)σ", "ς"),
])
def test_what_a_translation_used_to_get_wrong(engine, pattern, subject):
    _backend, translate, engine_finds = engine
    assert engine_finds(translate(pattern), [subject]) == re2_finds(pattern, [subject])


def test_repetitions_beyond_postgres_bound_are_refused():
    """RE2 counts up to 1,000, PostgreSQL to 255: a refusal when compiled, not an error when run."""
    assert re2_to_postgres("a{255}") == "a{255}"
    with pytest.raises(UnsupportedOnBackend, match="repetition count above 255"):
        re2_to_postgres("a{2,256}")
    assert re2_to_java("a{2,256}") == "a{2,256}"


def test_the_stored_case_folding_orbits_are_the_installed_re2s():
    """cdp/engine/sql/regex_case_orbits.py is generated from RE2 (see its module): regenerate it
    when an upgrade of RE2 changes its Unicode tables."""
    from cdp.devtools.case_orbits import re2_orbits
    from cdp.engine.sql.regex_case_orbits import ORBITS

    assert tuple(re2_orbits()) == ORBITS
