"""Typed event-field columns on DuckDB: the event-reading segments over a snapshot with and
without them, beside hand-written DuckDB SQL over the typed columns (``bench_scale.py
--event-columns``; issue 21).

For one size (the SQLite database bench_scale grew): the export (``export_snapshot(full=True)``)
with the time of its event-column pass (``cdp.snapshots.flat.write_events``, timed around each
bucket file: the extra cost per event row), then a copy of the snapshot with the ``f.*`` columns
dropped from the events files (the same row groups: what the export wrote before them). Then per
segment, ``runs`` interleaved rounds after a warm-up of each: the compiled query over the snapshot
with event columns, the compiled query over the copy without (JSON reads of ``fields``), and the
hand-written query over the typed columns (the reference of the ≤ 1.1× target), and, for a segment
comparing an aggregate, the compiled query with its aggregates as scalar subqueries per profile
(what the compiler emitted before cdp.engine.sql.grouped, over event columns). The compiled
queries are rendered once (compiling is milliseconds, apart) and their SQL text run as the
hand-written one is; every variant's ids must equal the database's (asserted).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from _common import DSL_EXAMPLES, SEGMENT_A, SEGMENT_B, carts_not_bought
from cdp.engine.sql import members_query as database_query
from cdp.engine.sql.analytic import DuckDBSession, members_query, rendered
from cdp.engine.sql.grouped import GroupedAggregates
from cdp.snapshots import columns, export_snapshot, flat, latest_manifest
from cdp.snapshots.export import relations_sql

AS_OF = datetime(2026, 11, 28, 12, tzinfo=UTC)
# attributes only; the cart abandoners; a sum of order totals this year
SEGMENTS = {"a": SEGMENT_A, "b": SEGMENT_B, "c": DSL_EXAMPLES[3]}
_NAIVE = {"as_of": AS_OF.replace(tzinfo=None), "lo": datetime(2026, 11, 21, 12), "year": datetime(2026, 1, 1)}
HAND = {
    "a": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.sandbox = $sandbox AND p."a.loyalty.tier" IN ('silver', 'gold') AND p."a.home_address.country" = 'US'
  AND p."a.loyalty.points" > 500
ORDER BY p.pk""",
    "b": f"""
SELECT p.pk, p.external_id FROM profiles p
WHERE p.pk IN ({carts_not_bought('$')})
  AND p.sandbox = $sandbox
  AND p."a.loyalty.tier" IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > $lo AND e.ts <= $as_of
                AND e."f.product.category" != p."a.preferred_category"
                AND e."f.product.size" != p."a.preferred_size")
ORDER BY p.pk""",
    "c": """
SELECT p.pk, p.external_id FROM profiles p
JOIN (SELECT profile_pk FROM events e
      WHERE e.type = 'purchase' AND e.ts >= $year AND e.ts <= $as_of
      GROUP BY profile_pk HAVING sum(e."f.order.total") > 1000) t ON t.profile_pk = p.pk
WHERE p.sandbox = $sandbox
ORDER BY p.pk""",
}

# (c) with the double sum null beyond a double's range (DSL.md §9), as the compiler must read it
HAND_CHECKED = {"c": HAND["c"].replace('HAVING sum(e."f.order.total") > 1000',
                                       "HAVING nullif(nullif(sum(e.\"f.order.total\"), 'inf'::DOUBLE), "
                                       "'-inf'::DOUBLE) > 1000")}
assert HAND_CHECKED["c"] != HAND["c"]


def interleaved_rounds(runs_of: dict[str, Callable[[], list[str]]], expected: list[str], runs: int,
                       key: str, cpu_clock: Callable[[], float] = time.process_time) -> dict[str, list[float]]:
    """Each variant's seconds in ``runs`` interleaved rounds (round i of every variant one after
    the other), after a warm-up round in which every variant's ids must equal ``expected`` (the
    database's); also, under ``cpu_<name>``, the CPU seconds ``cpu_clock`` counted during each run
    (the process's, every thread of it: DuckDB's; on a shared machine less moved by the load than
    the wall clock). The order rotates from round to round (round i starts with variant i mod n):
    a cost of coming first in a round (session 12: Spark's first query of a round was the slowest,
    whichever it was) falls on every variant alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs_of}
    samples.update({f"cpu_{name}": [] for name in runs_of})
    names = list(runs_of)
    for round_ in range(runs + 1):  # round 0: the warm-up of each
        first = round_ % len(names)
        for name in names[first:] + names[:first]:
            run = runs_of[name]
            cpu, started = cpu_clock(), time.perf_counter()
            found = run()
            if round_:
                samples[name].append(time.perf_counter() - started)
                samples[f"cpu_{name}"].append(cpu_clock() - cpu)
            else:
                assert found == expected, (key, name)
    return samples


def interleaved_medians(runs_of: dict[str, Callable[[], list[str]]], expected: list[str], runs: int,
                        key: str) -> dict[str, float]:
    """Each variant's median seconds over ``interleaved_rounds``."""
    return {name: statistics.median(values)
            for name, values in interleaved_rounds(runs_of, expected, runs, key).items() if not name.startswith("cpu_")}


def ratio_figures(row: dict, samples: dict[str, list[float]], key: str, prefix: str = "") -> None:
    """Into ``row``: each variant's median (wall and CPU), and the compiled / hand-written ratio
    of each round (the two ran one after the other, under the same load): its median, lowest and
    highest, of the wall times and of the CPU times; and every round's ratio, in the rounds' order
    (``round_ratios`` / ``cpu_round_ratios``)."""
    row.update({f"{prefix}{name}_{key}": statistics.median(values) for name, values in samples.items()})
    for clock in ("", "cpu_"):
        in_order = [c / h for c, h in zip(samples[f"{clock}columns"], samples[f"{clock}hand"]) if h > 0]
        ratios = sorted(in_order)
        row[f"{prefix}{clock}ratio_{key}"] = (statistics.median(ratios), ratios[0], ratios[-1])
        row[f"{prefix}{clock}round_ratios_{key}"] = in_order


def database_members(engine: sa.Engine, text: str, sandbox: str) -> list[str]:
    """The segment's members by the database's own query: what every engine's variant must equal."""
    with engine.connect() as connection:
        return [r.external_id for r in connection.execute(
            database_query(text, dialect=engine.dialect.name, as_of=AS_OF, sandbox=sandbox))]


def timed_export(engine: sa.Engine, root: Path, sandbox: str) -> dict:
    """The full export, and the time inside its event-column pass (flat.write_events)."""
    shutil.rmtree(root, ignore_errors=True)
    inside = [0.0]
    original = flat.write_events

    def counted(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - started

    flat.write_events = counted
    try:
        with engine.connect() as connection:
            cpu, started = time.process_time(), time.perf_counter()
            manifest = export_snapshot(connection, sandbox=sandbox, root=root, full=True)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        flat.write_events = original
    events = manifest.parts[-1].events
    return {"export": seconds, "export_cpu": cpu, "event_columns_pass": inside[0], "events": events,
            "export_us_per_event": seconds / events * 1e6, "event_columns_us_per_event": inside[0] / events * 1e6}


def without_event_columns(root: Path, copy: Path) -> None:
    """The snapshot at ``root`` copied to ``copy`` with no ``f.*`` column in its events files."""
    import pyarrow.parquet

    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    for path in copy.rglob("events.parquet"):
        table = pyarrow.parquet.read_table(path)
        kept = [name for name in table.column_names if not name.startswith("f.")]
        pyarrow.parquet.write_table(table.select(kept), path, row_group_size=columns.ROW_GROUP)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def measure(engine: sa.Engine, data: Path, sandbox: str, runs: int, log, *, reuse: bool = False,
            database: bool = True) -> dict:
    """One size's figures (see the module's docstring); seconds. ``reuse``: the snapshots a
    previous run left at this size are queried again, without an export (no export figures).
    ``database=False``: not the database's own query (no figure of it); every variant's ids must
    equal the hand-written query's (when the database no longer fits in memory and its query would
    take the time the others need)."""
    with_root, without_root = data / "event-columns-with", data / "event-columns-without"
    if reuse:
        assert latest_manifest(with_root, sandbox) and latest_manifest(without_root, sandbox), "nothing to reuse"
        row = {"events": latest_manifest(with_root, sandbox).parts[-1].events}
    else:
        row = timed_export(engine, with_root, sandbox)
        log(f"export {row['export']:.1f} s, event-column pass {row['event_columns_pass']:.1f} s "
            f"({row['event_columns_us_per_event']:.2f} µs / event row)")
        without_event_columns(with_root / sandbox, without_root / sandbox)
    row["bytes_with"], row["bytes_without"] = folder_bytes(with_root), folder_bytes(without_root)
    sessions = {"columns": DuckDBSession().from_sql(*relations_sql(latest_manifest(with_root, sandbox))),
                "json": DuckDBSession().from_sql(*relations_sql(latest_manifest(without_root, sandbox)))}
    assert sessions["columns"].flat_events and not sessions["json"].flat_events
    try:
        for key, text in SEGMENTS.items():
            seconds, cpu = [], []
            for _ in range(2 if database else 0):  # the database's own query, as a caller runs it (compile included)
                cpu_started, started = time.process_time(), time.perf_counter()
                expected = database_members(engine, text, sandbox)
                seconds.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)  # SQLite runs in this process
            if database:
                row[f"database_{key}"] = statistics.median(seconds)
                if engine.dialect.name == "sqlite":
                    row[f"database_cpu_{key}"] = statistics.median(cpu)
            else:
                hand_parameters = {k: v for k, v in {**_NAIVE, "sandbox": sandbox}.items() if f"${k}" in HAND[key]}
                expected = [e for _pk, e in sessions["columns"].connection.execute(HAND[key], hand_parameters).fetchall()]
            statements = {}
            for name, session in sessions.items():
                statements[name] = (session, *rendered(members_query(
                    text, engine="duckdb", as_of=AS_OF, sandbox=sandbox, flat=session.flat,
                    flat_events=session.flat_events), session.dialect))
            scalar = scalar_aggregates(text, sessions["columns"], sandbox)
            if scalar[0] != statements["columns"][1]:  # the segment has an aggregate comparison
                statements["scalar"] = (sessions["columns"], *scalar)
            hand = HAND[key]
            statements["hand"] = (sessions["columns"], hand,
                                  {k: v for k, v in {**_NAIVE, "sandbox": sandbox}.items() if f"${k}" in hand})
            if key in HAND_CHECKED:  # the hand-written query with the language's overflow rule: the floor
                statements["checked"] = (sessions["columns"], HAND_CHECKED[key], statements["hand"][2])
            samples = interleaved_rounds(
                {name: (lambda session=session, sql=sql, parameters=parameters: [
                    e for _pk, e in session.connection.execute(sql, parameters).fetchall()])
                 for name, (session, sql, parameters) in statements.items()}, expected, runs, key)
            ratio_figures(row, samples, key)
            row[f"members_{key}"] = len(expected)
            log(f"({key}) " + ", ".join(f"{name} {row[f'{name}_{key}'] * 1000:.0f} ms" for name in samples)
                + " (compiled / hand-written per round: median {:.2f}×, {:.2f}–{:.2f}×".format(*row[f"ratio_{key}"])
                + "; CPU: median {:.2f}×, {:.2f}–{:.2f}×)".format(*row[f"cpu_ratio_{key}"]))
    finally:
        for session in sessions.values():
            session.close()
    return row


def scalar_aggregates(text: str, session, sandbox: str) -> tuple[str, list]:
    """The compiled query as before aggregate comparisons were grouped per profile
    (cdp.engine.sql.grouped): every aggregate a scalar subquery per profile, over event columns."""
    original = GroupedAggregates.grouped
    GroupedAggregates.grouped = lambda self, node: None
    try:
        return rendered(members_query(text, engine="duckdb", as_of=AS_OF, sandbox=sandbox, flat=session.flat,
                                      flat_events=session.flat_events), session.dialect)
    finally:
        GroupedAggregates.grouped = original


def report(rows: list[dict], runs: int, command: str, started: datetime, load_start: tuple, load_end: tuple) -> str:
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    lines = [f"Command: `{command}` (started {started:%H:%M} UTC; median of {runs} interleaved rounds after a "
             f"warm-up). Load average {load_start[0]:.1f} / {load_start[1]:.1f} / {load_start[2]:.1f} at the start, "
             f"{load_end[0]:.1f} / {load_end[1]:.1f} / {load_end[2]:.1f} at the end.", "",
             "| profiles | events | segment | compiled, JSON reads (before) | compiled, event columns | "
             "hand-written, typed columns | before / after | compiled / hand-written | per round: median "
             "(lowest–highest) | CPU, per round | members | "
             "compiled, event columns, aggregates as scalar subqueries (/ hand-written) | "
             "hand-written with the overflow rule (/ hand-written) |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for row in rows:
        for key in SEGMENTS:
            json_, cols, hand = row[f"json_{key}"], row[f"columns_{key}"], row[f"hand_{key}"]
            scalar, checked = row.get(f"scalar_{key}"), row.get(f"checked_{key}")
            lines.append(f"| {row['profiles']:,} | {row['events']:,} | ({key}) | {ms(json_)} | {ms(cols)} | "
                         f"{ms(hand)} | {json_ / cols:.2f}× | {cols / hand:.2f}× | "
                         "**{:.2f}×** ({:.2f}–{:.2f}×) | ".format(*row[f"ratio_{key}"])
                         + "**{:.2f}×** ({:.2f}–{:.2f}×) | ".format(*row[f"cpu_ratio_{key}"]) + f"{row[f'members_{key}']:,} | "
                         + (f"{ms(scalar)} ({scalar / hand:.2f}×) |" if scalar else "— |")
                         + (f" {ms(checked)} ({checked / hand:.2f}×) |" if checked else " — |"))
    lines += ["", "| profiles | export (full, from SQLite) | of which the event-column pass | µs / event row: "
              "export | µs / event row: event columns | snapshot with | without |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in (r for r in rows if "export" in r):
        lines.append(f"| {row['profiles']:,} | {row['export']:.1f} s | {row['event_columns_pass']:.1f} s | "
                     f"{row['export_us_per_event']:.1f} | {row['event_columns_us_per_event']:.2f} | "
                     f"{row['bytes_with'] / 2**20:,.0f} MiB | {row['bytes_without'] / 2**20:,.0f} MiB |")
    return "\n".join(lines) + "\n"
