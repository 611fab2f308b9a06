"""Identity-graph linking rules (issue 24): the identity-graph stream of bench_ingest.py's section C
with 5 % of devices shared between two people, ingested through the ingestion service
(``cdp.ingestion.service.ingest_records``, one transaction per request of 500 records, as the
API runs it) with the rules on (crm_id and loyalty_id unique: the default) and off (no unique
namespace), on SQLite and PostgreSQL.

Reported per backend: records/s with the rules on and off, the splits the rules made (profiles
split off, from the records' answers) and splits per second of the run, the links removed, and
the profile count against a reference — the documented rule written over plain dicts (one record
after the other: the touched graphs' kept links and the record's links, by class then newest
first, each kept unless it joins two values of a unique namespace) — and, rules off, against a
union-find. Exit status 1 when a count differs.

    .venv/bin/python bench/bench_identity_rules.py [--people 1000] [--backend sqlite|postgresql|both] [--record]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cdp.dsl  # noqa: E402,F401 - cdp.schema must not be imported first
from cdp.identity.settings import MergePolicy, put_identity_settings  # noqa: E402
from cdp.ingestion.service import ingest_records  # noqa: E402
from cdp.schema import luma_schema  # noqa: E402
from cdp.storage.database import create_engine, write_transaction  # noqa: E402
from cdp.storage.migrate import upgrade  # noqa: E402
from cdp.storage.models import datasets, identity_links, profiles  # noqa: E402

EVENTS_PER_PERSON = 5
SHARED = 0.05
REQUEST = 500
UNIQUE = {"crm_id", "loyalty_id"}
RANK = {"crm_id": 0, "loyalty_id": 1, "email": 2, "phone": 3, "ecid": 4}


def stream(people: int, seed: int) -> list[list[tuple[str, str]]]:
    """Section C's records (a person's ecid, email, crm_id; 1 or 2 of them per event), where 5 % of
    the devices are shared: each has a second user, whose events carry it instead of their own
    ecid half of the time."""
    rng = random.Random(seed)
    borrowed = {}
    for owner in rng.sample(range(people), int(people * SHARED)):
        other = rng.randrange(people)
        if other != owner:
            borrowed[other] = owner
    records = []
    for _ in range(people * EVENTS_PER_PERSON):
        person = rng.randrange(people)
        device = borrowed[person] if person in borrowed and rng.random() < 0.5 else person
        mine = [("ecid", f"ecid-{device:06d}"), ("email", f"person{person:06d}@example.com"),
                ("crm_id", f"CRM-{person:06d}")]
        records.append(rng.sample(mine, rng.choice((1, 2))))
    return records


def flips(laptops: int, rounds: int) -> list[list[tuple[str, str]]]:
    """Shared laptops, two people each, logging in by turns: every login after the first moves the
    laptop — a link removed and a profile split — by the rules."""
    records = []
    for round_ in range(rounds):
        for laptop in range(laptops):
            for person in ("a", "b"):
                records.append([("crm_id", f"{person}-{laptop:05d}"), ("ecid", f"laptop-{laptop:05d}")])
    return records


def reference(records, unique) -> int:
    """Profiles by the documented rule, over plain dicts (touched graphs only, per record)."""
    comp: dict = {}  # identity → component id
    members: dict[int, set] = {}
    links: dict[int, dict] = {}  # component → {link: when}
    next_id = 0
    for when, identities in enumerate(records):
        touched = {comp[i] for i in identities if i in comp}
        nodes = set(identities).union(*(members[c] for c in touched))
        candidates = {}
        for c in touched:
            candidates.update(links.pop(c))
            members.pop(c)
        for a, b in combinations(sorted(identities), 2):
            candidates[(a, b)] = when
        parent = {n: n for n in nodes}
        holds = {n: ({n[0]: n[1]} if n[0] in unique else {}) for n in nodes}

        def find(n):
            while parent[n] != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        kept = {}
        for link in sorted(candidates, key=lambda l: (max(RANK[l[0][0]], RANK[l[1][0]]), -candidates[l], l)):
            ra, rb = find(link[0]), find(link[1])
            if ra != rb:
                if any(holds[rb].get(ns, v) != v for ns, v in holds[ra].items()):
                    continue
                parent[rb] = ra
                holds[ra].update(holds.pop(rb))
            kept[link] = candidates[link]
        groups: dict = {}
        for n in nodes:
            groups.setdefault(find(n), set()).add(n)
        for root, group in groups.items():
            next_id += 1
            members[next_id] = group
            links[next_id] = {}
            for n in group:
                comp[n] = next_id
        for link, seen in kept.items():
            links[comp[link[0]]][link] = seen
    return len(members)


def run(engine, records, rules_on: bool, request: int = REQUEST) -> dict:
    sandbox = f"rules-{'on' if rules_on else 'off'}-{uuid.uuid4().hex[:6]}"
    with write_transaction(engine) as connection:
        dataset = connection.execute(datasets.insert().values(
            sandbox=sandbox, name="Web", kind="event", labels=[], field_labels={}, created_at=sa.func.now(),
            updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()
        put_identity_settings(connection=connection, sandbox=sandbox, merge_policy=MergePolicy.timestamp_ordered,
                              dataset_precedence=[], graph_limit=50,
                              unique_namespaces=sorted(UNIQUE) if rules_on else [],
                              namespaces=frozenset(RANK))
    bodies = []
    for start in range(0, len(records), request):
        bodies.append({"records": [{"identities": [{"namespace": ns, "id": v} for ns, v in identities],
                                    "event": {"id": f"e{start + i}", "type": "pageView",
                                              "timestamp": "2026-11-28T10:00:00Z"}}
                                   for i, identities in enumerate(records[start:start + request])]})
    schema = luma_schema()
    splits = accepted = 0
    started = time.perf_counter()
    for body in bodies:
        with write_transaction(engine) as connection:
            answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset, body=body,
                                    schema=schema)
        accepted += answer.accepted
        splits += sum(w.count("split off") for r in answer.results for w in r.warnings)
    seconds = time.perf_counter() - started
    with engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(profiles).where(
            profiles.c.sandbox == sandbox)).scalar_one()
        removed = connection.execute(sa.select(sa.func.count()).select_from(identity_links).where(
            identity_links.c.sandbox == sandbox, identity_links.c.removed_at.is_not(None))).scalar_one()
    return {"seconds": seconds, "rate": len(records) / seconds, "accepted": accepted, "profiles": count,
            "splits": splits, "removed": removed}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--laptops", type=int, default=200)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    records = stream(args.people, args.seed)
    want_on, want_off = reference(records, UNIQUE), reference(records, set())
    flipping = flips(args.laptops, 5)
    want_flips = reference(flipping, UNIQUE)
    lines = [f"### {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — identity linking rules (issue 24)", "",
             f"`.venv/bin/python bench/bench_identity_rules.py --people {args.people} --backend {args.backend}`: "
             f"{len(records):,} records for {args.people:,} people, 5 % of devices shared, requests of {REQUEST}, "
             f"one client in process (ingest_records, a transaction per request). Reference: the documented "
             f"rule over plain dicts ({want_on:,} profiles); rules off: union-find ({want_off:,}).", "",
             "| backend | rules | records/s | seconds | profiles | reference | splits | splits/s | links removed |",
             "|---|---|---|---|---|---|---|---|---|"]
    ok = True
    flip_lines = [f"Splits: {args.laptops} shared laptops, two people each logging in by turns (5 rounds: "
                  f"{len(flipping):,} records, one per request, rules on); every login after the first "
                  f"removes a link and moves the laptop to the other person's profile.", "",
                  "| backend | records/s (= splits/s) | seconds | removed links at the end | profiles | reference |",
                  "|---|---|---|---|---|---|"]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        cluster = None
        if backend == "sqlite":
            engine = create_engine(f"sqlite:///{tempfile.mkdtemp()}/rules.db")
        else:
            from cdp.devtools.postgres import start_cluster

            cluster = start_cluster()
            engine = create_engine(cluster.create_database("rules"))
        try:
            upgrade(engine)
            for rules_on in (False, True):
                result = run(engine, records, rules_on)
                want = want_on if rules_on else want_off
                ok &= result["profiles"] == want and result["accepted"] == len(records)
                lines.append(f"| {backend} | {'on' if rules_on else 'off'} | {result['rate']:,.0f} | "
                             f"{result['seconds']:.1f} | {result['profiles']:,} | {want:,} | {result['splits']:,} | "
                             f"{result['splits'] / result['seconds']:,.1f} | {result['removed']:,} |")
                print(lines[-1], flush=True)
            result = run(engine, flipping, True, request=1)
            ok &= result["profiles"] == want_flips and result["accepted"] == len(flipping)
            flip_lines.append(f"| {backend} | {result['rate']:,.0f} | {result['seconds']:.1f} | "
                              f"{result['removed']:,} | {result['profiles']:,} | {want_flips:,} |")
            print(flip_lines[-1], flush=True)
        finally:
            engine.dispose()
            if cluster is not None:
                cluster.stop()
    lines += [""] + flip_lines + ["", "Check: profiles = reference, every record accepted: " + ("ok" if ok else "FAILED"), ""]
    report = "\n".join(lines)
    print(report)
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as out:
            out.write("\n" + report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
