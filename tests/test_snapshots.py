"""Parquet snapshots (cdp/snapshots) and batch runs on DuckDB over them (`--engine duckdb`), on
SQLite and PostgreSQL: the conformance suite saved as segments gives the same memberships as the
database batch job; an incremental snapshot carries changes and deletions (merged on read), and
a compaction gives the same relations; the CLI's `cdp snapshot` and `cdp segments run --engine`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow
import pyarrow.parquet
import sqlalchemy as sa

from cdp.engine.sql.analytic import DuckDBDialect, DuckDBSession, document_tables, flat_items, members_query, rendered
from cdp.engine.sql.loading import load_documents
from cdp.engine.profile import parse_timestamp
from cdp.schema import luma_schema
from cdp.segments import jobs
from cdp.snapshots import export_snapshot, latest_manifest
from cdp.snapshots.export import MAX_PARTS, relations_sql
from cdp.storage.models import events, membership_changes, profiles, segment_history
from tests.test_segments_batch import AS_OF, CASES, DOCUMENTS, SANDBOXES, member_ids, save


def run_on(engine, sandbox: str, as_of: datetime, on: str, root) -> dict:
    with engine.begin() as connection:
        job = jobs.create_job(connection=connection, sandbox=sandbox, keys=None)
    done = jobs.run_job(engine, job.id, as_of=as_of, on=on, snapshots=root)
    assert done.status.value == "succeeded", done.message
    return {k: v.model_dump() for k, v in done.counts.items()}


def relation(manifest, which: str) -> list[tuple]:
    session = DuckDBSession().from_sql(*relations_sql(manifest))
    try:
        order = "pk" if which == "profiles" else "profile_pk, event_id"
        return session.connection.execute(f"SELECT * FROM {which} ORDER BY {order}").fetchall()
    finally:
        session.close()


def test_duckdb_run_equals_the_database_run(migrated_engine, tmp_path):
    """The conformance cases (without a catalogue, at the default as_of) as active segments: DuckDB
    over the snapshot writes the same members and counts as the database, statuses and outbox
    included; a second run turns realized into existing on both."""
    analytic_run_equals_the_database_run(migrated_engine, tmp_path, "duckdb", every=8)  # every section


def analytic_run_equals_the_database_run(engine, tmp_path, on_engine: str, *, every: int) -> None:
    """Every ``every``-th conformance case, and a segment referencing one of them, run on the
    database and on ``on_engine`` over a snapshot: the same members, counts and outbox; a second run
    turns realized into existing on both (tests/test_spark.py runs it on Spark)."""
    cases = [c for c in CASES if "expected" in c and "segments" not in c and "as_of" not in c
             and c.get("dataset", "prod") == "prod"][::every]  # in a bounded time
    results = {}
    for on in ("database", on_engine):
        sandbox = next(SANDBOXES)
        with engine.begin() as connection:
            load_documents(connection, DOCUMENTS, sandbox=sandbox)
            for case in cases:
                save(connection, sandbox, case["name"][:128], case["expression"], status="active")
            # a segment that references another: evaluated after it, reading its members
            save(connection, sandbox, "referencing", f'in segment "{cases[1]["name"]}" or loyalty.points > 0',
                 status="active")
            export_snapshot(connection, sandbox=sandbox, root=tmp_path)
        first = run_on(engine, sandbox, AS_OF, on, tmp_path)
        second = run_on(engine, sandbox, AS_OF, on, tmp_path)
        with engine.connect() as connection:
            for case in cases:
                assert member_ids(connection, sandbox, case["name"][:128]) == case["expected"], (on, case["name"])
            members = {key: member_ids(connection, sandbox, key) for key in first}
            outbox = connection.execute(sa.select(sa.func.count()).select_from(membership_changes)
                                        .where(membership_changes.c.sandbox == sandbox)).scalar_one()
        results[on] = (first, second, members, outbox)
    assert results[on_engine] == results["database"]
    assert all(c["existing"] == 0 for c in results[on_engine][0].values())
    assert all(c["realized"] == 0 for c in results[on_engine][1].values())


def change_and_export(engine, sandbox: str, tmp_path):
    """After a first snapshot of DOCUMENTS: c02's attributes changed, an event added to c03, c04
    deleted with its events — then the next (incremental) snapshot's manifest."""
    with engine.begin() as connection:
        pks = dict(connection.execute(sa.select(profiles.c.external_id, profiles.c.pk)
                                      .where(profiles.c.sandbox == sandbox)).all())
        later = datetime.now(timezone.utc) + timedelta(seconds=5)
        connection.execute(profiles.update().where(profiles.c.pk == pks["c02"])
                           .values(attributes={"loyalty.tier": "platinum"}, updated_at=later))
        connection.execute(events.insert().values(profile_pk=pks["c03"], event_id="new-1", type="purchase",
                                                  ts=AS_OF - timedelta(days=1), fields={}))
        connection.execute(events.delete().where(events.c.profile_pk == pks["c04"]))
        connection.execute(profiles.delete().where(profiles.c.pk == pks["c04"]))
        return export_snapshot(connection, sandbox=sandbox, root=tmp_path)


def two_part_snapshot(engine, sandbox: str, tmp_path):
    """DOCUMENTS loaded and snapshotted, then change_and_export's changes in a second part: its manifest."""
    with engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    manifest = change_and_export(engine, sandbox, tmp_path)
    assert len(manifest.parts) == 2
    return manifest


def test_incremental_snapshot_merges_changes_and_deletions(migrated_engine, tmp_path):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        first = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    assert len(first.parts) == 1 and first.parts[0].full and first.parts[0].profiles == len(DOCUMENTS)
    second = change_and_export(migrated_engine, sandbox, tmp_path)
    delta = second.parts[-1]
    assert len(second.parts) == 2 and not delta.full
    assert (delta.profiles, delta.deleted) == (3, 1)  # c02 and c03 as they are now, c04's tombstone
    merged_profiles, merged_events = relation(second, "profiles"), relation(second, "events")
    assert [p[2] for p in merged_profiles] == [d["id"] for d in DOCUMENTS if d["id"] != "c04"]
    assert json.loads(next(p for p in merged_profiles if p[2] == "c02")[3]) == {"loyalty.tier": "platinum"}
    assert "new-1" in {e[1] for e in merged_events}
    with migrated_engine.begin() as connection:
        compacted = export_snapshot(connection, sandbox=sandbox, root=tmp_path, full=True)
    assert len(compacted.parts) == 1 and compacted.parts[0].full
    assert relation(compacted, "profiles") == merged_profiles
    assert sorted(relation(compacted, "events")) == sorted(merged_events)
    assert not (tmp_path / sandbox / "part-00000").exists()  # the parts before a compaction are gone
    with migrated_engine.begin() as connection:
        for _ in range(MAX_PARTS):
            manifest = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    assert len(manifest.parts) <= MAX_PARTS  # compacted on its own
    assert latest_manifest(tmp_path, sandbox).parts == manifest.parts


def test_a_run_without_a_snapshot_fails_saying_so(migrated_engine, tmp_path):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        save(connection, sandbox, "any", "email_opt_in", status="active")
        job = jobs.create_job(connection=connection, sandbox=sandbox, keys=None)
    done = jobs.run_job(migrated_engine, job.id, as_of=AS_OF, on="duckdb", snapshots=tmp_path)
    assert done.status.value == "failed" and "no snapshot" in done.message


def test_history_is_written_as_by_the_database_job(migrated_engine, tmp_path):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        save(connection, sandbox, "opt-in", "email_opt_in", status="active")
        export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    counts = run_on(migrated_engine, sandbox, parse_timestamp("2026-11-28T12:00:00Z"), "duckdb", tmp_path)
    with migrated_engine.connect() as connection:
        size = connection.execute(sa.select(segment_history.c.size)).scalars().all()
    assert counts["opt-in"]["realized"] == 5 and 5 in size


def test_the_command_line(tmp_path):
    """`cdp evaluate --backend duckdb` answers as in memory; `cdp snapshot` prints the manifest;
    `cdp segments run --engine duckdb` runs on it."""
    import os
    import subprocess
    import sys

    cdp = str(Path(sys.executable).parent / "cdp")
    env = {**os.environ, "CDP_DATA_DIR": str(tmp_path)}
    example = (Path(__file__).parents[1] / "examples" / "gift_giving_cart_abandoners.pql").read_text()
    common = ["--profiles", str(Path(__file__).parents[1] / "examples" / "luma_profiles.jsonl"),
              "--as-of", "2026-11-28T12:00:00Z"]
    answers = [subprocess.run([cdp, "evaluate", example, *common, *backend], env=env, capture_output=True, text=True,
                              timeout=120) for backend in ([], ["--backend", "duckdb"])]
    assert answers[0].returncode == answers[1].returncode == 0, answers[1].stderr
    assert answers[1].stdout == answers[0].stdout == "sarah-rose\n"
    snapshot = subprocess.run([cdp, "snapshot"], env=env, capture_output=True, text=True, timeout=120)
    assert snapshot.returncode == 0, snapshot.stderr
    assert json.loads(snapshot.stdout)["parts"][0]["full"] is True
    run = subprocess.run([cdp, "segments", "run", "--engine", "duckdb"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and json.loads(run.stdout)["status"] == "succeeded", run.stderr


def test_snapshots_hold_the_attributes_as_typed_columns(migrated_engine, tmp_path):
    """Each scalar attribute of the schema is a typed column beside the JSON text, holding what the
    JSON read gives (compared row by row); DuckDB's compiled query reads the column, not the JSON."""
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        manifest = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    session = DuckDBSession().from_sql(*relations_sql(manifest))
    try:
        assert session.flat["loyalty.points"] == "integer" and session.flat["loyalty.joined"] == "date"
        assert session.flat["created_at"] == "datetime" and session.flat["email_opt_in"] == "boolean"
        assert "interests" not in session.flat  # lists stay JSON reads
        for column, expression in flat_items(luma_schema()):
            differ = session.connection.execute(
                f'SELECT count(*) FROM profiles WHERE "{column}" IS DISTINCT FROM {expression}').fetchone()[0]
            assert differ == 0, column
        query = members_query("loyalty.points > 100", engine="duckdb", as_of=AS_OF, sandbox=sandbox,
                              flat=session.flat)
        text, _parameters = rendered(query, session.dialect)
        assert '"a.loyalty.points"' in text and "json_extract" not in text
    finally:
        session.close()


def test_a_value_that_does_not_cast_leaves_its_column_to_the_json_read(tmp_path):
    """Stored data that predates the schema (a points value "lots"): that attribute is not
    flattened, so a query reading it stops exactly as it would over the JSON; the rest are."""
    import duckdb
    import pytest

    profiles_table, events_table = document_tables(
        [{"id": "x1", "loyalty.points": 5, "loyalty.tier": "gold"}], sandbox="s")
    broken = profiles_table.set_column(3, "attributes", pyarrow.array(['{"loyalty.points": "lots"}']))
    session = DuckDBSession().from_tables(broken, events_table)
    try:
        assert "loyalty.points" not in session.flat and session.flat["loyalty.tier"] == "string"
        with pytest.raises(duckdb.ConversionException):
            session.members("loyalty.points > 1", as_of=AS_OF, sandbox="s")
        assert session.members('loyalty.tier = "gold"', as_of=AS_OF, sandbox="s") == []
    finally:
        session.close()


def test_parts_without_a_column_leave_it_to_the_json_read(migrated_engine, tmp_path):
    """A part written before flat columns (or before the attribute was in the schema) and a part
    written with them: the merged relation has only the columns every part has, and the members
    are those of a snapshot where every part has them."""
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        first = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    path = tmp_path / sandbox / "part-00000" / "profiles.parquet"
    table = pyarrow.parquet.read_table(path)
    kept = [n for n in table.column_names if not n.startswith("a.") or n == "a.loyalty.tier"]
    pyarrow.parquet.write_table(table.select(kept), path)  # as an older export wrote it
    with migrated_engine.begin() as connection:
        connection.execute(profiles.update().where(profiles.c.sandbox == sandbox, profiles.c.external_id == "c02")
                           .values(attributes={"loyalty.tier": "gold", "loyalty.points": 900},
                                   updated_at=datetime.now(timezone.utc) + timedelta(seconds=5)))
        second = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
        compacted_root = tmp_path / "compacted"
        compacted = export_snapshot(connection, sandbox=sandbox, root=compacted_root, full=True)
    assert len(first.parts) == 1 and len(second.parts) == 2
    answers = []
    for manifest in (second, compacted):
        session = DuckDBSession().from_sql(*relations_sql(manifest))
        try:
            answers.append((set(session.flat), [session.members(text, as_of=AS_OF, sandbox=sandbox) for text in
                                                ('loyalty.tier = "gold"', "loyalty.points > 500", "email_opt_in")]))
        finally:
            session.close()
    assert answers[0][0] == {"loyalty.tier"} and len(answers[1][0]) > 10
    assert answers[0][1] == answers[1][1]
    assert any(external_id == "c02" for _pk, external_id in answers[0][1][1])


def test_duckdb_drives_an_event_sequence_from_its_first_step():
    """A sequence that reads nothing of the profile is `p.pk IN (SELECT profile_pk …)` on DuckDB
    (correlated, DuckDB decorrelated the `then` step against every event: 2.8× the hand-written
    query on 100,000 profiles); a term that reads the profile stays a correlated EXISTS."""
    example = (Path(__file__).parents[1] / "examples" / "gift_giving_cart_abandoners.pql").read_text()
    text, _parameters = rendered(members_query(example, engine="duckdb", as_of=AS_OF, sandbox="s"),
                                 DuckDBDialect())
    assert text.count("p.pk IN (SELECT") == 1 and text.count("EXISTS (SELECT") == 2  # the then-step, the attributes
