"""Parquet snapshots (cdp/snapshots) and batch runs on DuckDB over them (`--engine duckdb`), on
SQLite and PostgreSQL: the conformance suite saved as segments gives the same memberships as the
database batch job; an incremental snapshot carries changes and deletions (merged on read), and
a compaction gives the same relations; the CLI's `cdp snapshot` and `cdp segments run --engine`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from cdp.engine.sql.analytic import DuckDBSession
from cdp.engine.sql.loading import load_documents
from cdp.engine.profile import parse_timestamp
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
    cases = [c for c in CASES if "expected" in c and "segments" not in c and "as_of" not in c
             and c.get("dataset", "prod") == "prod"][::8]  # every section, in a bounded time
    results = {}
    for on in ("database", "duckdb"):
        sandbox = next(SANDBOXES)
        with migrated_engine.begin() as connection:
            load_documents(connection, DOCUMENTS, sandbox=sandbox)
            for case in cases:
                save(connection, sandbox, case["name"][:128], case["expression"], status="active")
            # a segment that references another: evaluated after it, reading its members
            save(connection, sandbox, "referencing", f'in segment "{cases[1]["name"]}" or loyalty.points > 0',
                 status="active")
            export_snapshot(connection, sandbox=sandbox, root=tmp_path)
        first = run_on(migrated_engine, sandbox, AS_OF, on, tmp_path)
        second = run_on(migrated_engine, sandbox, AS_OF, on, tmp_path)
        with migrated_engine.connect() as connection:
            for case in cases:
                assert member_ids(connection, sandbox, case["name"][:128]) == case["expected"], (on, case["name"])
            members = {key: member_ids(connection, sandbox, key) for key in first}
            outbox = connection.execute(sa.select(sa.func.count()).select_from(membership_changes)
                                        .where(membership_changes.c.sandbox == sandbox)).scalar_one()
        results[on] = (first, second, members, outbox)
    assert results["duckdb"] == results["database"]
    assert all(c["existing"] == 0 for c in results["duckdb"][0].values())
    assert all(c["realized"] == 0 for c in results["duckdb"][1].values())


def test_incremental_snapshot_merges_changes_and_deletions(migrated_engine, tmp_path):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        first = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    assert len(first.parts) == 1 and first.parts[0].full and first.parts[0].profiles == len(DOCUMENTS)
    with migrated_engine.begin() as connection:
        pks = dict(connection.execute(sa.select(profiles.c.external_id, profiles.c.pk)
                                      .where(profiles.c.sandbox == sandbox)).all())
        later = datetime.now(timezone.utc) + timedelta(seconds=5)
        connection.execute(profiles.update().where(profiles.c.pk == pks["c02"])
                           .values(attributes={"loyalty.tier": "platinum"}, updated_at=later))
        connection.execute(events.insert().values(profile_pk=pks["c03"], event_id="new-1", type="purchase",
                                                  ts=AS_OF - timedelta(days=1), fields={}))
        connection.execute(events.delete().where(events.c.profile_pk == pks["c04"]))
        connection.execute(profiles.delete().where(profiles.c.pk == pks["c04"]))
        second = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
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
    from pathlib import Path

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
