"""Batch runs over a snapshot computed a level of the reference graph at a time (cdp/segments/
jobs.py): independent segments are branches of one UNION ALL (``segments_per_query`` of them),
and the memberships, counts, statuses and outbox are still those of the database batch job; a
segment that fails stops the job, named. On DuckDB, and on Spark with the session-wide Spark of
tests/conftest.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from cdp.engine.sql.analytic import DuckDBDialect, DuckDBSession, document_tables, members_queries, rendered
from cdp.engine.sql.loading import load_documents
from cdp.segments import jobs
from cdp.snapshots import export_snapshot
from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade
from cdp.storage.models import membership_changes, segment_history, segments
from tests.test_segments_batch import AS_OF, DOCUMENTS, SANDBOXES, member_ids, save

# Four levels: leaves, then segments reading them, and so on. "ref-draft" and "ref-draft-2"
# reference a segment that is not active (not in the run): it is compiled into each of them as
# a CTE of its own — two branches of one statement, whose CTE names must differ.
GRAPH = {
    "leaf-points": "loyalty.points > 100",
    "leaf-opt-in": "email_opt_in",
    "leaf-buyer": 'exists event where type = "purchase"',
    "leaf-never": "1 = 2",
    "mid-a": 'in segment "leaf-points" and not in segment "leaf-opt-in"',
    "mid-b": 'in segment "leaf-buyer" or in segment "leaf-never"',
    "ref-draft": 'in segment "draft" or in segment "leaf-opt-in"',
    "ref-draft-2": 'in segment "draft" and not in segment "leaf-never"',
    "top": 'in segment "mid-a" or (in segment "mid-b" and in segment "leaf-points")',
    "apex": 'not in segment "top" and (in segment "mid-b" or in segment "ref-draft")',
}
DRAFT = 'count(event where type = "purchase") >= 1 or email_opt_in'
LEVELS = [["leaf-points", "leaf-opt-in", "leaf-buyer", "leaf-never"], ["mid-a", "mid-b", "ref-draft", "ref-draft-2"],
          ["top"], ["apex"]]


@pytest.fixture(scope="module")
def engine(sqlite_url_factory):
    engine = create_engine(sqlite_url_factory())
    upgrade(engine)
    yield engine
    engine.dispose()


def sandbox_with_graph(engine, root, extra: dict[str, str] | None = None) -> str:
    sandbox = next(SANDBOXES)
    with engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        save(connection, sandbox, "draft", DRAFT)
        for key, text in {**GRAPH, **(extra or {})}.items():
            save(connection, sandbox, key, text, status="active")
        export_snapshot(connection, sandbox=sandbox, root=root)
    return sandbox


def run(engine, sandbox: str, root, on: str, per_query: int | None = None):
    with engine.begin() as connection:
        job = jobs.create_job(connection=connection, sandbox=sandbox, keys=None)
    return jobs.run_job(engine, job.id, as_of=AS_OF, on=on, snapshots=root, segments_per_query=per_query)


def written(engine, sandbox: str, counts) -> tuple:
    """What a run left: each segment's members, the counts, the history and the outbox."""
    with engine.connect() as connection:
        members = {key: member_ids(connection, sandbox, key) for key in GRAPH}
        history = sorted(connection.execute(
            sa.select(segments.c.key, segment_history.c.size, segment_history.c.entered, segment_history.c.exited)
            .join(segments, segments.c.pk == segment_history.c.segment_pk).where(segments.c.sandbox == sandbox)).all())
        outbox = connection.execute(sa.select(sa.func.count()).select_from(membership_changes)
                                    .where(membership_changes.c.sandbox == sandbox)).scalar_one()
    return members, {k: v.model_dump() for k, v in counts.items()}, history, outbox


def grouped_equals_database(engine, root, on: str, per_query: int) -> None:
    results = {}
    for side, per in (("database", None), (on, per_query)):
        sandbox = sandbox_with_graph(engine, root)
        firsts = []
        for _ in range(2):  # realized, then existing
            done = run(engine, sandbox, root, side, per)
            assert done.status.value == "succeeded", done.message
            firsts.append(written(engine, sandbox, done.counts))
        results[side] = firsts
    assert results[on] == results["database"]
    members = results["database"][0][0]
    assert members["leaf-never"] == [] and all(members[k] for k in ("leaf-points", "mid-b", "ref-draft", "apex"))


def test_levels_of_a_reference_graph():
    graph = {"mid-a": {"leaf-points", "leaf-opt-in"}, "mid-b": {"leaf-buyer", "leaf-never"},
             "ref-draft": {"draft", "leaf-opt-in"}, "ref-draft-2": {"draft", "leaf-never"},
             "top": {"mid-a", "mid-b", "leaf-points"}, "apex": {"top", "mid-b", "ref-draft"}}
    rows = [SimpleNamespace(key=key) for level in LEVELS for key in level]
    assert [[row.key for row in level] for level in jobs.dependency_levels(rows, graph)] == LEVELS


@pytest.mark.parametrize("per_query", [1, 3, 25])
def test_a_graph_of_four_levels_run_grouped_on_duckdb_writes_what_the_database_writes(engine, tmp_path, per_query):
    grouped_equals_database(engine, tmp_path, "duckdb", per_query)


def test_a_graph_of_four_levels_run_grouped_on_spark_writes_what_the_database_writes(engine, tmp_path, spark_session):
    grouped_equals_database(engine, tmp_path, "spark", 3)


def test_branches_of_one_statement_name_their_ctes_apart():
    """Two expressions referencing the same segment that is not computed yet: each branch has
    its own CTE of it, and the UNION ALL of both runs (a shared name would be refused)."""
    catalogue = {"draft": DRAFT}
    queries = members_queries(['in segment "draft"', 'not in segment "draft"'], engine="duckdb", as_of=AS_OF,
                              sandbox="s", segments=catalogue)
    session = DuckDBSession()
    try:
        session.from_tables(*document_tables(DOCUMENTS, sandbox="s"))
        inside, outside = session.members_many(queries)
        alone = session.members('in segment "draft"', as_of=AS_OF, sandbox="s", segments=catalogue)
    finally:
        session.close()
    assert inside == alone and inside
    assert not {pk for pk, _ in inside} & {pk for pk, _ in outside}
    assert len(inside) + len(outside) == len(DOCUMENTS)


def test_a_segment_that_fails_in_a_grouped_statement_fails_the_job_named(engine, tmp_path, monkeypatch):
    """The engine refuses the statement holding one bad segment: its level's segments run one
    by one, the bad one is named in the job's message, and the earlier levels stay written."""
    import duckdb

    sandbox = sandbox_with_graph(engine, tmp_path, extra={"bad": 'in segment "leaf-points" and loyalty.points > 987654'})
    original = DuckDBSession.fetch

    def refusing(self, query):
        _text, parameters = rendered(query, DuckDBDialect())
        if 987654 in parameters:  # the bad segment's statement
            raise duckdb.InvalidInputException("refused for the test")
        return original(self, query)

    monkeypatch.setattr(DuckDBSession, "fetch", refusing)
    done = run(engine, sandbox, tmp_path, "duckdb", 25)
    assert done.status.value == "failed"
    assert done.message == "segment 'bad' could not be evaluated on duckdb: refused for the test"
    assert set(done.counts) == set(LEVELS[0])  # level 0 written; level 1 (with "bad") stopped
    with engine.connect() as connection:
        assert member_ids(connection, sandbox, "leaf-points")


def test_a_segment_that_does_not_compile_fails_the_job_named(engine, tmp_path):
    """A stored expression the engine refuses at compile time (DuckDB checks a chain of decimal
    operands for overflow only up to 8 of them) is named in the job's message."""
    sandbox = sandbox_with_graph(engine, tmp_path)
    with engine.begin() as connection:
        save(connection, sandbox, "long", " + ".join(["loyalty.points * 1.5"] * 10) + " > 1", status="active")
    done = run(engine, sandbox, tmp_path, "duckdb", 25)
    assert done.status.value == "failed", done.message
    assert done.message.startswith("a segment could not be evaluated: segment 'long': duckdb: a chain of 10"), \
        done.message
