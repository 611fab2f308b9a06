"""One conformance suite for every backend (DSL.md, all sections).

Cases are data (cases.toml: expression, expected ids, the section they exercise) over a fixed
dataset (profiles.jsonl, or profiles_NAME.jsonl for a case with `dataset = "NAME"`); expected ids
were worked out by hand from DSL.md. Every case runs on every backend: in memory, SQLite and
PostgreSQL (a real throwaway cluster), DuckDB — over typed attribute and event-field columns as a
snapshot has them, and over the JSON documents alone (``duckdb_json``) — and Spark (local[2], one
Spark session for the whole run, loaded once for both of its variants: reading the typed event-field
columns, ``spark``, and the JSON of ``fields``, ``spark_json``; the cases without segment
references are evaluated many per Spark query, as UNION ALL).
"""

from __future__ import annotations

import json
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdp.dsl import PqlError, check
from cdp.engine import compile_predicate, load_profile
from cdp.engine.profile import parse_timestamp

HERE = Path(__file__).parent
DEFAULT_AS_OF = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
CASES = tomllib.loads((HERE / "cases.toml").read_text(encoding="utf-8"))["case"]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


DOCUMENTS = _read(HERE / "profiles.jsonl")
# Extra datasets (profiles_NAME.jsonl), each loaded into a sandbox of its own name.
DATASETS = {"prod": DOCUMENTS, **{p.stem.removeprefix("profiles_"): _read(p) for p in sorted(HERE.glob("profiles_*.jsonl"))}}
BACKENDS = ["memory", "sqlite", "postgresql", "duckdb", "duckdb_json", "spark", "spark_json"]


@pytest.fixture(scope="module")
def memory_backend():
    loaded = {name: [load_profile(d) for d in documents] for name, documents in DATASETS.items()}

    def evaluate(expression, as_of, segments, dataset="prod"):
        predicate = compile_predicate(expression, segments=segments)
        return [p.id for p in loaded[dataset] if predicate(p, as_of)]
    return evaluate


def _sql_backend(url: str):
    from cdp.engine import sql
    from cdp.storage.database import create_engine
    from cdp.engine.sql.loading import load_documents
    from cdp.storage.migrate import upgrade

    engine = create_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        for name, documents in DATASETS.items():
            load_documents(connection, documents, sandbox=name)

    def evaluate(expression, as_of, segments, dataset="prod"):
        with engine.connect() as connection:
            return sql.evaluate(connection, expression, as_of=as_of, segments=segments, sandbox=dataset)
    return evaluate, engine


@pytest.fixture(scope="module")
def sqlite_backend(sqlite_url_factory):
    evaluate, engine = _sql_backend(sqlite_url_factory())
    yield evaluate
    engine.dispose()


@pytest.fixture(scope="module")
def postgresql_backend(postgres_url_factory):
    evaluate, engine = _sql_backend(postgres_url_factory())
    yield evaluate
    engine.dispose()


def _load_datasets(session, **options):
    """Every dataset at once into an analytic session, one sandbox each (the snapshot layout);
    ``options``: of ``from_tables``."""
    import pyarrow

    from cdp.engine.sql.analytic import document_tables

    profiles, events, first = [], [], 1
    for name, documents in DATASETS.items():
        p, e = document_tables(documents, sandbox=name, first_pk=first)
        profiles.append(p)
        events.append(e)
        first += len(documents)
    session.from_tables(pyarrow.concat_tables(profiles), pyarrow.concat_tables(events), **options)


def _analytic_backend(session, **options):
    """DuckDB over every dataset (``options``: of ``from_tables``)."""
    _load_datasets(session, **options)

    def evaluate(expression, as_of, segments, dataset="prod"):
        return [external_id for _pk, external_id in
                session.members(expression, as_of=as_of, segments=segments, sandbox=dataset)]
    return evaluate


@pytest.fixture(scope="module")
def duckdb_backend():
    from cdp.engine.sql.analytic import DuckDBSession

    session = DuckDBSession()
    yield _analytic_backend(session)
    assert session.flat and session.flat_events  # the typed columns are what this variant reads
    session.close()


@pytest.fixture(scope="module")
def duckdb_json_backend():
    """DuckDB reading every attribute and event field through the JSON documents (no typed columns)."""
    from cdp.engine.sql.analytic import DuckDBSession

    session = DuckDBSession()
    yield _analytic_backend(session, flat_columns=False)
    assert not session.flat and not session.flat_events
    session.close()


@pytest.fixture(scope="module")
def spark_tables(spark_session):
    """The datasets, loaded once into the run's one Spark session, the events with the typed
    event-field columns a snapshot has: ``spark`` reads them, ``spark_json`` the same relations
    through the JSON of ``fields`` (its compiler is given no columns)."""
    _load_datasets(spark_session)
    assert spark_session.flat_events and spark_session.flat  # the typed columns are what `spark` reads
    return spark_session


def _spark_backend(session, flat_events, same_as=None, flat=None):
    """Spark over the datasets; every case without segment references answered up front, a batch
    of cases per Spark query (a query costs Spark about a second however small: one per case
    would take minutes). A case the batch cannot run (an error) runs alone, so it fails alone.
    ``same_as``: (another Spark backend, whether a case compiles to the same statement on both);
    such a case is answered by the other one — the same statement on the same relations."""
    from cdp.engine.sql.analytic import members_query

    def query(expression, as_of, segments, dataset):
        return members_query(expression, engine="spark", as_of=as_of, sandbox=dataset, segments=segments,
                             flat_events=flat_events, flat=flat)

    def shared(expression, as_of, segments, dataset) -> bool:
        return same_as is not None and same_as[1](expression, as_of, segments, dataset)

    answers: dict[tuple, list[str]] = {}
    batches: dict[datetime, list[dict]] = {}
    for case in CASES:
        if "expected" in case and not case.get("segments"):
            as_of = parse_timestamp(case["as_of"]) if "as_of" in case else DEFAULT_AS_OF
            batches.setdefault(as_of, []).append(case)
    for as_of, cases in batches.items():
        for start in range(0, len(cases), 25):  # more per query plans slower than it saves
            chunk, queries = [], []
            for case in cases[start:start + 25]:
                if shared(case["expression"], as_of, None, case.get("dataset", "prod")):
                    continue
                try:
                    queries.append(query(case["expression"], as_of, None, case.get("dataset", "prod")))
                    chunk.append(case)
                except Exception:  # noqa: BLE001 - refused when compiled: the case runs alone and says why
                    continue
            try:
                results = session.members_many(queries)
            except Exception:  # noqa: BLE001 - each case of the batch runs alone and fails alone
                continue
            for case, rows in zip(chunk, results):
                answers[(case["expression"], as_of, case.get("dataset", "prod"))] = [i for _pk, i in rows]

    def answer(expression, as_of, segments, dataset="prod"):
        if shared(expression, as_of, segments, dataset):
            return same_as[0](expression, as_of, segments, dataset)
        found = answers.get((expression, as_of, dataset)) if not segments else None
        if found is not None:
            return found
        return [i for _pk, i in session.run(query(expression, as_of, segments, dataset))]
    return answer


@pytest.fixture(scope="module")
def spark_backend(spark_tables):
    return _spark_backend(spark_tables, spark_tables.flat_events, flat=spark_tables.flat)


@pytest.fixture(scope="module")
def spark_json_backend(spark_tables, spark_backend):
    """Spark reading event fields through the JSON. A case that reads no event field compiles to
    the statement ``spark`` runs, so ``spark``'s answer is its answer (half the cases; about
    3 minutes of the suite's time otherwise)."""
    from cdp.engine.sql.analytic import members_query

    def same_statement(expression, as_of, segments, dataset) -> bool:
        def statement(flat_events, flat) -> tuple[str, str]:
            compiled = members_query(expression, engine="spark", as_of=as_of, sandbox=dataset, segments=segments,
                                     flat_events=flat_events, flat=flat).compile()
            return str(compiled), repr(compiled.params)
        try:
            return statement(spark_tables.flat_events, spark_tables.flat) == statement(None, None)
        except Exception:  # noqa: BLE001 - refused when compiled: each backend answers (and fails) on its own
            return False

    return _spark_backend(spark_tables, None, same_as=(spark_backend, same_statement))


def test_cases_are_well_formed():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    assert len(CASES) >= 150
    for case in CASES:
        assert ("expected" in case) != ("error" in case), case["name"]
        ids = {d["id"] for d in DATASETS[case.get("dataset", "prod")]}
        assert set(case.get("expected", [])) <= ids, case["name"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [c for c in CASES if "expected" in c], ids=lambda c: c["name"])
def test_case(case: dict, backend: str, request):
    evaluate = request.getfixturevalue(f"{backend}_backend")
    as_of = parse_timestamp(case["as_of"]) if "as_of" in case else DEFAULT_AS_OF
    ids = evaluate(case["expression"], as_of, case.get("segments"), case.get("dataset", "prod"))
    assert ids == case["expected"], f"{case['section']}: {case.get('note', '')}"


@pytest.mark.parametrize("case", [c for c in CASES if "error" in c], ids=lambda c: c["name"])
def test_invalid_case(case: dict):
    with pytest.raises(PqlError) as info:
        check(case["expression"], segments=case.get("segments"))
    assert case["error"] in info.value.codes, f"{case['section']}: got {info.value.codes}: {info.value}"
