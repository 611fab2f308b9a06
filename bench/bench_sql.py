"""SQL engine and storage: load N generated Luma profiles into SQLite and PostgreSQL, then time
the compiled SQL of two segments against the best hand-written SQL for the same segments.

    python bench/bench_sql.py [--profiles 1000000] [--runs 5] [--record]
    (or: bash bench/run_sql.sh …, which uses the project's .venv)

1. Data. ``cdp.demo.generate_profiles(N, seed=42)`` (~10 events per profile) is generated once
   and cached as JSON Lines in bench/data/ (git-ignored); the cache is reused while the
   generator's source and the parameters are unchanged, and its first N lines serve any smaller N.
2. Load. Into a new SQLite file (bench/data/sql-N.sqlite) and a throwaway PostgreSQL cluster
   started here and stopped at the end, both migrated with ``cdp.storage.migrate.upgrade``. The
   first K profiles (``--loader-profiles``; default min(100,000, N/10)) go through our loader,
   ``cdp.engine.sql.loading.load_documents``, timed on its own for each database (its honest
   throughput); the rest through a bulk path written here: the same ``load_profile`` +
   ``profile_rows`` (+ ``json_value``) rows, prepared by two worker processes, written by one
   ``executemany`` transaction on SQLite (synchronous=OFF, journal_mode=OFF) and ``COPY`` on
   PostgreSQL. A sample of bulk-loaded profiles is loaded again with ``load_documents`` into
   scratch databases and compared row by row (every column but created_at/updated_at): they
   must be identical. Then SQLite: foreign_key_check, ANALYZE; PostgreSQL: VACUUM (ANALYZE).
   Reported: load times, database sizes.
3. Queries. For each segment, on each database, the compiled query (``members_query``, as_of
   2026-11-28T12:00Z) and a hand-written query run on the same connection in alternating order
   (the order flips each run) after one warm-up each; the figure is the median of ``--runs``.
   Both ship the member ids into Python, in load order (``ORDER BY pk``); a count-only variant
   of each (``SELECT count(*)`` of the same query without ORDER BY) shows the query without
   the shipping. The hand-written SQL must return exactly the same ids (asserted), and so must
   the in-memory engine over all N profiles (checked while loading; its speed is timed on the
   first 100,000, for context). Query plans (EXPLAIN QUERY PLAN; EXPLAIN (ANALYZE, BUFFERS)) go
   to bench/data/sql-plans-N.txt, one line each into the report.

Targets: compiled / hand-written ≤ 1.1 on PostgreSQL and ≤ 1.25 on SQLite.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import sqlalchemy as sa
from _common import SEGMENT_A, SEGMENT_B, cpu_model, markdown_table
from sqlalchemy import event

from cdp.demo import generate_profiles, generator
from cdp.devtools.postgres import start_cluster
from cdp.engine import compile_predicate, load_profile
from cdp.engine.sql import members_query
from cdp.storage.database import create_engine, sqlite_text
from cdp.engine.sql.loading import load_documents, profile_rows
from cdp.storage.migrate import upgrade

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "RESULTS.md"

SEED = 42
EVENTS_PER_PROFILE = 10
AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
SANDBOX = "prod"
TARGETS = {"postgresql": 1.10, "sqlite": 1.25}
CHUNK = 5_000  # profiles per bulk-load step
VERIFY_SAMPLE = 2_000  # bulk-loaded profiles loaded again with load_documents and compared
MEMORY_PROFILES = 100_000  # the in-memory engine is timed on the first ones (17 KB each once loaded)

# PostgreSQL for a 2-core / 24 GiB box (on top of start_cluster's fsync=off,
# synchronous_commit=off, full_page_writes=off: a throwaway cluster). JIT is off: its compile
# time (100-300 ms) is paid on every execution of these sub-second queries.
PG_SETTINGS = {
    "shared_buffers": "2GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "effective_cache_size": "16GB",
    "max_parallel_workers_per_gather": "2",
    "max_worker_processes": "4",
    "max_parallel_workers": "2",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "jit": "off",
}
# SQLite on the query connection (both contenders): a 1 GiB page cache and memory-mapped reads.
SQLITE_PRAGMAS = ["PRAGMA cache_size = -1048576", "PRAGMA mmap_size = 17179869184", "PRAGMA temp_store = MEMORY"]

WEEK_AGO = AS_OF - timedelta(days=7)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def one_run_at_a_time():
    """Runs share bench/data (the JSONL cache, the SQLite file) and the machine: a second run
    waits for the first. Returns the open lock file (held until the process exits)."""
    import fcntl

    DATA.mkdir(parents=True, exist_ok=True)
    lock = (DATA / "bench_sql.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another bench_sql run holds bench/data/bench_sql.lock: waiting for it to finish")
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


# ---- hand-written SQL -------------------------------------------------------------------------
#
# The best SQL we could write by hand for each segment on the storage schema, with the same
# answers as the language's three-valued logic (a missing attribute or field never satisfies
# `!=` or `>`, as in SQL). Parameters: :sandbox, :lo (as_of − 7 days, exclusive), :as_of
# (inclusive); on SQLite datetimes are the stored text 'YYYY-MM-DD HH:MM:SS.ffffff'.
# `{order}` is "ORDER BY p.pk" (the compiled query's load order) or "" for the count-only form.

HAND = {
    # (a): one scan of the profiles. Tried and slower on PostgreSQL: one jsonpath `@@`, `@>` for
    # the country, `->` compared as jsonb; on SQLite `->>` is json_extract by another name.
    ("sqlite", "a"): """
SELECT p.external_id FROM profiles p
WHERE p.sandbox = :sandbox
  AND json_extract(p.attributes, '$."loyalty.tier"') IN ('silver', 'gold')
  AND json_extract(p.attributes, '$."home_address.country"') = 'US'
  AND json_extract(p.attributes, '$."loyalty.points"') > 500
{order}""",
    ("postgresql", "a"): """
SELECT p.external_id FROM profiles p
WHERE p.sandbox = :sandbox
  AND p.attributes ->> 'loyalty.tier' IN ('silver', 'gold')
  AND p.attributes ->> 'home_address.country' = 'US'
  AND (p.attributes ->> 'loyalty.points')::bigint > 500
{order}""",
    # (b) on both databases: drive the query from the carts of the window. One pass over the
    # (profile_pk, type, ts) index finds them (there is no index on (type, ts)), `type` tested
    # before `ts` (SQLite decodes index columns left to right: 90 % of entries fail on type);
    # each cart is checked for a purchase within a day after it by one index probe (an anti-join);
    # only the few profiles left (~4 % of all) are then read, their tier tested and their recent
    # carts compared with their preferred category and size. The profile-first shape (one probe
    # and one JSON parse per profile) is 2.5× slower on SQLite; on PostgreSQL the planner finds
    # this plan by itself once the purchase probe is correlated to the cart, not to the profile.
    # `ts + 1 day` on SQLite is computed on the stored text (whole seconds, same microseconds).
    ("sqlite", "b"): """
SELECT p.external_id FROM profiles p
WHERE p.pk IN (SELECT c.profile_pk FROM events c
               WHERE c.type = 'addToCart' AND c.ts > :lo AND c.ts <= :as_of
                 AND NOT EXISTS (SELECT 1 FROM events q
                                 WHERE q.profile_pk = c.profile_pk AND q.type = 'purchase' AND q.ts > c.ts
                                   AND q.ts <= :as_of AND q.ts <= datetime(c.ts, '+1 day') || substr(c.ts, 20)))
  AND p.sandbox = :sandbox
  AND json_extract(p.attributes, '$."loyalty.tier"') IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > :lo AND e.ts <= :as_of
                AND json_extract(e.fields, '$."product.category"') != json_extract(p.attributes, '$."preferred_category"')
                AND json_extract(e.fields, '$."product.size"') != json_extract(p.attributes, '$."preferred_size"'))
{order}""",
    ("postgresql", "b"): """
SELECT p.external_id FROM profiles p
WHERE p.pk IN (SELECT c.profile_pk FROM events c
               WHERE c.type = 'addToCart' AND c.ts > :lo AND c.ts <= :as_of
                 AND NOT EXISTS (SELECT 1 FROM events q
                                 WHERE q.profile_pk = c.profile_pk AND q.type = 'purchase' AND q.ts > c.ts
                                   AND q.ts <= :as_of AND q.ts <= c.ts + interval '1 day'))
  AND p.sandbox = :sandbox
  AND p.attributes ->> 'loyalty.tier' IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > :lo AND e.ts <= :as_of
                AND e.fields ->> 'product.category' != p.attributes ->> 'preferred_category'
                AND e.fields ->> 'product.size' != p.attributes ->> 'preferred_size')
{order}""",
}

SEGMENTS = {"a": SEGMENT_A, "b": SEGMENT_B}


def hand_query(dialect: str, segment: str, order: str = "ORDER BY p.pk", count: bool = False) -> sa.TextClause:
    sql = HAND[(dialect, segment)].format(order=order)
    if count:
        sql = f"SELECT count(*) FROM ({sql}) t"
    if dialect == "sqlite":
        params = {"sandbox": SANDBOX, "lo": sqlite_text(WEEK_AGO), "as_of": sqlite_text(AS_OF)}
    else:
        params = {"sandbox": SANDBOX, "lo": WEEK_AGO, "as_of": AS_OF}
    return sa.text(sql).bindparams(**{k: v for k, v in params.items() if f":{k}" in sql})


# ---- data: the generated profiles, cached as JSON Lines ------------------------------------------


def data_fingerprint() -> str:
    source = Path(generator.__file__).read_bytes()
    key = f"seed={SEED};as_of={AS_OF.isoformat()};epp={EVENTS_PER_PROFILE};".encode() + source
    return hashlib.sha256(key).hexdigest()[:16]


def ensure_jsonl(count: int) -> tuple[Path, float | None]:
    """The JSONL cache holding at least ``count`` profiles; (path, generation seconds or None)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"luma-seed{SEED}.jsonl"
    meta_path = DATA / f"luma-seed{SEED}.meta.json"
    fingerprint = data_fingerprint()
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint and meta.get("count", 0) >= count:
            log(f"data: reusing {path.relative_to(ROOT)} ({meta['count']:,} profiles)")
            return path, None
    log(f"data: generating {count:,} profiles into {path.relative_to(ROOT)} (generated once, then cached)")
    tmp = path.with_suffix(".jsonl.tmp")
    started = time.perf_counter()
    gc.disable()
    try:
        with tmp.open("w", encoding="utf-8") as out:
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            for i, document in enumerate(generate_profiles(count, seed=SEED, as_of=AS_OF,
                                                           events_per_profile=EVENTS_PER_PROFILE), 1):
                out.write(dumps(document))
                out.write("\n")
                if i % 100_000 == 0:
                    log(f"data: {i:,} generated")
    finally:
        gc.enable()
    os.replace(tmp, path)
    meta_path.write_text(json.dumps({"fingerprint": fingerprint, "count": count, "seed": SEED}))
    return path, time.perf_counter() - started


def read_lines(path: Path, start: int, stop: int):
    with path.open(encoding="utf-8") as f:
        yield from itertools.islice(f, start, stop)


# ---- the bulk path -------------------------------------------------------------------------------
#
# Exactly the rows load_documents writes: load_profile, then profile_rows (which applies
# json_value) for the values; SQLAlchemy's JSON serialization (json.dumps with its defaults) and,
# on SQLite, its DateTime storage format (sqlite_text). Profile keys are given explicitly, in load
# order, continuing after the rows already there; event keys come from the table (SQLite's rowid,
# PostgreSQL's sequence) in insertion order, as with load_documents. Two worker processes turn
# chunks of JSONL lines into rows for both databases (parsed and validated once); the main process
# writes them: one executemany transaction on SQLite, COPY on PostgreSQL.

PROFILE_COLUMNS = "pk, sandbox, external_id, attributes, created_at, updated_at"
EVENT_COLUMNS = "profile_pk, event_id, type, ts, fields"
_dumps = json.dumps


def copy_text(value) -> str:
    """A value in COPY's text format (no column here is ever NULL)."""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_line(values) -> str:
    return "\t".join(map(copy_text, values)) + "\n"


def sqlite_bulk_rows(profile, now, pk: int):
    row, event_rows = profile_rows(profile, "sqlite", SANDBOX, now)
    now_text = sqlite_text(now)
    prow = (pk, row["sandbox"], row["external_id"], _dumps(row["attributes"]), now_text, now_text)
    erows = [(pk, e["event_id"], e["type"], sqlite_text(e["ts"]), _dumps(e["fields"])) for e in event_rows]
    return prow, erows


def postgres_bulk_lines(profile, now, pk: int) -> tuple[str, list[str]]:
    row, event_rows = profile_rows(profile, "postgresql", SANDBOX, now)
    prow = copy_line((pk, row["sandbox"], row["external_id"], _dumps(row["attributes"]), now, now))
    erows = [copy_line((pk, e["event_id"], e["type"], e["ts"], _dumps(e["fields"]))) for e in event_rows]
    return prow, erows


@dataclass
class Prepared:
    """One chunk, ready to write."""
    sqlite_profiles: list
    sqlite_events: list
    pg_profiles: bytes
    pg_events: bytes
    profiles: int
    events: int
    seconds: dict  # parse (json.loads + load_profile), sqlite rows, postgresql rows: worker CPU seconds
    members: dict  # segment → ids the in-memory engine selects (checked against SQL at the end)


_WORKER: dict = {}


def _worker_init(now: datetime) -> None:
    gc.disable()  # short-lived acyclic garbage; the collector only costs time here
    _WORKER["now"] = now
    _WORKER["predicates"] = {k: compile_predicate(text) for k, text in SEGMENTS.items()}


def _prepare(job: tuple[list[str], int]) -> Prepared:
    lines, first_pk = job
    now = _WORKER["now"]
    clock = time.perf_counter
    started = clock()
    loaded = [load_profile(json.loads(line)) for line in lines]
    parsed = clock()
    members = {k: [p.id for p in loaded if predicate(p, AS_OF)] for k, predicate in _WORKER["predicates"].items()}
    checked = clock()
    sqlite_profiles, sqlite_events = [], []
    for i, profile in enumerate(loaded):
        prow, erows = sqlite_bulk_rows(profile, now, first_pk + i)
        sqlite_profiles.append(prow)
        sqlite_events.extend(erows)
    sqlite_done = clock()
    pg_profiles, pg_events = [], []
    for i, profile in enumerate(loaded):
        prow, erows = postgres_bulk_lines(profile, now, first_pk + i)
        pg_profiles.append(prow)
        pg_events.extend(erows)
    pg_done = clock()
    return Prepared(sqlite_profiles, sqlite_events, "".join(pg_profiles).encode(), "".join(pg_events).encode(),
                    len(loaded), len(sqlite_events),
                    {"parse": parsed - started, "sqlite": sqlite_done - checked, "postgresql": pg_done - sqlite_done},
                    members)


class SqliteBulk:
    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA cache_size = -2097152")  # 2 GiB while loading
        self.db.execute("PRAGMA temp_store = MEMORY")
        self.next_pk = self.db.execute("SELECT coalesce(max(pk), 0) FROM profiles").fetchone()[0] + 1
        self.db.execute("BEGIN")
        self.seconds = 0.0

    def write(self, chunk: Prepared) -> None:
        started = time.perf_counter()
        self.db.executemany(f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", chunk.sqlite_profiles)
        self.db.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?)", chunk.sqlite_events)
        self.seconds += time.perf_counter() - started

    def finish(self) -> None:
        started = time.perf_counter()
        self.db.execute("COMMIT")
        self.db.execute("PRAGMA journal_mode = WAL")  # as create_engine leaves it
        self.db.close()
        self.seconds += time.perf_counter() - started


class PostgresBulk:
    def __init__(self, url: str):
        import psycopg

        self.db = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        self.db.execute("SET TIME ZONE 'UTC'")
        self.next_pk = self.db.execute("SELECT coalesce(max(pk), 0) FROM profiles").fetchone()[0] + 1
        # the events foreign key: checked once at the end (one join) instead of by one trigger query per row
        self.fk = self.db.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'events'::regclass AND contype = 'f'").fetchall()
        for name, _definition in self.fk:
            self.db.execute(f'ALTER TABLE events DROP CONSTRAINT "{name}"')
        self.seconds = 0.0

    def write(self, chunk: Prepared) -> None:
        started = time.perf_counter()
        with self.db.cursor() as cur:
            with cur.copy(f"COPY profiles ({PROFILE_COLUMNS}) FROM STDIN") as copy:
                copy.write(chunk.pg_profiles)
            with cur.copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                copy.write(chunk.pg_events)
        self.seconds += time.perf_counter() - started

    def finish(self) -> float:
        """Commit; re-add the foreign key (validated), set the profiles sequence. Returns the
        seconds after the commit."""
        started = time.perf_counter()
        self.db.commit()
        self.seconds += time.perf_counter() - started
        started = time.perf_counter()
        for name, definition in self.fk:
            self.db.execute(f'ALTER TABLE events ADD CONSTRAINT "{name}" {definition}')
        self.db.execute("SELECT setval(pg_get_serial_sequence('profiles', 'pk'), (SELECT max(pk) FROM profiles))")
        self.db.commit()
        self.db.close()
        return time.perf_counter() - started


# ---- load ----------------------------------------------------------------------------------------


@dataclass
class LoadStats:
    profiles: int = 0
    events: int = 0
    loader_profiles: int = 0
    loader_events: int = 0
    loader_s: dict = field(default_factory=dict)  # dialect → load_documents seconds
    bulk_wall_s: float = 0.0  # the bulk path, both databases at once
    worker_s: dict = field(default_factory=dict)  # parse / sqlite / postgresql → worker CPU seconds
    write_s: dict = field(default_factory=dict)  # dialect → main-process seconds writing (executemany / COPY)
    post: dict = field(default_factory=dict)  # dialect → [(step, seconds)]
    size: dict = field(default_factory=dict)  # dialect → bytes
    verified: str = ""
    members: dict = field(default_factory=dict)  # in-memory engine's ids over all profiles


@dataclass
class MemoryTiming:
    """The in-memory engine on the first profiles, timed in the quiet main process."""
    profiles: int
    rounds: int
    ms: dict  # segment → [ms per pass]


def time_in_memory(path: Path, count: int, rounds: int = 5) -> MemoryTiming:
    log(f"in memory: load_profile + compile_predicate on the first {count:,} profiles")
    gc.collect()
    gc.disable()
    loaded: list = []
    try:
        loaded = [load_profile(json.loads(line)) for line in read_lines(path, 0, count)]
        ms: dict = {}
        for key, text in SEGMENTS.items():
            predicate = compile_predicate(text)
            samples = []
            for _ in range(rounds):
                started = time.perf_counter()
                [p.id for p in loaded if predicate(p, AS_OF)]
                samples.append((time.perf_counter() - started) * 1000)
            ms[key] = samples
    finally:
        del loaded
        gc.enable()
        gc.collect()
    return MemoryTiming(count, rounds, ms)


def load_all(path: Path, count: int, loader_count: int, sqlite_path: Path, sqlite_url: str,
             pg_url: str, workers: int = 2) -> LoadStats:
    import multiprocessing

    stats = LoadStats(profiles=count, loader_profiles=loader_count)
    engines = {"sqlite": create_engine(sqlite_url), "postgresql": create_engine(pg_url)}
    for engine in engines.values():
        upgrade(engine)

    # (1) our loader on the first K profiles, each database on its own
    if loader_count:
        for dialect, engine in engines.items():
            documents = [json.loads(line) for line in read_lines(path, 0, loader_count)]
            log(f"load: load_documents, {loader_count:,} profiles → {dialect}")
            gc.collect()
            started = time.perf_counter()
            with engine.begin() as connection:
                load_documents(connection, documents, sandbox=SANDBOX)
            stats.loader_s[dialect] = time.perf_counter() - started
            del documents
            log(f"load: {dialect}: {stats.loader_s[dialect]:.1f} s "
                f"({loader_count / stats.loader_s[dialect]:,.0f} profiles/s)")
        with engines["sqlite"].connect() as connection:
            stats.loader_events = connection.execute(sa.text("SELECT count(*) FROM events")).scalar()
    for engine in engines.values():
        engine.dispose()

    # the in-memory engine's ids for the first K (the workers check the rest)
    predicates = {k: compile_predicate(text) for k, text in SEGMENTS.items()}
    stats.members = {k: [] for k in SEGMENTS}
    for start in range(0, loader_count, CHUNK):
        loaded = [load_profile(json.loads(line)) for line in read_lines(path, start, min(start + CHUNK, loader_count))]
        for key, predicate in predicates.items():
            stats.members[key] += [p.id for p in loaded if predicate(p, AS_OF)]

    # (2) the bulk path for the rest
    rest = count - loader_count
    sqlite_bulk = SqliteBulk(sqlite_path)
    pg_bulk = PostgresBulk(pg_url)
    assert sqlite_bulk.next_pk == pg_bulk.next_pk, "the two databases must hold the same profiles"
    now = datetime.now(UTC)
    stats.worker_s = {"parse": 0.0, "sqlite": 0.0, "postgresql": 0.0}
    events_total = stats.loader_events
    log(f"load: bulk path, {rest:,} profiles → sqlite + postgresql ({workers} worker processes prepare the rows)")
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_worker_init, initargs=(now,)) as pool, path.open(encoding="utf-8") as f:
        lines = itertools.islice(f, loader_count, count)
        pending = []
        pk = sqlite_bulk.next_pk
        done = 0
        next_log = 100_000
        while True:
            while len(pending) < 2 * workers:  # a bounded window of chunks in flight, in order
                chunk = list(itertools.islice(lines, CHUNK))
                if not chunk:
                    break
                pending.append(pool.apply_async(_prepare, ((chunk, pk),)))
                pk += len(chunk)
            if not pending:
                break
            prepared = pending.pop(0).get()
            sqlite_bulk.write(prepared)
            pg_bulk.write(prepared)
            for key in stats.worker_s:
                stats.worker_s[key] += prepared.seconds[key]
            for key, ids in prepared.members.items():
                stats.members[key] += ids
            events_total += prepared.events
            done += prepared.profiles
            if done >= next_log:
                log(f"load: bulk {done:,} / {rest:,} ({time.perf_counter() - started:.0f} s)")
                next_log += 100_000
    sqlite_bulk.finish()
    fk_seconds = pg_bulk.finish()
    stats.bulk_wall_s = time.perf_counter() - started
    stats.events = events_total
    stats.write_s = {"sqlite": sqlite_bulk.seconds, "postgresql": pg_bulk.seconds}
    log(f"load: bulk path done in {stats.bulk_wall_s:.0f} s")

    # (3) after the load: checks and statistics
    log("load: SQLite foreign_key_check + ANALYZE")
    db = sqlite3.connect(str(sqlite_path), isolation_level=None)
    db.execute("PRAGMA cache_size = -2097152")
    started = time.perf_counter()
    problems = db.execute("PRAGMA foreign_key_check").fetchall()
    check_s = time.perf_counter() - started
    if problems:
        raise SystemExit(f"SQLite foreign_key_check found {len(problems)} problems, e.g. {problems[:3]}")
    started = time.perf_counter()
    db.execute("ANALYZE")
    analyze_s = time.perf_counter() - started
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    stats.post["sqlite"] = [("foreign_key_check", check_s), ("ANALYZE", analyze_s)]
    stats.size["sqlite"] = sqlite_path.stat().st_size

    log("load: PostgreSQL VACUUM (ANALYZE)")
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pg:
        started = time.perf_counter()
        pg.execute("VACUUM (ANALYZE)")
        vacuum_s = time.perf_counter() - started
        pg.execute("CHECKPOINT")
        stats.size["postgresql"] = pg.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    stats.post["postgresql"] = [("foreign key re-added (validated)", fk_seconds), ("VACUUM (ANALYZE)", vacuum_s)]
    return stats


# ---- verification: the bulk path writes what load_documents writes -----------------------------------


def table_rows(connection, dialect: str, external_ids: list[str]) -> tuple[list, list]:
    """Profile and event rows of the given profiles, keys made relative (the first row is 0)."""
    ids = sa.bindparam("ids", external_ids, expanding=True)
    if dialect == "postgresql":
        profile_sql = "SELECT pk, sandbox, external_id, attributes::text FROM profiles WHERE external_id IN :ids ORDER BY pk"
        event_sql = ("SELECT e.pk, e.profile_pk, e.event_id, e.type, e.ts, e.fields::text FROM events e "
                     "JOIN profiles p ON p.pk = e.profile_pk WHERE p.external_id IN :ids ORDER BY e.pk")
    else:  # the stored text, byte for byte
        profile_sql = ("SELECT pk, sandbox, external_id, attributes, typeof(attributes) FROM profiles "
                       "WHERE external_id IN :ids ORDER BY pk")
        event_sql = ("SELECT e.pk, e.profile_pk, e.event_id, e.type, e.ts, e.fields, typeof(e.ts) FROM events e "
                     "JOIN profiles p ON p.pk = e.profile_pk WHERE p.external_id IN :ids ORDER BY e.pk")
    profiles_ = connection.execute(sa.text(profile_sql).bindparams(ids)).all()
    events_ = connection.execute(sa.text(event_sql).bindparams(ids)).all()
    pk0 = profiles_[0][0] if profiles_ else 0
    ek0 = events_[0][0] if events_ else 0
    profiles_ = [(r[0] - pk0,) + tuple(r[1:]) for r in profiles_]
    events_ = [(r[0] - ek0, r[1] - pk0) + tuple(r[2:]) for r in events_]
    return profiles_, events_


def verify_bulk(path: Path, start: int, sample: int, sqlite_url: str, main_urls: dict, cluster) -> str:
    """Load profiles [start, start+sample) — bulk-loaded in the main databases — again with
    load_documents into scratch databases, and compare every row (but created_at/updated_at)."""
    scratch = DATA / "verify-scratch.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(scratch) + suffix).unlink(missing_ok=True)
    urls = {"sqlite": f"sqlite:///{scratch}", "postgresql": cluster.create_database("verify_scratch")}
    documents = [json.loads(line) for line in read_lines(path, start, start + sample)]
    external_ids = [d["id"] for d in documents]
    summary = []
    for dialect in ("sqlite", "postgresql"):
        scratch_engine = create_engine(urls[dialect])
        upgrade(scratch_engine)
        with scratch_engine.begin() as connection:
            load_documents(connection, [json.loads(json.dumps(d)) for d in documents], sandbox=SANDBOX)
        with scratch_engine.connect() as connection:
            expected = table_rows(connection, dialect, external_ids)
        scratch_engine.dispose()
        main = create_engine(main_urls[dialect])
        with main.connect() as connection:
            got = table_rows(connection, dialect, external_ids)
        main.dispose()
        for name, want, have in (("profiles", expected[0], got[0]), ("events", expected[1], got[1])):
            if want != have:
                diff = next((i for i, (x, y) in enumerate(zip(want, have)) if x != y), min(len(want), len(have)))
                raise SystemExit(f"bulk path ≠ load_documents on {dialect} {name}: {len(want)} vs {len(have)} rows; "
                                 f"first difference at row {diff}:\n  load_documents: "
                                 f"{want[diff] if diff < len(want) else None}\n  bulk path:      "
                                 f"{have[diff] if diff < len(have) else None}")
        summary.append(f"{dialect} {len(expected[0]):,} profile + {len(expected[1]):,} event rows")
    for suffix in ("", "-wal", "-shm"):
        Path(str(scratch) + suffix).unlink(missing_ok=True)
    return (f"bulk path = load_documents, row for row (all columns but created_at/updated_at), on profiles "
            f"{start + 1:,}–{start + sample:,}: " + "; ".join(summary))


# ---- queries -------------------------------------------------------------------------------------


@dataclass
class QueryResult:
    dialect: str
    segment: str
    members: int
    compiled_ms: list
    hand_ms: list
    compiled_count_ms: list
    hand_count_ms: list
    build_ms: float  # members_query: parse + check + compile to a Select
    ids: list = field(default_factory=list, repr=False)

    @property
    def ratio(self) -> float:
        return statistics.median(self.compiled_ms) / statistics.median(self.hand_ms)

    @property
    def count_ratio(self) -> float:
        return statistics.median(self.compiled_count_ms) / statistics.median(self.hand_count_ms)


class Explainer:
    """Runs the next statement of a connection as EXPLAIN … (via before_cursor_execute)."""

    def __init__(self, engine: sa.Engine):
        self.prefix = None
        event.listen(engine, "before_cursor_execute", self._rewrite, retval=True)

    def _rewrite(self, conn, cursor, statement, parameters, context, executemany):
        if self.prefix:
            statement = self.prefix + statement
        return statement, parameters

    def plan(self, connection, statement, prefix: str) -> list[str]:
        self.prefix = prefix
        try:
            rows = connection.execute(statement).all()
        finally:
            self.prefix = None
        if prefix.startswith("EXPLAIN QUERY PLAN"):  # (id, parent, notused, detail): indent by depth
            depth = {0: -1}
            lines = []
            for id_, parent, _unused, detail in rows:
                depth[id_] = depth.get(parent, -1) + 1
                lines.append("  " * depth[id_] + detail)
            return lines
        return [r[0] for r in rows]


def time_queries(dialect: str, url: str, runs: int, plans: list[str]) -> list[QueryResult]:
    engine = create_engine(url)
    if dialect == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            for pragma in SQLITE_PRAGMAS:
                dbapi_connection.execute(pragma)
    explainer = Explainer(engine)
    results = []
    with engine.connect() as connection:
        for key, text in SEGMENTS.items():
            started = time.perf_counter()
            compiled = members_query(text, dialect=dialect, as_of=AS_OF, sandbox=SANDBOX)
            build_ms = (time.perf_counter() - started) * 1000
            hand = hand_query(dialect, key)
            compiled_count = sa.select(sa.func.count()).select_from(compiled.order_by(None).subquery())
            hand_count = hand_query(dialect, key, order="", count=True)

            def ids(statement):
                return [row[0] for row in connection.execute(statement)]

            def scalar(statement):
                return connection.execute(statement).scalar()

            log(f"queries: {dialect} ({key}): warm-up")
            expected = ids(compiled)
            got = ids(hand)
            if got != expected:
                missing = sorted(set(expected) - set(got))[:5]
                extra = sorted(set(got) - set(expected))[:5]
                raise SystemExit(f"hand-written SQL for ({key}) on {dialect} returned different ids: "
                                 f"{len(got)} vs {len(expected)} compiled; missing {missing}, extra {extra}")
            assert scalar(compiled_count) == scalar(hand_count) == len(expected)
            timings = {"compiled": [], "hand": [], "compiled_count": [], "hand_count": []}
            contenders = [("compiled", partial(ids, compiled)), ("hand", partial(ids, hand))]
            counters = [("compiled_count", partial(scalar, compiled_count)), ("hand_count", partial(scalar, hand_count))]
            gc.collect()
            for run in range(runs):
                for group in (contenders, counters):
                    order = group if run % 2 == 0 else group[::-1]
                    for name, fn in order:
                        gc.disable()
                        started = time.perf_counter()
                        fn()
                        timings[name].append((time.perf_counter() - started) * 1000)
                        gc.enable()
            result = QueryResult(dialect, key, len(expected), timings["compiled"], timings["hand"],
                                 timings["compiled_count"], timings["hand_count"], build_ms, expected)
            results.append(result)
            log(f"queries: {dialect} ({key}): {result.members:,} members; compiled "
                f"{statistics.median(result.compiled_ms):.1f} ms, hand {statistics.median(result.hand_ms):.1f} ms "
                f"(×{result.ratio:.2f}); count-only ×{result.count_ratio:.2f}")
            # the plans, after the timing (EXPLAIN ANALYZE runs the query once more)
            prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
            for name, statement in (("compiled", compiled), ("hand-written", hand)):
                plans.append(f"=== {dialect} ({key}) {name}: {prefix.strip()}")
                plans.extend(explainer.plan(connection, statement, prefix))
                plans.append("")
    engine.dispose()
    return results


# ---- report --------------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.1f} s"


def fmt_size(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def med(samples: list) -> str:
    return f"{statistics.median(samples):,.1f}"


def versions(pg_url: str | None) -> dict:
    out = {"python": f"{platform.python_implementation()} {platform.python_version()}",
           "sqlite": sqlite3.sqlite_version, "sqlalchemy": sa.__version__}
    try:
        import psycopg

        out["psycopg"] = f"{psycopg.__version__} ({psycopg.pq.__impl__})"
    except ImportError:
        pass
    if pg_url:
        engine = create_engine(pg_url)
        with engine.connect() as connection:
            out["postgresql"] = connection.execute(sa.text("SHOW server_version")).scalar()
        engine.dispose()
    return out


def report(args, command: str, started: datetime, wall_s: float, info: dict, load_avg: float,
           generated_s: float | None, stats: LoadStats, results: list[QueryResult], memory: MemoryTiming | None,
           plan_notes: list[str]) -> str:
    n = stats.profiles
    lines = [f"## SQL engine and storage: {n:,} profiles — {started:%Y-%m-%d %H:%M} UTC", ""]
    lines += [
        (f"- machine: nproc {os.cpu_count()}, {cpu_model()}, {platform.system()} {platform.machine()}; "
         f"load average at start {load_avg:.2f}"),
        f"- python: {info['python']}; SQLAlchemy {info['sqlalchemy']}; psycopg {info.get('psycopg', '?')}",
        f"- databases: SQLite {info['sqlite']} (query connection: {', '.join(p.split(' ', 1)[1] for p in SQLITE_PRAGMAS)}); "
        f"PostgreSQL {info.get('postgresql', '?')} (throwaway cluster: fsync off, "
        + ", ".join(f"{k}={v}" for k, v in PG_SETTINGS.items()) + ")",
        f"- command: `{command}`",
        f"- wall time: {wall_s / 60:.1f} min",
        "",
        "### Load",
        "",
        f"{n:,} profiles, {stats.events:,} events ({stats.events / max(n, 1):.1f} per profile) from "
        f"`generate_profiles({n:,}, seed={SEED})`, "
        + (f"generated and cached as JSONL in {fmt_s(generated_s)}" if generated_s is not None
           else "read from the JSONL cache in bench/data/") + ".",
        "",
    ]
    k = stats.loader_profiles
    rest = n - k
    rows = []
    for dialect, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        loader_s = stats.loader_s.get(dialect, 0.0)
        post_s = sum(s for _step, s in stats.post.get(dialect, []))
        rows.append([
            name,
            f"{fmt_s(loader_s)} ({k / loader_s:,.0f}/s)" if k else "—",
            f"{fmt_s(stats.bulk_wall_s)} ({rest / stats.bulk_wall_s:,.0f}/s)" if rest else "—",
            ", ".join(f"{step} {fmt_s(s)}" for step, s in stats.post.get(dialect, [])),
            fmt_s(loader_s + stats.bulk_wall_s + post_s),
            fmt_size(stats.size[dialect]),
        ])
    w = stats.worker_s
    lines += [
        markdown_table(["database", f"load_documents, first {k:,} (profiles/s)",
                        f"bulk path, other {rest:,}: both databases at once (profiles/s)", "after the load",
                        "total", "size"], rows, align="lrrlrr"),
        "",
        (f"- load_documents: our loader, through SQLAlchemy in one transaction (the documents parsed from "
         f"JSONL beforehand); {stats.loader_events:,} events come with the first {k:,} profiles."),
        (f"- bulk path (wall time shared by both rows): 2 worker processes parse and validate "
         f"(`json.loads` + `load_profile`: {fmt_s(w.get('parse', 0))} CPU) and build the rows with "
         f"`profile_rows` (SQLite {fmt_s(w.get('sqlite', 0))}, PostgreSQL {fmt_s(w.get('postgresql', 0))} CPU); "
         f"the main process writes them: one executemany transaction on SQLite (synchronous=OFF, "
         f"journal_mode=OFF; {fmt_s(stats.write_s.get('sqlite', 0))}) and COPY on PostgreSQL with the events "
         f"foreign key dropped and re-added ({fmt_s(stats.write_s.get('postgresql', 0))}). Indexes as the "
         "migration makes them, kept throughout."),
        f"- {stats.verified}.",
        "- size: the SQLite file; PostgreSQL `pg_database_size` (tables, TOAST, indexes).",
        "",
        f"### Queries: ms, median of {args.runs} alternating runs (warm cache), as_of 2026-11-28T12:00Z",
        "",
        f"- (a) `{SEGMENT_A}`",
        "- (b) Gift-giving cart abandoners (DSL.md §13; examples/gift_giving_cart_abandoners.pql)",
        "",
        ("`ids` ships the member ids into Python in load order (what `evaluate` does); `count` is "
         "`SELECT count(*)` over the same query without ORDER BY (the query alone). Ratio = compiled / "
         "hand-written; hand-written SQL in bench/bench_sql.py (`HAND`), same ids asserted."),
        "",
    ]
    rows = []
    for r in results:
        target = TARGETS[r.dialect]
        rows.append([
            "SQLite" if r.dialect == "sqlite" else "PostgreSQL", f"({r.segment})", f"{r.members:,}",
            med(r.compiled_ms), med(r.hand_ms), f"{r.ratio:.2f}×",
            med(r.compiled_count_ms), med(r.hand_count_ms), f"{r.count_ratio:.2f}×",
            f"≤ {target:.2f}×: " + ("PASS" if r.ratio <= target else "**MISS**"),
        ])
    lines += [
        markdown_table(["database", "seg", "members", "compiled ids", "hand ids", "ratio", "compiled count",
                        "hand count", "ratio (count)", "target (ids)"], rows, align="llrrrrrrrl"),
        "",
    ]
    for r in results:
        lines.append(f"- {r.dialect} ({r.segment}) runs, ms: compiled "
                     + ", ".join(f"{x:.0f}" for x in r.compiled_ms) + "; hand "
                     + ", ".join(f"{x:.0f}" for x in r.hand_ms)
                     + f"; members_query() build {r.build_ms:.1f} ms (not in the times)")
    if memory is not None:
        scale = n / memory.profiles
        lines.append(
            f"- in-memory engine (context): compiled predicate over the first {memory.profiles:,} LoadedProfiles "
            f"(load_profile excluded), median of {memory.rounds} passes: "
            + "; ".join(f"({key}) {statistics.median(ms):,.0f} ms" + (f" (≈ {statistics.median(ms) * scale:,.0f} ms "
                        f"for {n:,})" if scale > 1 else "") for key, ms in memory.ms.items()))
    lines.append(f"- the in-memory engine selects the same ids as the SQL, over all {n:,} profiles (checked).")
    lines += plan_notes
    lines.append("")
    return "\n".join(lines)


def plan_summary(plans: list[str]) -> list[str]:
    """The plans, one line each, for the report (full text in bench/data/sql-plans-N.txt)."""
    out = []
    current = None
    for line in plans:
        if line.startswith("==="):
            current = line[4:].split(":")[0]
            out.append(f"- plan, {current}: ")
            continue
        text = line.strip()
        if not (current and text):
            continue
        if current.startswith("postgresql"):
            if text.startswith("Execution Time"):
                text = text.lower()
            elif text.startswith("->") or "(cost=" in text and out[-1].endswith(": "):
                text = text.lstrip("-> ").split("  (cost=")[0]
                loops = line.split("loops=")[-1].rstrip(")") if "loops=" in line else ""
                text += f" ×{int(loops):,}" if loops.isdigit() and int(loops) > 1 else ""
            else:
                continue
        out[-1] += ("" if out[-1].endswith(": ") else " → ") + text
    return out


# ---- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--loader-profiles", type=int, default=None,
                        help="profiles loaded with load_documents (default min(100000, N // 10))")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per contender (≥ 5)")
    parser.add_argument("--no-memory", action="store_true", help="do not time the in-memory engine")
    parser.add_argument("--record", action="store_true", help="append the report to bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    n = args.profiles
    loader_count = args.loader_profiles if args.loader_profiles is not None else min(100_000, n // 10)
    loader_count = max(0, min(loader_count, n))
    command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_sql.py " + " ".join(sys.argv[1:])
    _lock = one_run_at_a_time()
    started_at = datetime.now(UTC)
    load_avg = os.getloadavg()[0]
    wall = time.perf_counter()

    path, generated_s = ensure_jsonl(n)

    sqlite_path = DATA / f"sql-{n}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
    sqlite_url = f"sqlite:///{sqlite_path}"

    options = " ".join(f"-c {k}={v}" for k, v in PG_SETTINGS.items())
    log(f"postgresql: starting a throwaway cluster ({options})")
    cluster = start_cluster(extra_options=options)
    try:
        pg_url = cluster.create_database("cdp_bench")
        stats = load_all(path, n, loader_count, sqlite_path, sqlite_url, pg_url)
        if n > loader_count:
            sample = min(VERIFY_SAMPLE, n - loader_count)
            stats.verified = verify_bulk(path, loader_count, sample, sqlite_url,
                                         {"sqlite": sqlite_url, "postgresql": pg_url}, cluster)
        else:
            stats.verified = "bulk path not used (every profile went through load_documents)"
        log(stats.verified)
        memory = None if args.no_memory else time_in_memory(path, min(n, MEMORY_PROFILES))
        plans: list[str] = []
        results = []
        for dialect, url in (("sqlite", sqlite_url), ("postgresql", pg_url)):
            results += time_queries(dialect, url, args.runs, plans)
        for r in results:  # the in-memory engine agrees with SQL, id for id
            if r.ids != stats.members[r.segment]:
                raise SystemExit(f"in-memory engine and {r.dialect} disagree on ({r.segment}): "
                                 f"{len(stats.members[r.segment]):,} vs {len(r.ids):,} members")
        info = versions(pg_url)
    finally:
        log("postgresql: stopping the cluster")
        cluster.stop()

    plans_path = DATA / f"sql-plans-{n}.txt"
    plans_path.write_text("\n".join(plans) + "\n")
    text = report(args, command, started_at, time.perf_counter() - wall, info, load_avg, generated_s, stats,
                  results, memory, plan_summary(plans))
    print(text)
    print(f"(full query plans: {plans_path.relative_to(ROOT)})")
    if args.record:
        with RESULTS.open("a", encoding="utf-8") as out:  # append only
            out.write("\n" + text)
        print(f"(appended to {RESULTS.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
