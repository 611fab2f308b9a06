"""The function registry is the one place a function lives.

A toy function is added here in one record (plus its conformance case, below it), and nothing else
in the project is touched: it parses (its name becomes a keyword of the grammar), checks,
renders, appears in the generated docs, and evaluates in memory and in SQL on SQLite (its Python
form, run inside the database) and PostgreSQL (a native form). A function without a form for a
backend fails when checked for that backend, with UnsupportedOnBackend, never at run time.
"""

from __future__ import annotations

import sqlalchemy as sa
import pytest

from cdp.dsl import PqlError, check, parse, render
from cdp.dsl.render import keywords
from cdp.pqltypes import STRING
from cdp.engine import UnsupportedOnBackend, check_for_backend, compile_predicate, load_profile
from cdp.functions import Function, Param, lookup, python_udf, register, registered
from cdp.functions.registry import fixed
from tests.conformance.test_conformance import DEFAULT_AS_OF as AS_OF, DOCUMENTS

# ---- the toy function: one record ----------------------------------------------------------

TOY = Function(
    name="reverse", params=(Param("s", "string"),), result=fixed(STRING), python=lambda s: s[::-1],
    sql={"sqlite": python_udf,  # its Python form, inside SQLite
         "postgresql": lambda compiler, node, args: sa.func.reverse(args[0])},  # native
    doc="The string with its code points in reverse order.",
    example='reverse(person.first_name) = "haraS"',
)
# … and its conformance case: first names that read the same both ways, ignoring case
CASE = {"expression": "reverse(lower(person.first_name)) = lower(person.first_name)",
        "expected": ["c04", "c05", "c10", "c33"]}

# A function that only the in-memory engine can run (no SQL form at all).
MEMORY_ONLY = Function(
    name="shout", params=(Param("s", "string"),), result=fixed(STRING), python=lambda s: s.upper() + "!",
    doc="The string in capitals with an exclamation mark.", example='shout(email) = "A@B.C!"',
)


@pytest.fixture
def toy():
    with registered(TOY):
        yield TOY


def test_it_parses_checks_and_renders(toy):
    tree = parse("REVERSE(email) = 'x'")
    assert tree.left.function == "reverse"
    assert render(tree) == 'reverse(email) = "x"'
    assert parse(render(tree)) == tree
    assert check(CASE["expression"]).type.name == "boolean"
    assert "reverse" in keywords()
    with pytest.raises(PqlError) as info:  # a function name is a keyword: a field needs backticks
        check('reverse = "x"')
    assert info.value.errors[0].code == "syntax_error"
    with pytest.raises(PqlError) as info:
        check("reverse(loyalty.points) = 'x'")
    assert info.value.codes == ["wrong_arguments"]


def test_it_leaves_no_trace_once_removed():
    assert lookup("reverse") is None and "reverse" not in keywords()
    with pytest.raises(PqlError) as info:
        check("reverse(email) = 'x'")
    assert info.value.codes == ["unknown_function"]


def test_its_docs_come_from_the_record(toy):
    from tests.test_docs_examples import generate_functions, generate_keywords, generate_support

    assert "| `reverse(s)` | `s`: a string | `string` | The string with its code points" in generate_functions()
    assert "reverse" in generate_keywords()
    assert "| `reverse` | yes | yes | yes |" in generate_support()


def test_it_evaluates_in_memory_and_in_sql_on_every_backend(toy, sqlite_url_factory, postgres_url_factory):
    from cdp.engine import sql
    from cdp.storage.database import create_engine
    from cdp.engine.sql.loading import load_documents
    from cdp.storage.migrate import upgrade

    predicate = compile_predicate(CASE["expression"])
    assert [d["id"] for d in DOCUMENTS if predicate(load_profile(d), AS_OF)] == CASE["expected"]
    for url in (sqlite_url_factory(), postgres_url_factory()):
        engine = create_engine(url)  # new connections: SQLite registers pql_reverse on each
        try:
            upgrade(engine)
            with engine.begin() as connection:
                load_documents(connection, DOCUMENTS)
            with engine.connect() as connection:
                assert sql.evaluate(connection, CASE["expression"], as_of=AS_OF) == CASE["expected"], url
                # code points, not bytes, on both
                got = connection.execute(sql.members_query('reverse("a😀é") = "é😀a"', dialect=engine.dialect.name,
                                                           as_of=AS_OF)).all()
                assert len(got) == len(DOCUMENTS)
        finally:
            engine.dispose()


def test_a_backend_without_a_form_fails_at_check_time():
    from cdp.engine import sql

    with registered(MEMORY_ONLY):
        text = 'email is not null and shout(email) = "ANA@EXAMPLE.COM!"'
        assert check_for_backend(text, "memory") is not None
        for backend in ("sqlite", "postgresql"):
            with pytest.raises(UnsupportedOnBackend) as info:
                check_for_backend(text, backend)
            assert info.value.backend == backend
            assert "shout() has no form for " + backend in info.value.reason
            assert (info.value.span.line, info.value.span.column, info.value.span.end_column) == (1, 23, 35)
            # compiling for the backend stops there too, before any database sees the query
            with pytest.raises(UnsupportedOnBackend):
                sql.members_query(text, dialect=backend, as_of=AS_OF)
            # also when the call hides in a referenced segment
            with pytest.raises(UnsupportedOnBackend, match='in segment "loud"'):
                check_for_backend('in segment "loud"', backend, segments={"loud": text})
        predicate = compile_predicate(text)
        assert [d["id"] for d in DOCUMENTS if predicate(load_profile(d), AS_OF)] == ["c04"]


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        register(Function(name="lower", params=(), result=fixed(STRING), python=str, doc="", example=""))
    with pytest.raises(ValueError, match="lower-case identifier"):
        register(Function(name="Bad-Name", params=(), result=fixed(STRING), python=str, doc="", example=""))


def test_python_udf_is_for_sqlite_only():
    with pytest.raises(ValueError, match="SQLite only"):
        Function(name="x", params=(), result=fixed(STRING), python=str, doc="", example="",
                 sql={"postgresql": python_udf})


def test_no_compiler_knows_a_function_by_name():
    """Special forms are declared on the record (stage, common_type), not by name in a compiler."""
    from pathlib import Path

    import cdp

    root = Path(cdp.__file__).parent
    compilers = [root / "dsl/checker.py", root / "dsl/render.py", *sorted((root / "engine").rglob("*.py"))]
    for path in compilers:
        source = path.read_text(encoding="utf-8")
        for name in ("coalesce", "now", "lower", "upper", "round", "concat", "abs", "age"):
            for quoted in (f'"{name}"', f"'{name}'"):
                assert quoted not in source, (path, quoted)
