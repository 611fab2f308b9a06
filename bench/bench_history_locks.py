"""Concurrent membership writers on PostgreSQL (cdp/storage/memberships.py): deadlocks on the
hour's ``segment_history`` rows and time, when each transaction writes several profiles' changes.

    python bench/bench_history_locks.py [--mode per-profile|deferred] [--writers 4]
                                        [--transactions 300] [--per-transaction 3] [--segments 8]

A throwaway cluster (cdp.devtools.postgres, ``deadlock_timeout`` 50 ms so that a cycle is found
soon), one sandbox, ``--segments`` segments whose hour's history rows exist. ``--writers`` threads,
each with its own 20 profiles, run ``--transactions`` transactions, each writing
``--per-transaction`` of its profiles' changes (1–4 segments each, entries and exits alternating):
``per-profile`` as main's callers wrote them (``write_profile`` per profile, each moving its own
history rows), ``deferred`` with ``write_profile(moves=…)`` and one ``move_history`` at the end
(StreamingEvaluator.profiles_changed). A deadlock victim is counted (SQLSTATE 40P01) and not
retried. Reported: deadlocks, transactions committed, wall time and this process's CPU time, and
whether the history rows equal the outbox's entries and exits and the counted members.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from cdp.devtools.postgres import start_cluster
from cdp.storage.database import create_engine
from cdp.storage.memberships import write_profile
from cdp.storage.migrate import upgrade
from cdp.storage.models import profiles, sandboxes, segment_history, segments

T0 = datetime(2026, 12, 7, 10, tzinfo=timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["per-profile", "deferred"], default="deferred")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--transactions", type=int, default=300)
    parser.add_argument("--per-transaction", type=int, default=3)
    parser.add_argument("--segments", type=int, default=8)
    args = parser.parse_args()
    cluster = start_cluster(extra_options="-c deadlock_timeout=50ms")
    try:
        engine = create_engine(cluster.create_database("history_locks"))
        upgrade(engine)
        with engine.begin() as c:
            c.execute(sandboxes.insert().values(name="s", created_at=T0))
            seg_pks = [c.execute(segments.insert().values(
                sandbox="s", key=f"k{i}", name=f"k{i}", expression="true", canonical="true", created_at=T0,
                updated_at=T0).returning(segments.c.pk)).scalar_one() for i in range(args.segments)]
            c.execute(segment_history.insert(), [{"segment_pk": pk, "at": T0, "size": 0, "entered": 0, "exited": 0}
                                                 for pk in seg_pks])
            mine = {w: [c.execute(profiles.insert().values(
                sandbox="s", external_id=f"p{w}-{j}", attributes={}, created_at=T0, updated_at=T0)
                .returning(profiles.c.pk)).scalar_one() for j in range(20)] for w in range(args.writers)}
        counts = {"deadlocks": 0, "committed": 0}
        lock = threading.Lock()
        now = T0 + timedelta(minutes=5)

        def writer(number: int) -> None:
            rng = random.Random(number)
            members = {pk: set() for pk in mine[number]}
            for _ in range(args.transactions):
                writes = [(pk, [(s, f"k{s}", s not in members[pk]) for s in sorted(rng.sample(seg_pks,
                                                                                                rng.randint(1, 4)))])
                          for pk in sorted(rng.sample(mine[number], args.per_transaction))]
                try:
                    with engine.begin() as c:
                        moves = {} if args.mode == "deferred" else None
                        for pk, changes in writes:
                            extra = {} if moves is None else {"moves": moves}
                            write_profile(c, sandbox="s", profile_pk=pk, profile_id=str(pk), now=now,
                                          source="streaming", changes=changes, **extra)
                        if moves is not None:
                            from cdp.storage.memberships import move_history

                            move_history(c, moves)
                except sa.exc.DBAPIError as error:
                    if getattr(error.orig, "sqlstate", None) != "40P01":
                        raise
                    with lock:
                        counts["deadlocks"] += 1
                    continue
                with lock:
                    counts["committed"] += 1
                for pk, changes in writes:
                    for s, _, entered in changes:
                        (members[pk].add if entered else members[pk].discard)(s)

        cpu, wall = time.process_time(), time.perf_counter()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        with engine.connect() as c:
            history = {r.segment_pk: (r.size, r.entered, r.exited) for r in c.execute(sa.select(segment_history))}
            sizes = dict(c.exec_driver_sql("SELECT segment_pk, count(*) FROM memberships WHERE status = 'realized' "
                                           "GROUP BY segment_pk").all())
            outbox = {r[0]: (r[1], r[2]) for r in c.exec_driver_sql(
                "SELECT segment_pk, count(*) FILTER (WHERE status = 'entered'), "
                "count(*) FILTER (WHERE status = 'exited') FROM membership_changes GROUP BY segment_pk")}
        consistent = all(history[pk] == (sizes.get(pk, 0), *outbox.get(pk, (0, 0))) for pk in seg_pks)
        engine.dispose()
        print(f"mode={args.mode} writers={args.writers} transactions={args.transactions} "
              f"per-transaction={args.per_transaction} segments={args.segments} load={os.getloadavg()[0]:.2f}: "
              f"deadlocks {counts['deadlocks']}, committed {counts['committed']}, wall {wall:.2f} s, "
              f"client CPU {cpu:.2f} s, history consistent: {consistent}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
