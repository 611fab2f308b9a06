"""The command-line contract of SPEC.md, run as a user would: the installed `cdp` in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CDP = [str(Path(sys.executable).parent / "cdp")]
ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "examples" / "luma_profiles.jsonl"
GIFT = (ROOT / "examples" / "gift_giving_cart_abandoners.pql").read_text()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CDP + list(args), capture_output=True, text=True, timeout=60)


def test_check_json_ok():
    result = run("check", "--json", "loyalty.points > 500 AND email_opt_in")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"ok": True, "canonical": "loyalty.points > 500 and email_opt_in",
                                         "warnings": []}


def test_check_warns_about_a_value_outside_the_allowed_values():
    result = run("check", "--json", 'loyalty.tier = "Gold"')
    assert result.returncode == 0
    [warning] = json.loads(result.stdout)["warnings"]
    assert warning["code"] == "unlisted_value" and (warning["column"], warning["end_column"]) == (16, 22)
    assert 'did you mean "gold"?' in warning["hint"]
    text = run("check", 'loyalty.tier = "Gold"')
    assert text.returncode == 0 and text.stdout.strip() == 'ok: loyalty.tier = "Gold"'
    assert "warning: unlisted_value at line 1, column 16" in text.stderr and "^^^^^^" in text.stderr


def test_check_json_errors():
    result = run("check", "--json", 'loyality.tier = "gold" and lowr(email) = "x"')
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["ok"] is False
    assert [e["code"] for e in body["errors"]] == ["unknown_field", "unknown_function"]
    first = body["errors"][0]
    assert (first["line"], first["column"], first["end_line"], first["end_column"]) == (1, 1, 1, 14)
    assert set(first) == {"code", "message", "line", "column", "end_line", "end_column", "hint"}


def test_check_with_segments(tmp_path):
    catalogue = tmp_path / "segments.json"
    catalogue.write_text(json.dumps({"a": 'in segment "b"', "b": 'in segment "a"', "gold": 'loyalty.tier = "gold"'}))
    result = run("check", "--json", "--segments", str(catalogue), 'in segment "gold" and in segment "nope"')
    codes = [e["code"] for e in json.loads(result.stdout)["errors"]]
    assert result.returncode == 1 and "unknown_segment" in codes and "segment_cycle" in codes
    assert run("check", 'in segment "anything"').returncode == 0  # without a catalogue: syntax only


def test_evaluate_prints_ids_in_file_order():
    result = run("evaluate", GIFT, "--profiles", str(PROFILES), "--as-of", "2026-11-28T12:00:00Z")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["sarah-rose"]
    result = run("evaluate", "loyalty.tier is not null", "--profiles", str(PROFILES), "--as-of", "2026-11-28T12:00:00Z")
    assert result.stdout.splitlines() == ["sarah-rose", "jon-park"]


def test_evaluate_batch_of_expressions(tmp_path):
    expressions = tmp_path / "e.json"
    expressions.write_text(json.dumps({"gift": GIFT, "gold": 'loyalty.tier = "gold"', "none": "false"}))
    result = run("evaluate", "--expressions", str(expressions), "--profiles", str(PROFILES), "--as-of", "2026-11-28T12:00:00Z")
    assert json.loads(result.stdout) == {"gift": ["sarah-rose"], "gold": ["jon-park"], "none": []}


@pytest.mark.parametrize("args, code", [
    (["evaluate", "loyalty.points >", "--profiles", str(PROFILES)], "syntax_error"),
    (["evaluate", "x = 1", "--profiles", "/nonexistent.jsonl"], "unknown_field"),
    (["evaluate", "email_opt_in", "--profiles", "/nonexistent.jsonl"], "unreadable_file"),
    (["evaluate", "email_opt_in", "--profiles", str(PROFILES), "--as-of", "yesterday"], "invalid_argument"),
])
def test_evaluate_invalid_input_exits_1_with_nothing_on_stdout(args, code):
    result = run(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith(code + ":")


def test_evaluate_cycle_and_bad_profile(tmp_path):
    catalogue = tmp_path / "segments.json"
    catalogue.write_text(json.dumps({"a": 'in segment "b"', "b": 'in segment "a"'}))
    result = run("evaluate", 'in segment "a"', "--segments", str(catalogue), "--profiles", str(PROFILES))
    assert result.returncode == 1 and result.stdout == ""
    assert all(line.startswith("segment_cycle:") for line in result.stderr.splitlines())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "attributes": {"loyalty": {"points": "many"}}}\nnot json\n')
    result = run("evaluate", "email_opt_in", "--profiles", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("invalid_profile:") for line in lines)
    assert "line 1" in lines[0] and "loyalty.points" in lines[0] and "line 2" in lines[1]


def test_explain_shows_why():
    result = run("evaluate", "--explain", "--id", "jon-park", "--profiles", str(PROFILES), "--as-of",
                 "2026-11-28T12:00:00Z", 'loyalty.points > 500 and home_address.country != "US"')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("FALSE")
    assert any(line.strip().startswith("2400") for line in lines)
    assert any(line.strip().startswith("FALSE") and "home_address.country" in line for line in lines)


CONFORMANCE_PROFILES = ROOT / "tests" / "conformance" / "profiles.jsonl"
BACKEND_EXPRESSIONS = [
    GIFT,
    'count(event where type = "purchase" within last 90 days) >= 1 and loyalty.tier is not null',
    'lower(email) ends with "@example.com" or email matches "^[^@]+@luma\\\\.com$"',
    'home_address.country != "US" or home_address.country is null',
]


@pytest.mark.parametrize("expression", BACKEND_EXPRESSIONS)
def test_every_backend_prints_the_same_ids(expression, postgres_url_factory):
    common = ["evaluate", expression, "--profiles", str(CONFORMANCE_PROFILES), "--as-of", "2026-11-28T12:00:00Z"]
    outputs = {}
    for backend, extra in (("memory", []), ("sqlite", []), ("postgresql", ["--database-url", postgres_url_factory()])):
        result = run(*common, "--backend", backend, *extra)
        assert result.returncode == 0, (backend, result.stderr)
        outputs[backend] = result.stdout
    assert outputs["memory"] == outputs["sqlite"] == outputs["postgresql"]
    assert outputs["memory"].strip(), "the expression should select someone"


def test_backend_errors_are_clear(postgres_url_factory):
    result = run("evaluate", "email_opt_in", "--profiles", str(PROFILES), "--backend", "postgresql")
    assert result.returncode == 1 and result.stderr.startswith("invalid_argument:")
    result = run("evaluate", 'email matches "\\\\pL"', "--profiles", str(PROFILES), "--backend", "postgresql",
                 "--database-url", postgres_url_factory())
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("unsupported:") and "PostgreSQL equivalent" in result.stderr


# ---- `cdp evaluate` on a user's database leaves it as it found it -------------------------------

CATALOG_QUERIES = {
    "schemas": "SELECT nspname FROM pg_namespace ORDER BY 1",
    "relations": "SELECT n.nspname, c.relname, c.relkind, c.relpersistence FROM pg_class c "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
    "functions": "SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                 "WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
    "types": "SELECT n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
             "WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
    "settings": "SELECT coalesce(setconfig, '{}') FROM pg_db_role_setting ORDER BY 1",
}


def _database_objects(url: str) -> dict:
    """Every schema, relation, function and type of the database (the system's own aside), its
    saved settings, and the content of every table of the public schema."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            found = {name: connection.execute(sa.text(query)).all() for name, query in CATALOG_QUERIES.items()}
            tables = connection.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).scalars().all()
            found["rows"] = {table: sorted(map(tuple, connection.execute(sa.text(f'SELECT * FROM public."{table}"'))))
                             for table in tables}
    finally:
        engine.dispose()
    return found


def _evaluate_on(url: str, *extra: str) -> subprocess.CompletedProcess:
    return run("evaluate", BACKEND_EXPRESSIONS[1], "--profiles", str(CONFORMANCE_PROFILES), "--as-of",
               "2026-11-28T12:00:00Z", "--backend", "postgresql", "--database-url", url, *extra)


def test_evaluate_on_postgresql_never_changes_the_database(postgres_url_factory):
    import sqlalchemy as sa

    expected = run("evaluate", BACKEND_EXPRESSIONS[1], "--profiles", str(CONFORMANCE_PROFILES), "--as-of",
                   "2026-11-28T12:00:00Z").stdout
    assert expected.strip()
    empty = postgres_url_factory()
    before = _database_objects(empty)
    result = _evaluate_on(empty.replace("postgresql+psycopg://", "postgresql://"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert _database_objects(empty) == before  # no alembic_version, no table, no schema
    # a database of the user's own, with tables of the names cdp uses and a migration table of
    # some other tool: read by nobody, changed by nothing
    used = postgres_url_factory()
    engine = sa.create_engine(used)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE profiles (id text PRIMARY KEY, note text)"))
        connection.execute(sa.text("INSERT INTO profiles VALUES ('c01', 'a customer of the user''s own')"))
        connection.execute(sa.text("CREATE TABLE events (n integer)"))
        connection.execute(sa.text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('their-own-0042')"))
        connection.execute(sa.text("CREATE SCHEMA crm"))
    engine.dispose()
    before = _database_objects(used)
    result = _evaluate_on(used)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert _database_objects(used) == before


def test_evaluate_refuses_a_database_where_it_cannot_work_apart(postgres_url_factory):
    """Without the right to create temporary tables, cdp evaluate stops and says why; it does not
    fall back to the database's own tables."""
    import sqlalchemy as sa

    url = postgres_url_factory()
    database = sa.engine.make_url(url).database
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC'))
        connection.execute(sa.text("DO $$ BEGIN CREATE ROLE cdp_evaluate_reader LOGIN; "
                                   "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
    engine.dispose()
    before = _database_objects(url)
    reader = sa.engine.make_url(url).set(username="cdp_evaluate_reader").render_as_string(hide_password=False)
    result = _evaluate_on(reader)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("database_error: cannot create temporary tables in this database")
    assert "permission denied" in result.stderr and "never changes the database" in result.stderr
    assert _database_objects(url) == before


def test_evaluate_on_an_sqlite_file_leaves_it_byte_for_byte(tmp_path):
    import hashlib
    import sqlite3

    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE profiles (id TEXT, note TEXT)")
        connection.execute("INSERT INTO profiles VALUES ('c01', 'theirs')")
    connection.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    common = ["evaluate", BACKEND_EXPRESSIONS[1], "--profiles", str(CONFORMANCE_PROFILES), "--as-of",
              "2026-11-28T12:00:00Z"]
    result = run(*common, "--backend", "sqlite", "--database-url", f"sqlite:///{path}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == run(*common).stdout
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]  # no -wal, no -shm, no journal
    missing = tmp_path / "missing.db"
    result = run(*common, "--backend", "sqlite", "--database-url", f"sqlite:///{missing}")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("invalid_argument: --database-url: no SQLite database file")
    assert not missing.exists()


def test_a_postgresql_url_without_the_driver_says_what_to_install():
    """cdp imports and runs on SQLite without psycopg; PostgreSQL then asks for the extra."""
    script = ("import sys; sys.modules['psycopg'] = None\n"  # as if psycopg were not installed
              "import importlib.util, cdp.storage.database as d\n"
              "assert not d.postgresql_driver_available()\n"
              "from cdp.cli import main\n"
              "sys.argv = ['cdp', 'evaluate', 'email_opt_in', '--profiles', sys.argv[1], '--backend', sys.argv[2]]\n"
              "main()\n")
    sqlite = subprocess.run([sys.executable, "-c", script, str(PROFILES), "sqlite"], capture_output=True, text=True,
                            timeout=60)
    assert sqlite.returncode == 0, sqlite.stderr
    assert sqlite.stdout.split() == run("evaluate", "email_opt_in", "--profiles", str(PROFILES)).stdout.split()
    script = script.replace("'--backend', sys.argv[2]]", "'--backend', sys.argv[2], '--database-url', sys.argv[3]]")
    postgres = subprocess.run([sys.executable, "-c", script, str(PROFILES), "postgresql",
                               "postgresql://u@127.0.0.1:1/db"], capture_output=True, text=True, timeout=60)
    assert postgres.returncode == 1 and postgres.stdout == ""
    assert postgres.stderr.startswith("missing_driver: PostgreSQL needs the psycopg driver, which is not installed: "
                                      "pip install 'cdp[postgresql]'")
