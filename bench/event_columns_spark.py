"""Typed event-field columns on Spark: the event-reading segments over the snapshots
``bench_scale.py --event-columns`` left (with and without the ``f.*`` columns), beside hand-written
Spark SQL over the typed columns (``bench_scale.py --event-columns-spark``; issue 21).

Per segment, ``runs`` interleaved rounds after a warm-up of each: the compiled query over the
snapshot with event columns (``SparkSession.from_snapshot`` finds them; the compiler reads them),
the compiled query over the copy without (``get_json_object`` reads of ``fields``), and the
hand-written query over the typed event columns (the reference of the ≤ 1.1× target). Profile
attributes are read from the snapshot's typed ``a.*`` columns, in the compiled and the
hand-written query alike (before session 11 both read them through ``get_json_object``). The compiled queries are rendered once and run as text as the
hand-written one is; every variant's ids must equal the database's (asserted). One Spark, two
sessions of it (one per snapshot).
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

import sqlalchemy as sa

from _common import carts_not_bought
from event_columns import AS_OF, SEGMENTS, _NAIVE, database_members, interleaved_rounds, ratio_figures
from cdp.engine.sql.analytic import members_query
from cdp.snapshots import latest_manifest

HAND = {
    "a": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.sandbox = :sandbox
  AND p.`a.loyalty.tier` IN ('silver', 'gold')
  AND p.`a.home_address.country` = 'US'
  AND p.`a.loyalty.points` > 500
ORDER BY p.pk""",
    "b": f"""
SELECT p.pk, p.external_id FROM profiles p
WHERE p.pk IN ({carts_not_bought(':')})
  AND p.sandbox = :sandbox
  AND p.`a.loyalty.tier` IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e
              WHERE e.profile_pk = p.pk AND e.type = 'addToCart' AND e.ts > :lo AND e.ts <= :as_of
                AND e.`f.product.category` != p.`a.preferred_category`
                AND e.`f.product.size` != p.`a.preferred_size`)
ORDER BY p.pk""",
    "c": """
SELECT p.pk, p.external_id FROM profiles p
JOIN (SELECT profile_pk FROM events e
      WHERE e.type = 'purchase' AND e.ts >= :year AND e.ts <= :as_of
      GROUP BY profile_pk HAVING sum(e.`f.order.total`) > 1000) t ON t.profile_pk = p.pk
WHERE p.sandbox = :sandbox
ORDER BY p.pk""",
}


def cpu_clock() -> float:
    """CPU seconds of this process and its children still running (the JVM Spark runs in: its
    threads' user + system time, from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def measure(engine: sa.Engine, data: Path, sandbox: str, runs: int, master: str, log,
            segments: list[str] | None = None, json_reads: bool = True, hand_written: bool = True,
            database: bool = True) -> dict:
    """One size's Spark figures (see the module's docstring); seconds. ``json_reads=False``: not
    the compiled query over the snapshot without event columns; ``hand_written=False``: not the
    hand-written query (no ratio; the compiled query's time only: what the growth of Spark's time
    needs). ``database=False``: the ids to equal are DuckDB's over the same snapshot, not the
    database's (a database past the page cache)."""
    from cdp.engine.sql.spark_session import SparkSession, _bound

    roots = {"columns": data / "event-columns-with", "json": data / "event-columns-without"}
    if not json_reads:
        del roots["json"]
    started = time.perf_counter()
    sessions = {name: SparkSession(master=master).from_snapshot(latest_manifest(root, sandbox))
                for name, root in roots.items()}
    # the compiled query reads the typed attribute columns (bench_scale.growth_series keeps only
    # such runs for (a) and (b); runs logged before this field read them through JSON)
    row: dict = {"spark_start": time.perf_counter() - started,
                 "spark_compiled_reads_attribute_columns": bool(sessions["columns"].flat)}
    assert sessions["columns"].flat_events and ("json" not in sessions or not sessions["json"].flat_events)
    try:
        for key, text in SEGMENTS.items():
            if key not in (segments or SEGMENTS):
                continue
            if database:
                expected = database_members(engine, text, sandbox)
            else:
                from cdp.engine.sql.analytic import DuckDBSession
                from cdp.snapshots.export import relations_sql

                duck = DuckDBSession().from_sql(*relations_sql(latest_manifest(roots["columns"], sandbox)))
                expected = [e for _pk, e in duck.members(text, as_of=AS_OF, sandbox=sandbox)]
                duck.close()
            statements = {}
            for name, session in sessions.items():
                # the typed attribute columns too, as SparkSession.members reads them (until session
                # 13 only the event columns were passed: (a) and (b) read attributes through JSON)
                statements[name] = (session, *session.rendered(members_query(
                    text, engine="spark", as_of=AS_OF, sandbox=sandbox, flat=session.flat,
                    flat_events=session.flat_events)))
            hand = HAND[key]
            if hand_written:
                statements["hand"] = (sessions["columns"], hand, {k: _bound(v) for k, v in {**_NAIVE, "sandbox": sandbox}.items()
                                                                  if f":{k}" in hand})
            samples = interleaved_rounds(
                {name: (lambda session=session, sql=sql, parameters=parameters: [
                    r[1] for r in session.spark.sql(sql, args=parameters).collect()])
                 for name, (session, sql, parameters) in statements.items()}, expected, runs, key, cpu_clock)
            row[f"members_{key}"] = len(expected)
            if not hand_written:
                row.update({f"spark_{name}_{key}": statistics.median(values) for name, values in samples.items()})
                log(f"spark ({key}) " + ", ".join(f"{name} {row[f'spark_{name}_{key}'] * 1000:.0f} ms" for name in samples))
                continue
            ratio_figures(row, samples, key, prefix="spark_")
            log(f"spark ({key}) " + ", ".join(f"{name} {row[f'spark_{name}_{key}'] * 1000:.0f} ms" for name in samples)
                + " (compiled / hand-written per round: median {:.2f}×, {:.2f}–{:.2f}×".format(*row[f"spark_ratio_{key}"])
                + "; CPU: median {:.2f}×, {:.2f}–{:.2f}×)".format(*row[f"spark_cpu_ratio_{key}"]))
    finally:
        for session in sessions.values():
            session.close()
    return row


def report(rows: list[dict], runs: int, command: str, started, load_start: tuple, load_end: tuple) -> str:
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    lines = [f"Command: `{command}` (started {started:%H:%M} UTC; median of {runs} interleaved rounds after a "
             f"warm-up). Load average {load_start[0]:.1f} / {load_start[1]:.1f} / {load_start[2]:.1f} at the start, "
             f"{load_end[0]:.1f} / {load_end[1]:.1f} / {load_end[2]:.1f} at the end.", "",
             "| profiles | segment | Spark compiled, JSON reads | Spark compiled, event columns | "
             "Spark hand-written, typed event columns | JSON / columns | compiled / hand-written | per round: median "
             "(lowest–highest) | CPU (Python + JVM), per round | members |",
             "|---:|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for row in rows:
        for key in (k for k in SEGMENTS if f"spark_columns_{k}" in row):
            json_, cols, hand = (row.get(f"spark_{n}_{key}") for n in ("json", "columns", "hand"))
            if not hand:
                lines.append(f"| {row['profiles']:,} | ({key}) | {ms(json_) if json_ else '—'} | {ms(cols)} | — | "
                             f"{f'{json_ / cols:.2f}×' if json_ else '—'} | — | — | — | {row[f'members_{key}']:,} |")
                continue
            lines.append(f"| {row['profiles']:,} | ({key}) | {ms(json_) if json_ else '—'} | {ms(cols)} | {ms(hand)} | "
                         f"{f'{json_ / cols:.2f}×' if json_ else '—'} | {cols / hand:.2f}× | "
                         "**{:.2f}×** ({:.2f}–{:.2f}×) | ".format(*row[f"spark_ratio_{key}"])
                         + "**{:.2f}×** ({:.2f}–{:.2f}×) | ".format(*row[f"spark_cpu_ratio_{key}"]) + f"{row[f'members_{key}']:,} |")
    return "\n".join(lines) + "\n"


# ---- what (c)'s compiled form costs over the hand-written one, part by part ----------------------

# (c) hand-written, each difference of the compiled query added alone: `p.pk IN (…)` for the JOIN;
# the language's `sum` (0 over no values, coalesce; null past a double's range, the CASE) in HAVING
C_VARIANTS = {
    "hand": HAND["c"],
    "hand_in": """
SELECT p.pk, p.external_id FROM profiles p
WHERE p.sandbox = :sandbox AND p.pk IN (
      SELECT profile_pk FROM events e
      WHERE e.type = 'purchase' AND e.ts >= :year AND e.ts <= :as_of
      GROUP BY profile_pk HAVING sum(e.`f.order.total`) > 1000)
ORDER BY p.pk""",
    "hand_case": """
SELECT p.pk, p.external_id FROM profiles p
JOIN (SELECT profile_pk FROM events e
      WHERE e.type = 'purchase' AND e.ts >= :year AND e.ts <= :as_of
      GROUP BY profile_pk
      HAVING CASE WHEN abs(coalesce(sum(e.`f.order.total`), 0.0D)) <= 1.7976931348623157E308D
                  THEN coalesce(sum(e.`f.order.total`), 0.0D) END > 1000) t ON t.profile_pk = p.pk
WHERE p.sandbox = :sandbox
ORDER BY p.pk""",
}


def c_parts(root: Path, sandbox: str, runs: int, master: str, log) -> dict[str, list[float]]:
    """(c) over the snapshot at ``root`` in ``runs`` interleaved rounds: the hand-written query,
    it with each of the compiled query's differences alone (C_VARIANTS), the compiled query, and
    the compiled query with its `sum` a plain `sum` (``compiled_plain``: no coalesce, no CASE).
    Every variant's ids must equal the hand-written one's. Seconds and CPU seconds per round."""
    from cdp.engine.sql.spark_session import SparkSession, _bound

    session = SparkSession(master=master).from_snapshot(latest_manifest(root, sandbox))
    try:
        text = SEGMENTS["c"]
        sql, parameters = session.rendered(members_query(text, engine="spark", as_of=AS_OF, sandbox=sandbox,
                                                         flat_events=session.flat_events, flat=session.flat))
        guarded = re.search(r"CASE WHEN \(abs\(coalesce\((sum\([^)]*\)), :\w+\)\) <= :\w+\) THEN "
                            r"coalesce\(sum\([^)]*\), :\w+\) ELSE NULL END", sql)
        assert guarded, sql
        statements = {name: (hand, {k: _bound(v) for k, v in {**_NAIVE, "sandbox": sandbox}.items()
                                    if f":{k}" in hand}) for name, hand in C_VARIANTS.items()}
        statements["compiled"] = (sql, parameters)
        plain = sql.replace(guarded.group(0), guarded.group(1))
        statements["compiled_plain"] = (plain, {k: v for k, v in parameters.items() if f":{k}" in plain})

        def run(sql, parameters):
            return lambda: [r[1] for r in session.spark.sql(sql, args=parameters).collect()]

        expected = run(*statements["hand"])()
        log(f"(c): {len(expected):,} members; compiled:\n{sql}")
        return interleaved_rounds({name: run(*s) for name, s in statements.items()}, expected, runs, "c", cpu_clock)
    finally:
        session.close()


if __name__ == "__main__":
    import argparse
    import statistics
    import sys

    parser = argparse.ArgumentParser(description="(c)'s compiled form on Spark, part by part (c_parts)")
    parser.add_argument("--snapshots", required=True, help="a snapshot root with the f.* columns (ROOT/prod)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--master", default="local[2]")
    options = parser.parse_args()
    log = lambda m: print(time.strftime("%H:%M:%S"), m, f"(load {os.getloadavg()[0]:.1f})", flush=True)  # noqa: E731
    load = os.getloadavg()
    samples = c_parts(Path(options.snapshots), "prod", options.runs, options.master, log)
    from cdp.engine.sql.spark_session import stop

    stop()
    print(f"{options.runs} interleaved rounds, load {load[0]:.1f} → {os.getloadavg()[0]:.1f}; "
          "per round ÷ the hand-written query of the same round: median (lowest–highest)")
    print("| variant | wall median | CPU median (Python + JVM) | wall ÷ hand | CPU ÷ hand |")
    print("|---|---:|---:|---:|---:|")
    for name in (n for n in samples if not n.startswith("cpu_")):
        figures = []
        for clock in ("", "cpu_"):
            ratios = sorted(v / h for v, h in zip(samples[clock + name], samples[clock + "hand"]))
            figures.append(f"{statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f})")
        print(f"| {name} | {statistics.median(samples[name]) * 1000:,.0f} ms | "
              f"{statistics.median(samples['cpu_' + name]) * 1000:,.0f} ms | {figures[0]} | {figures[1]} |")
    sys.exit(0)
