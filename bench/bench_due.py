"""The scheduler of streaming re-evaluations (issue 15): how long a wave of due re-evaluations
takes, and how late its last one is, with many scheduled in all.

    python bench/bench_due.py [--backend sqlite|postgresql|both] [--scheduled 1000000]
                              [--segments 100] [--waves 100,1000] [--record]
    (or: bash bench/run_due.sh …, which uses the project's .venv)

Per backend a fresh database (an SQLite file; a throwaway PostgreSQL cluster with
bench_ingest's settings), sandbox ``prod``: ``--segments`` active streaming segments of
bench_segments.shapes (attributes, lists, event windows, counts, sums, last(), days_since, the §13
sequence, references), saved (and evaluated set-wise) as of a day before the waves, and
``--scheduled`` profiles, each with its due instant — ``--scheduled`` re-evaluations in
``segment_due`` (one per profile since migration 0018: at it, all the profile's timed streaming
segments are re-evaluated), as saving a timed streaming segment over existing profiles leaves
them. The waves' profiles (disjoint) are generated Luma profiles (cdp.demo, events included); the
others hold no data and are due a year later.

Per wave of W profiles: their instants are set to T (W × the timed segments: the pairs evaluated),
and the due job's work runs as the service runs it (cdp.segments.due.run_due in rounds of
1,000 profiles, profiles sharing short transactions) with the clock at T, until nothing is due.
Reported: the wave's time (its last re-evaluation's lag behind T), profiles and (profile, segment)
pairs per second, and what the job reads before each run at this size (due_depth's counts and
the oldest due instant: the queue depth and lag of /metrics).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest as bi  # noqa: E402 - the cluster settings, the log, one run at a time
from _common import cpu_model, markdown_table  # noqa: E402
from bench_segments import shapes  # noqa: E402

from cdp.demo import generate_profiles  # noqa: E402
from cdp.devtools.postgres import start_cluster  # noqa: E402
from cdp.engine.sql.loading import load_documents  # noqa: E402
from cdp.schema import luma_schema  # noqa: E402
from cdp.segments import service  # noqa: E402
from cdp.segments.models import Evaluation, SegmentCreate, SegmentStatus  # noqa: E402
from cdp.segments.due import due_depth, run_due  # noqa: E402
from cdp.storage.database import create_engine, write_transaction  # noqa: E402
from cdp.storage.migrate import upgrade  # noqa: E402
from cdp.storage.models import profiles, segment_due  # noqa: E402

SANDBOX = "prod"
T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # the wave's instant (the generator's data ends before it)


def prepare(engine: sa.Engine, scheduled: int, segment_count: int, generated: int) -> tuple[int, list[int]]:
    """Segments, profiles and ``scheduled`` due profiles a year after T; (scheduled, profile pks in order)."""
    schema = luma_schema()
    people = max(scheduled, generated)
    bi.log(f"loading {generated:,} generated profiles")
    with engine.begin() as connection:
        load_documents(connection, generate_profiles(generated, seed=7, as_of=T), sandbox=SANDBOX, schema=schema)
    bi.log(f"saving {segment_count} streaming segments (each evaluated set-wise as of a day before the waves)")
    with engine.begin() as connection:
        for key, text in shapes(segment_count).items():
            service.create_segment(connection=connection, sandbox=SANDBOX, schema=schema, as_of=T - timedelta(days=1),
                                   spec=SegmentCreate(key=key, name=key, expression=text, status=SegmentStatus.active,
                                                      evaluation=Evaluation.streaming))
        connection.execute(segment_due.delete())  # the instants are this bench's own
    bi.log(f"loading {people - generated:,} empty profiles")  # after the segments: their evaluation is not this bench's
    with engine.begin() as connection:
        now = datetime.now(UTC)
        for start in range(0, people - generated, 10_000):
            connection.execute(profiles.insert(), [
                {"sandbox": SANDBOX, "external_id": f"empty-{i:08d}", "attributes": {}, "created_at": now,
                 "updated_at": now} for i in range(start, min(start + 10_000, people - generated))])
    with engine.begin() as connection:
        connection.execute(segment_due.insert().from_select(
            ["profile_pk", "sandbox", "due_at"],
            sa.select(profiles.c.pk, sa.literal(SANDBOX, sa.String),
                      sa.literal(T + timedelta(days=365), segment_due.c.due_at.type))
            .where(profiles.c.sandbox == SANDBOX)))  # every profile
        pks = list(connection.execute(sa.select(profiles.c.pk).where(profiles.c.sandbox == SANDBOX)
                                      .order_by(profiles.c.pk)).scalars())
        total = connection.execute(sa.select(sa.func.count()).select_from(segment_due)).scalar_one()
    bi.log(f"{total:,} re-evaluations scheduled ({len(pks):,} profiles; {timed_segments(engine)} of the "
           f"{segment_count} segments timed)")
    return total, pks


def wave(engine: sa.Engine, chosen: list[int], at: datetime) -> dict:
    """The ``chosen`` profiles (generated ones) due at ``at``; the due job's work until none is due."""
    size = len(chosen)
    with engine.begin() as connection:
        for start in range(0, len(chosen), 500):
            connection.execute(segment_due.update().where(segment_due.c.profile_pk.in_(chosen[start:start + 500]))
                               .values(due_at=at))
    with engine.connect() as connection:
        started = time.perf_counter()
        scheduled, due = due_depth(connection, at)
        oldest = connection.execute(sa.select(sa.func.min(segment_due.c.due_at))
                                    .where(segment_due.c.due_at <= at)).scalar()
        bookkeeping = time.perf_counter() - started
    assert oldest is not None and due == size, (due, size)  # the wave, nothing else
    started, profiles_done, rounds = time.perf_counter(), 0, 0
    while True:
        done = run_due(lambda: write_transaction(engine), now=at)
        if not done:
            break
        profiles_done += done
        rounds += 1
    seconds = time.perf_counter() - started
    with engine.connect() as connection:
        left = connection.execute(sa.select(sa.func.count()).select_from(segment_due)
                                  .where(segment_due.c.due_at <= at)).scalar_one()
        rescheduled = connection.execute(sa.select(sa.func.count()).select_from(segment_due)
                                         .where(segment_due.c.profile_pk.in_(chosen[:500]))).scalar_one()
    assert left == 0, left
    return {"size": size, "pairs": size * timed_segments(engine), "scheduled": scheduled, "seconds": seconds,
            "profiles": profiles_done,
            "rounds": rounds, "bookkeeping": bookkeeping, "rescheduled_sample": rescheduled}


_timed_counts: dict[str, int] = {}


def timed_segments(engine: sa.Engine) -> int:
    """The sandbox's timed streaming segments: what a due profile re-evaluates."""
    from cdp.segments.streaming_plan import streaming_plan

    key = str(engine.url)
    if key not in _timed_counts:
        with engine.connect() as connection:
            plan = streaming_plan(connection, SANDBOX)
            _timed_counts[key] = sum(1 for timing in plan.timing if timing is not None)
    return _timed_counts[key]


def run_backend(name: str, args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-due-"))
    cluster = None
    try:
        if name == "sqlite":
            url = f"sqlite:///{workdir / 'cdp.db'}"
        else:
            cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in bi.PG_SETTINGS.items()))
            url = cluster.create_database("cdp_due")
        engine = create_engine(url)
        upgrade(engine)
        sizes = [int(w) for w in args.waves.split(",")]
        started = time.perf_counter()
        total, pks = prepare(engine, args.scheduled, args.segments, sum(sizes))
        setup = time.perf_counter() - started
        waves = []
        offset = 0
        for size in sizes:  # disjoint profiles, one instant: a wave leaves its profiles due after T
            waves.append(wave(engine, pks[offset:offset + size], T))
            offset += size
            bi.log(f"{name}: wave of {size:,} profiles ({waves[-1]['pairs']:,} pairs) in {waves[-1]['seconds']:.1f} s")
        engine.dispose()
        return {"scheduled": total, "setup": setup, "waves": waves}
    finally:
        if cluster is not None:
            cluster.stop()


def report(args, results: dict[str, dict], started: datetime, wall: float) -> str:
    command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_due.py " + " ".join(sys.argv[1:])
    git = os.popen("git rev-parse --short HEAD").read().strip()
    lines = [f"## Streaming: the scheduler's waves of due re-evaluations — {started:%Y-%m-%d %H:%M} UTC", "",
             f"- machine: nproc {os.cpu_count()}, {cpu_model()}; load average at start {os.getloadavg()[0]:.2f}; "
             f"Python {platform.python_version()}; commit {git}",
             f"- command: `{command}`",
             f"- wall time: {wall / 60:.1f} min",
             f"- {args.segments} active streaming segments of bench_segments.shapes; every profile due (one instant "
             "per profile: its timed segments re-evaluated; see bench/bench_due.py); a wave: W generated profiles due "
             "at one instant, the due job's work (run_due: 1,000 profiles a round, several profiles per short "
             "transaction) run until none is due", ""]
    rows = []
    for name, out in results.items():
        for w in out["waves"]:
            rows.append([name, f"{w['scheduled']:,}", f"{w['size']:,}", f"{w['pairs']:,}", f"{w['seconds']:.1f}",
                         f"{w['profiles'] / w['seconds']:,.0f}", f"{w['pairs'] / w['seconds']:,.0f}",
                         f"{w['bookkeeping'] * 1000:.0f}"])
    lines += ["Lag = the wave's time: its instants all fall at T and the job starts at T, so the last profile's "
              "re-evaluation commits that long after its instant.", "",
              markdown_table(["database", "scheduled (profiles)", "wave (profiles)", "wave (pairs)",
                              "lag of the last (s)",
                              "profiles/s", "pairs/s", "queue depth + oldest instant (ms)"], rows), ""]
    for name, out in results.items():
        lines.append(f"- {name}: setup {out['setup']:.0f} s")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--scheduled", type=int, default=1_000_000, help="profiles scheduled in all")
    parser.add_argument("--segments", type=int, default=100)
    parser.add_argument("--waves", default="100,1000", help="wave sizes in profiles")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    started, t0 = datetime.now(UTC), time.perf_counter()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    lock = bi.one_run_at_a_time()  # noqa: F841 - held until the process ends
    results = {name: run_backend(name, args) for name in backends}
    text = report(args, results, started, time.perf_counter() - t0)
    print(text)
    if args.record:
        with open(bi.RESULTS, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
