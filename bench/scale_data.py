"""Millions of benchmark profiles, generated set-wise inside the database (bench/bench_scale.py).

``generate_profiles`` makes ~30,000 profiles a second in Python and the bulk path of bench_sql
parses each again: 4,000,000 profiles / 40,000,000 events would take the better part of an hour.
Here ``--templates`` profiles (``generate_profiles(T, seed=42)``, the same documents bench_sql
loads) are stored once as rows in the database's own format (``load_profile`` + ``profile_rows``,
as bench_sql's bulk path makes them) in two template tables; profile ``pk`` is then template
``(pk - 1) % T`` under its own external id (``p-%08d``) and event ids (``p-%08d-eNNN``), copied by
one INSERT … SELECT per million profiles. The shape of the data is generate_profiles' own —
attribute values, events per profile, event types and times, JSON documents — repeated every T
profiles (a segment's members are the templates' members, each T-th profile alike).

The database grows in place (pks continue from the largest): 1M, then 2M, then 4M profiles.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from cdp.demo import generate_profiles
from cdp.engine import load_profile
from cdp.engine.sql.loading import profile_rows
from cdp.storage.database import create_engine, sqlite_text
from cdp.storage.migrate import upgrade

SANDBOX = "prod"
STEP = 500_000  # profiles per INSERT … SELECT (one transaction each)
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def templates(count: int, dialect: str) -> list[tuple[dict, list[tuple[int, str, datetime, dict]]]]:
    """(attributes, [(seq, type, ts, fields)]) of ``generate_profiles(count, seed=42)``, as the
    dialect's loader stores them (datetimes inside documents differ by dialect)."""
    made = []
    for document in generate_profiles(count, seed=42):
        row, events = profile_rows(load_profile(document), dialect, SANDBOX, NOW)
        made.append((row["attributes"], [(i + 1, e["type"], e["ts"], e["fields"]) for i, e in enumerate(events)]))
    return made


def profile_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT coalesce(max(pk), 0) FROM profiles")).scalar_one()


# ---- SQLite -------------------------------------------------------------------------------------

def _sqlite_templates(db: sqlite3.Connection, made) -> None:
    import json

    db.execute("CREATE TABLE IF NOT EXISTS bench_tpl_profiles (tpl INTEGER PRIMARY KEY, attributes TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS bench_tpl_events (tpl INTEGER, seq INTEGER, type TEXT, ts TEXT, "
               "fields TEXT, PRIMARY KEY (tpl, seq))")
    if db.execute("SELECT count(*) FROM bench_tpl_profiles").fetchone()[0] == len(made):
        return
    db.execute("DELETE FROM bench_tpl_profiles")
    db.execute("DELETE FROM bench_tpl_events")
    db.executemany("INSERT INTO bench_tpl_profiles VALUES (?, ?)",
                   [(t, json.dumps(attributes)) for t, (attributes, _events) in enumerate(made)])
    db.executemany("INSERT INTO bench_tpl_events VALUES (?, ?, ?, ?, ?)",
                   [(t, seq, type_, sqlite_text(ts), json.dumps(fields))
                    for t, (_attributes, events) in enumerate(made) for seq, type_, ts, fields in events])
    db.commit()


def grow_sqlite(path: Path, target: int, made, log) -> sa.Engine:
    """The SQLite database at ``path`` (migrated when new) grown to ``target`` profiles."""
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    have = profile_count(engine)
    engine.dispose()
    if have >= target:
        return create_engine(f"sqlite:///{path}")
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -1048576")
    _sqlite_templates(db, made)
    count = len(made)
    now = sqlite_text(NOW)
    started = time.perf_counter()
    for lo in range(have + 1, target + 1, STEP):
        hi = min(lo + STEP - 1, target)
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO profiles (pk, sandbox, external_id, attributes, created_at, updated_at) "
            "WITH RECURSIVE n(pk) AS (SELECT ? UNION ALL SELECT pk + 1 FROM n WHERE pk < ?) "
            "SELECT n.pk, ?, printf('p-%08d', n.pk), t.attributes, ?, ? FROM n "
            "JOIN bench_tpl_profiles t ON t.tpl = (n.pk - 1) % ?", (lo, hi, SANDBOX, now, now, count))
        db.execute(
            "INSERT INTO events (profile_pk, event_id, type, ts, fields) "
            "SELECT p.pk, printf('p-%08d-e%03d', p.pk, e.seq), e.type, e.ts, e.fields FROM profiles p "
            "JOIN bench_tpl_events e ON e.tpl = (p.pk - 1) % ? WHERE p.pk BETWEEN ? AND ? ORDER BY p.pk, e.seq",
            (count, lo, hi))
        db.execute("COMMIT")
        log(f"SQLite: {hi:,} profiles ({time.perf_counter() - started:.0f} s)")
    db.execute("ANALYZE")
    db.execute("PRAGMA journal_mode = WAL")  # as create_engine leaves it
    db.close()
    return create_engine(f"sqlite:///{path}")


# ---- PostgreSQL ---------------------------------------------------------------------------------

def _postgres_templates(db, made) -> None:
    import json

    db.execute("CREATE TABLE IF NOT EXISTS bench_tpl_profiles (tpl BIGINT PRIMARY KEY, attributes JSONB)")
    db.execute("CREATE TABLE IF NOT EXISTS bench_tpl_events (tpl BIGINT, seq INT, type TEXT, ts TIMESTAMPTZ, "
               "fields JSONB, PRIMARY KEY (tpl, seq))")
    if db.execute("SELECT count(*) FROM bench_tpl_profiles").fetchone()[0] == len(made):
        return
    db.execute("TRUNCATE bench_tpl_profiles, bench_tpl_events")
    with db.cursor().copy("COPY bench_tpl_profiles FROM STDIN") as copy:
        for t, (attributes, _events) in enumerate(made):
            copy.write_row((t, json.dumps(attributes)))
    with db.cursor().copy("COPY bench_tpl_events FROM STDIN") as copy:
        for t, (_attributes, events) in enumerate(made):
            for seq, type_, ts, fields in events:
                copy.write_row((t, seq, type_, ts, json.dumps(fields)))
    db.commit()


def grow_postgres(url: str, target: int, made, log) -> sa.Engine:
    """The PostgreSQL database at ``url`` (migrated when new) grown to ``target`` profiles; the
    events' foreign key is checked once at the end (as bench_sql's bulk path does)."""
    import psycopg

    engine = create_engine(url)
    upgrade(engine)
    have = profile_count(engine)
    if have >= target:
        return engine
    db = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    db.execute("SET TIME ZONE 'UTC'")
    _postgres_templates(db, made)
    count = len(made)
    keys = db.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                      "WHERE conrelid = 'events'::regclass AND contype = 'f'").fetchall()
    for name, _definition in keys:
        db.execute(f'ALTER TABLE events DROP CONSTRAINT "{name}"')
    db.commit()
    started = time.perf_counter()
    for lo in range(have + 1, target + 1, STEP):
        hi = min(lo + STEP - 1, target)
        db.execute(
            "INSERT INTO profiles (pk, sandbox, external_id, attributes, created_at, updated_at) "
            "SELECT n, %s, 'p-' || lpad(n::text, 8, '0'), t.attributes, %s, %s "
            "FROM generate_series(%s::bigint, %s::bigint) n JOIN bench_tpl_profiles t ON t.tpl = (n - 1) %% %s",
            (SANDBOX, NOW, NOW, lo, hi, count))
        db.execute(
            "INSERT INTO events (profile_pk, event_id, type, ts, fields) "
            "SELECT n, 'p-' || lpad(n::text, 8, '0') || '-e' || lpad(e.seq::text, 3, '0'), e.type, e.ts, e.fields "
            "FROM generate_series(%s::bigint, %s::bigint) n JOIN bench_tpl_events e ON e.tpl = (n - 1) %% %s "
            "ORDER BY n, e.seq", (lo, hi, count))
        db.commit()
        log(f"PostgreSQL: {hi:,} profiles ({time.perf_counter() - started:.0f} s)")
    for name, definition in keys:
        db.execute(f'ALTER TABLE events ADD CONSTRAINT "{name}" {definition}')
    db.execute("SELECT setval(pg_get_serial_sequence('profiles', 'pk'), (SELECT max(pk) FROM profiles))")
    db.commit()
    db.autocommit = True
    db.execute("VACUUM (ANALYZE) profiles")
    db.execute("VACUUM (ANALYZE) events")
    db.close()
    return engine
