"""Batch evaluation: a segment over every profile of its sandbox, in SQL, writing memberships
set-wise — no row per profile ever passes through Python.

For one segment at ``as_of``:

1. its members are computed once by the compiled SQL (cdp/engine/sql/) into a temporary table
   ``segment_run_members``; references to segments evaluated earlier in the same run read their
   memberships (a run includes the active segments its segments use, in dependency order), other
   references are CTEs compiled once;
2. members that stopped qualifying exit (``exited_at``), with an outbox row each;
3. realized members that still qualify become existing;
4. profiles that qualify and were not members (never, or exited) are realized (``entered_at``),
   with an outbox row each — a re-entry updates the kept row;
5. the hour's history row gets the size and the counts.

Rows whose status does not change are not rewritten; every count comes from one statement before
the writes, and a write without rows is skipped. :func:`evaluate_segments` runs a list of
segments in dependency order, each in the transaction its ``connection_factory`` gives.
"""

from __future__ import annotations

import json

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cdp.dsl import Diagnostic, PqlError, check
from cdp.dsl.errors import NO_SPAN
from cdp.dsl.catalogue import dependency_order
from cdp.engine.sql import SqlCompiler
from cdp.schema import Schema
from cdp.segments.membership import MEMBER, record_history
from cdp.storage.models import Key, membership_changes, memberships, profiles, segments

_REANALYZE_ROWS = 10_000  # memberships entered or exited in one segment's run past which PostgreSQL re-analyzes
_scratch = sa.MetaData()
run_members = sa.Table("segment_run_members", _scratch, sa.Column("profile_pk", Key, primary_key=True),
                       prefixes=["TEMPORARY"])


@dataclass(frozen=True)
class Counts:
    realized: int
    existing: int
    exited: int

    def as_dict(self) -> dict[str, int]:
        return {"realized": self.realized, "existing": self.existing, "exited": self.exited}


def members_select(*, dialect: str, sandbox: str, expression: str, schema: Schema, catalogue: Mapping[str, str],
                   as_of: datetime, memberships_of: Mapping[str, int] | None = None) -> sa.Select:
    """SELECT the pk of every profile of the sandbox that qualifies (one statement). References
    to the segments of ``memberships_of`` (key → pk; evaluated earlier in the same run, at the
    same as_of) read their memberships; others are compiled once, as CTEs."""
    typed = check(expression, schema)  # references: resolved by the compiler against the catalogue
    compiler = SqlCompiler(dialect, as_of, schema=schema, segments=catalogue, sandbox=sandbox,
                           memberships_of=memberships_of)
    condition = compiler.compile(typed)
    p = compiler.profile
    return sa.select(p.c.pk.label("profile_pk")).where(p.c.sandbox == sa.literal(sandbox, sa.String), condition)


def evaluate_segment(connection: sa.Connection, *, sandbox: str, segment_pk: int, segment_key: str, expression: str,
                     schema: Schema, catalogue: Mapping[str, str], as_of: datetime, source: str = "batch",
                     memberships_of: Mapping[str, int] | None = None) -> Counts:
    """Evaluate one segment over all profiles and write its memberships (see the module doc)."""
    dialect = connection.dialect.name
    query = members_select(dialect=dialect, sandbox=sandbox, expression=expression, schema=schema,
                           catalogue=catalogue, as_of=as_of, memberships_of=memberships_of)
    try:
        if dialect == "postgresql":
            # CREATE TABLE AS: PostgreSQL runs its SELECT with parallel workers, which it never does
            # for INSERT … SELECT (measured: 2× on attribute segments); then ANALYZE, so the joins
            # below are planned with its real size
            connection.execute(sa.text("DROP TABLE IF EXISTS segment_run_members"))
            compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
            processors = getattr(compiled, "_bind_processors", {})  # bound values as a statement gets them
            params = {name: processors[name](value) if name in processors else value
                      for name, value in compiled.construct_params().items()}
            connection.exec_driver_sql("CREATE TEMPORARY TABLE segment_run_members AS " + compiled.string, params)
            connection.execute(sa.text("ANALYZE segment_run_members"))
        else:  # a temporary table per connection, created once and emptied for each segment
            connection.execute(sa.text("CREATE TEMPORARY TABLE IF NOT EXISTS segment_run_members "
                                       "(profile_pk INTEGER PRIMARY KEY)"))
            connection.execute(sa.text("DELETE FROM segment_run_members"))
            connection.execute(run_members.insert().from_select(["profile_pk"], query))
    except RecursionError:
        raise PqlError([Diagnostic("too_complex", f'segment "{segment_key}" nests too deeply to compile to SQL',
                                   NO_SPAN, hint="simplify the expression or the segments it references")]) from None
    return _write(connection, sandbox=sandbox, segment_pk=segment_pk, segment_key=segment_key, as_of=as_of,
                  source=source)


def write_members(connection: sa.Connection, *, sandbox: str, segment_pk: int, segment_key: str,
                  profile_pks: Iterable[int], as_of: datetime, source: str = "batch") -> Counts:
    """Memberships from members computed elsewhere (an analytic engine over a snapshot): the pks
    go into the run's temporary table and the same set-wise update follows (see the module doc).
    A profile that is gone from the database since the snapshot is left out."""
    if connection.dialect.name == "postgresql":
        _copy_run_members(connection, profile_pks)
    else:
        _fill_sqlite_run_members(connection, profile_pks)
    # NOT EXISTS: an anti-join probing the profiles' primary key per member (NOT IN would read
    # every profile of the sandbox for every segment)
    connection.execute(run_members.delete().where(~sa.exists(sa.select(sa.literal_column("1")).where(
        profiles.c.pk == run_members.c.profile_pk, profiles.c.sandbox == sandbox))))
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("ANALYZE segment_run_members"))  # as evaluate_segment's: joins planned by size
    return _write(connection, sandbox=sandbox, segment_pk=segment_pk, segment_key=segment_key, as_of=as_of,
                  source=source)


def _fill_sqlite_run_members(connection: sa.Connection, profile_pks: Iterable[int]) -> None:
    """SQLite: the run's table emptied and filled with the pks in key order, 100,000 a statement
    handed over as one JSON array that ``json_each`` unpacks in SQLite itself. In key order each
    row goes at the end of the table's B-tree. An executemany of one-key dicts (before) cost
    7.3–8.2 s of CPU for 1,000,000 pks; this costs 1.2–1.8 s (bench/RESULTS.md, session 14): at 1M
    profiles the 100-segment batch's write-back had spent 67 of its 84 s of CPU there."""
    connection.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS segment_run_members "
                               "(profile_pk INTEGER PRIMARY KEY)")
    connection.exec_driver_sql("DELETE FROM segment_run_members")
    ordered = sorted(int(pk) for pk in profile_pks)
    for start in range(0, len(ordered), 100_000):
        connection.exec_driver_sql("INSERT INTO segment_run_members (profile_pk) SELECT value FROM json_each(?)",
                                   (json.dumps(ordered[start:start + 100_000]),))


def _copy_run_members(connection: sa.Connection, profile_pks: Iterable[int]) -> None:
    """PostgreSQL: the run's table made anew for the segment and filled by COPY. Not emptied by
    DELETE: autovacuum never visits a temporary table, so a run's dead rows would pile up in it
    segment after segment (every later segment scanning them); not by INSERTs of 1,000 values,
    a statement each. Measured at 100,000 profiles, 40 segments' steady write-back (461,396
    members): 62 s that way, 10 s this way."""
    connection.execute(sa.text("DROP TABLE IF EXISTS segment_run_members"))
    connection.execute(sa.text("CREATE TEMPORARY TABLE segment_run_members (profile_pk BIGINT PRIMARY KEY)"))
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        with cursor.copy("COPY segment_run_members (profile_pk) FROM STDIN") as copy:
            for pk in profile_pks:
                copy.write_row((int(pk),))
    finally:
        cursor.close()


def _write(connection: sa.Connection, *, sandbox: str, segment_pk: int, segment_key: str, as_of: datetime,
           source: str) -> Counts:
    m, r, p = memberships, run_members, profiles
    qualifies = sa.exists(sa.select(sa.literal_column("1")).select_from(r).where(r.c.profile_pk == m.c.profile_pk))
    ours = m.c.segment_pk == segment_pk
    now = sa.literal(as_of, m.c.entered_at.type)

    def change(status: str, select_from, where) -> sa.Insert:
        rows = (sa.select(sa.literal(sandbox, sa.String), sa.literal(segment_pk, Key), sa.literal(segment_key, sa.String),
                          p.c.pk, p.c.external_id, sa.literal(status, sa.String), now, sa.literal(source, sa.String))
                .select_from(select_from).where(*where))
        return membership_changes.insert().from_select(
            ["sandbox", "segment_pk", "segment_key", "profile_pk", "profile_id", "status", "at", "source"], rows)

    leaving = [ours, m.c.status.in_(MEMBER), ~qualifies]  # members that no longer qualify
    staying = [ours, m.c.status == "realized", qualifies]  # realized members that still qualify
    known = m.alias("known")
    entry_join = sa.outerjoin(r, known, sa.and_(known.c.profile_pk == r.c.profile_pk, known.c.segment_pk == segment_pk))
    entry = [sa.or_(known.c.profile_pk.is_(None), known.c.status == "exited")]  # no membership, or an exited one
    # every count in one statement, before writing (and only the writes that have rows to write:
    # the steady state, where members stay members, writes nothing); counted by SELECTs, since
    # rowcount is not reliable for INSERT … SELECT on every driver. One pass over the segment's
    # memberships joined to the run's members gives them all: a qualifying profile enters unless
    # it is a member already (one membership row per segment and profile), so entries are the
    # run's size less the members found in it (not a third join of the run with memberships)
    in_run = r.c.profile_pk.is_not(None)

    def tally(condition) -> sa.ColumnElement:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    exited, stayed, members_in_run, size = connection.execute(sa.select(
        tally(sa.and_(m.c.status.in_(MEMBER), r.c.profile_pk.is_(None))),
        tally(sa.and_(m.c.status == "realized", in_run)),
        tally(sa.and_(m.c.status.in_(MEMBER), in_run)),
        sa.select(sa.func.count()).select_from(r).scalar_subquery())
        .select_from(sa.outerjoin(m, r, r.c.profile_pk == m.c.profile_pk)).where(ours)).one()
    exited, stayed, size = int(exited), int(stayed), int(size)
    realized = size - int(members_in_run)
    if exited:
        connection.execute(change("exited", m.join(p, p.c.pk == m.c.profile_pk), leaving))
        connection.execute(m.update().where(*leaving).values(status="exited", exited_at=as_of, updated_at=as_of))
    if stayed:
        connection.execute(m.update().where(*staying).values(status="existing", updated_at=as_of))
    if realized:
        connection.execute(change("entered", entry_join.join(p, p.c.pk == r.c.profile_pk), entry))
        connection.execute(m.update().where(ours, m.c.status == "exited", qualifies).values(
            status="realized", entered_at=as_of, exited_at=None, updated_at=as_of))
        columns = ["segment_pk", "profile_pk", "status", "entered_at", "exited_at", "updated_at"]
        fresh = sa.select(sa.literal(segment_pk, Key), r.c.profile_pk, sa.literal("realized", sa.String), now,
                          sa.null(), now)
        if connection.dialect.name == "postgresql":
            # the primary key skips the profiles that have a row (ON CONFLICT), not a NOT EXISTS
            # against the table being filled: on an empty, vacuumed memberships table (a new
            # database's first run) PostgreSQL plans that as a nested loop re-reading the table per
            # row, rows this INSERT adds included: quadratic (seen at 1,000,000 profiles: a
            # 272,659-member segment's first run at ~100 rows/s after 8 minutes)
            connection.execute(postgresql.insert(m).from_select(columns, fresh).on_conflict_do_nothing(
                index_elements=["segment_pk", "profile_pk"]))
        else:
            connection.execute(m.insert().from_select(columns, fresh.where(~sa.exists(
                sa.select(sa.literal_column("1")).select_from(m).where(ours, m.c.profile_pk == r.c.profile_pk)))))
    if connection.dialect.name == "postgresql" and realized + exited >= _REANALYZE_ROWS:
        # many rows written for one segment: the statistics autovacuum keeps would still say the
        # segment has (almost) none -- a new segment inserting 3% of a 10M-row table triggers no
        # autoanalyze -- and the next run, planning its realized → existing UPDATE with a nested
        # loop over the run's members, would take hours (seen at 1,000,000 profiles: a 290k-member
        # segment's second run did not end in minutes); ANALYZE samples the table (tens of ms)
        connection.execute(sa.text("ANALYZE memberships"))
    record_history(connection, segment_pk=segment_pk, at=as_of, entered=realized, exited=exited, size=size)
    connection.execute(segments.update().where(segments.c.pk == segment_pk).values(evaluated_at=as_of))
    return Counts(realized=realized, existing=size - realized, exited=exited)


def ordered(rows: Iterable, graph: Mapping[str, set[str]]) -> list:
    """Segments (rows with ``key``) in dependency order: every one after those it references."""
    by_key = {row.key: row for row in rows}
    order = dependency_order({key: set(graph.get(key, ())) for key in by_key})
    return [by_key[key] for key in order]


def run_set(chosen: Iterable[str], active: Iterable[str], graph: Mapping[str, set[str]]) -> set[str]:
    """The segments a run evaluates: the chosen ones and every active segment they depend on
    (directly or not), so references inside the run read memberships written at the run's as_of."""
    active = set(active)
    found = {k for k in chosen if k in active}
    stack = list(found)
    while stack:
        for dep in graph.get(stack.pop(), ()):
            if dep in active and dep not in found:
                found.add(dep)
                stack.append(dep)
    return found


def evaluate_segments(connection_factory: Callable, *, sandbox: str, rows: list, schema: Schema,
                      catalogue: Mapping[str, str], as_of: datetime, source: str = "batch",
                      on_done: Callable[[sa.Connection, str, Counts], None] | None = None) -> dict[str, Counts]:
    """Evaluate ``rows`` (segment rows, already in dependency order), each in the transaction the
    context manager ``connection_factory()`` gives; ``on_done`` runs in that transaction."""
    results: dict[str, Counts] = {}
    done: dict[str, int] = {}  # evaluated in this run: references to them read their memberships
    for row in rows:
        with connection_factory() as connection:
            counts = evaluate_segment(connection, sandbox=sandbox, segment_pk=row.pk, segment_key=row.key,
                                      expression=row.expression, schema=schema, catalogue=catalogue, as_of=as_of,
                                      source=source, memberships_of=dict(done))
            if on_done is not None:
                on_done(connection, row.key, counts)
        done[row.key] = row.pk
        results[row.key] = counts
    return results
