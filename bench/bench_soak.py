"""Load and soak: several streaming-ingestion clients against a real `cdp serve` for minutes, on
SQLite and on PostgreSQL (a throwaway cluster, durable settings), with streaming segments
evaluating on every ingest. Loopback only, bounded by --minutes.

Each client has its own API key (data_steward; the default rate limit holds) and sends requests
of --batch records — profile records (a loyalty tier) and events (views, carts, purchases in the
last hour) for its own people, one record in 50 invalid on purpose (points as text) — as fast as
the server answers. Afterwards:

* every record is accounted for: accepted = stored (each accepted event is a row with its id,
  each accepted profile record's identity is in the identity graph), rejected = reported as
  rejected in the answers, nothing else (no 5xx, no timeout);
* the streaming memberships equal a batch evaluation in SQL of the same segments at the same
  instant (cdp.segments.batch.members_select);
* latency percentiles per request, records/s, and the server's resident memory sampled every
  5 s (first, peak, last);
* a webhook destination (a real HTTP receiver on a local port, checking each signature) is
  activated for the streaming segment ``gold`` before the load starts, and receives while it
  runs: afterwards every membership change of ``gold`` in the outbox was delivered at least once
  and, per profile, in the outbox's order (the deliveries after dropping repeats of a
  ``delivery_id``); figures: deliveries, changes, duplicates (changes received again, from a
  delivery sent again), lag from the membership change to its arrival (p50, p99, max).

    bash bench/run_soak.sh [--minutes 3] [--clients 4] [--batch 10] [--backends sqlite,postgresql] [--record]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bench_ingest
import httpx2 as httpx
import sqlalchemy as sa
from bench_ingest import Server, proc_status

from cdp.devtools.postgres import start_cluster
from cdp.storage.database import create_engine

ADMIN = "cdp_soakadmin01_" + "K" * 40
SANDBOX = "soak"
SEGMENTS = {
    "gold": 'loyalty.tier = "gold"',
    "buyers": 'exists event where type = "purchase" within last 7 days',
    "viewers": 'count(event where type = "productView" within last 1 day) >= 2',
    "gold-buyers": 'in segment "gold" and in segment "buyers"',
}
PEOPLE_PER_CLIENT = 300
ACTIVATED = "gold"  # the streaming segment the webhook destination receives (entries and exits all along)
SECRET = "soak-webhook-secret-0123456789"
DELIVERY_WAIT = 300.0  # seconds the deliveries may take to catch up once the load ends


class Receiver:
    """The webhook destination: a local HTTP server that checks each POST's signature, answers
    200 and keeps what arrived with the wall-clock time it arrived."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server protocol
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                good = hmac.compare_digest(self.headers.get("X-CDP-Signature", ""), expected)
                with receiver.lock:
                    if good:
                        receiver.posts.append((time.time(), json.loads(raw)))
                    else:
                        receiver.bad_signatures += 1
                self.send_response(200 if good else 401)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> tuple[list[tuple[float, dict]], int, int]:
        """(each change with its arrival, first arrival of each delivery; deliveries; changes
        received again in a delivery sent again)."""
        seen: set[str] = set()
        changes, duplicates = [], 0
        with self.lock:
            posts = list(self.posts)
        for arrived, body in posts:
            if body["delivery_id"] in seen:
                duplicates += len(body["changes"])
                continue
            seen.add(body["delivery_id"])
            changes.extend((arrived, change) for change in body["changes"])
        return changes, len(seen), duplicates


def _utc(value) -> datetime:
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def outbox_of(engine: sa.Engine, segment: str) -> dict[str, list[tuple[str, datetime]]]:
    """The outbox's changes of a segment of the soak's sandbox, per profile, in order."""
    found: dict[str, list[tuple[str, datetime]]] = {}
    with engine.connect() as connection:
        for profile_id, status, at in connection.execute(sa.text(
                "SELECT profile_id, status, at FROM membership_changes WHERE sandbox = :s AND segment_key = :k "
                "ORDER BY pk"), {"s": SANDBOX, "k": segment}):
            found.setdefault(profile_id, []).append((status, _utc(at)))
    return found


def deliveries_check(engine: sa.Engine, receiver: Receiver, wait: float) -> dict:
    """Wait (at most ``wait`` s) until the receiver holds every change of the outbox, per profile
    in order; then the figures."""
    deadline = time.monotonic() + wait
    while True:
        outbox = outbox_of(engine, ACTIVATED)
        changes, deliveries, duplicates = receiver.received()
        got: dict[str, list[tuple[str, datetime]]] = {}
        for _, change in changes:
            got.setdefault(change["profile_id"], []).append((change["status"], _utc(change["at"])))
        expected = sum(map(len, outbox.values()))
        missing = sum(1 for pid, seq in outbox.items() for n in range(len(seq))
                      if got.get(pid, [])[n:n + 1] != seq[n:n + 1])
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    lags = sorted(max(0.0, arrived - _utc(change["at"]).timestamp()) for arrived, change in changes)

    def pct(p: float) -> float:
        return lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan")

    return {"outbox": expected, "received": len(changes), "missing": missing,
            "in_order": all(got.get(pid) == seq for pid, seq in outbox.items()),
            "extra": sum(1 for pid in got if pid not in outbox), "deliveries": deliveries, "duplicates": duplicates,
            "bad_signatures": receiver.bad_signatures, "lag_p50": pct(0.5), "lag_p99": pct(0.99),
            "lag_max": lags[-1] if lags else float("nan")}


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    accepted_events: set[str] = field(default_factory=set)
    accepted_people: set[str] = field(default_factory=set)
    rejected: int = 0
    expected_rejected: int = 0
    failures: list[str] = field(default_factory=list)  # non-200 answers, transport errors
    records: int = 0


def _now_iso(minutes_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def client_loop(base: str, key: str, datasets: dict, number: int, batch: int, until: float, tally: Tally) -> None:
    rng = random.Random(number)
    headers = {"Authorization": f"Bearer {key}", "X-Sandbox": SANDBOX}
    sequence = 0
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        while time.monotonic() < until:
            profile_request = rng.random() < 0.3
            records, meta = [], []
            for _ in range(batch):
                sequence += 1
                person = f"c{number}-p{rng.randrange(PEOPLE_PER_CLIENT)}"
                identity = [{"namespace": "crm_id", "id": person}]
                bad = rng.random() < 0.02
                if profile_request:
                    attributes = {"loyalty": {"tier": rng.choice(["gold", "silver", "bronze"]),
                                              "points": "many" if bad else rng.randrange(5000)}}
                    records.append({"identities": identity, "attributes": attributes})
                    meta.append(("profile", person, bad))
                else:
                    event_id = f"c{number}-e{sequence}"
                    kind = rng.choice(["productView", "productView", "addToCart", "purchase"])
                    event = {"id": event_id, "type": kind, "timestamp": _now_iso(rng.uniform(0, 60)),
                             "channel": "web", "product": {"sku": "SKU-1", "category": "mens", "size": "L",
                                                           "price": "many" if bad else 19.5}}
                    records.append({"identities": identity, "event": event})
                    meta.append(("event", event_id, bad))
            dataset = datasets["profile" if profile_request else "event"]
            started = time.perf_counter()
            try:
                response = client.post(f"/v1/datasets/{dataset}/records", json={"records": records})
            except httpx.TransportError as exc:
                tally.failures.append(f"transport: {exc}")
                continue
            tally.latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                tally.failures.append(f"{response.status_code}: {response.text[:200]}")
                continue
            tally.records += len(records)
            for (kind, ident, bad), result in zip(meta, response.json()["results"], strict=True):
                tally.expected_rejected += bad
                if result["status"] == "rejected":
                    tally.rejected += 1
                    if not bad:
                        tally.failures.append(f"rejected a valid record: {result}")
                elif bad:
                    tally.failures.append(f"accepted an invalid record: {result}")
                elif kind == "event":
                    tally.accepted_events.add(ident)
                else:
                    tally.accepted_people.add(ident)


def run_backend(name: str, url: str, args, workdir: Path) -> dict:
    server = Server(url, workdir / f"serve-{name}.log", ADMIN)
    engine = create_engine(url)
    try:
        admin = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {ADMIN}", "X-Sandbox": SANDBOX},
                             timeout=60)
        assert admin.post("/v1/sandboxes", json={"name": SANDBOX}).status_code == 201
        datasets = {kind: admin.post("/v1/datasets", json={"name": kind, "kind": kind}).json()["id"]
                    for kind in ("profile", "event")}
        for key, expression in SEGMENTS.items():
            created = admin.post("/v1/segments", json={"key": key, "name": key, "expression": expression,
                                                       "evaluation": "streaming"})
            assert created.status_code == 201, created.text
        keys = [admin.post("/v1/keys", json={"name": f"client {n}", "role": "data_steward"}).json()["key"]
                for n in range(args.clients)]
        receiver = Receiver()
        destination = admin.post("/v1/destinations", json={
            "name": "soak hook", "type": "webhook", "marketing_actions": ["email_targeting"],
            "config": {"url": receiver.url, "secret": SECRET}})
        assert destination.status_code == 201, destination.text
        activated = admin.post("/v1/activations", json={"segment": ACTIVATED, "destination": destination.json()["id"],
                                                        "identities": ["crm_id"]})
        assert activated.status_code == 201, activated.text
        memory: list[tuple[float, int]] = []
        started = time.monotonic()
        until = started + args.minutes * 60
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                memory.append((time.monotonic() - started, proc_status(server.pid).get("VmRSS", 0)))
                stop.wait(5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        tallies = [Tally() for _ in range(args.clients)]
        threads = [threading.Thread(target=client_loop, args=(server.base, keys[n], datasets, n, args.batch, until,
                                                              tallies[n])) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        health = admin.get("/healthz").json()
        webhook = deliveries_check(engine, receiver, DELIVERY_WAIT)
        receiver.stop()
        # accounted for: accepted = stored, rejected = reported
        events = set().union(*(t.accepted_events for t in tallies))
        people = set().union(*(t.accepted_people for t in tallies))
        with engine.connect() as connection:
            stored_events = set(connection.execute(sa.text(
                "SELECT event_id FROM events WHERE dataset_pk = :d"), {"d": datasets["event"]}).scalars())
            stored_people = set(connection.execute(sa.text(
                "SELECT value FROM identities WHERE sandbox = :s AND namespace = 'crm_id'"), {"s": SANDBOX}).scalars())
            from cdp.schema_registry.service import get_schema
            from cdp.segments.batch import members_select

            schema = get_schema(connection=connection, sandbox=SANDBOX)
            as_of = datetime.now(timezone.utc)
            agree = {}
            for key, expression in SEGMENTS.items():
                streaming = set(connection.execute(sa.text(
                    "SELECT m.profile_pk FROM memberships m JOIN segments s ON s.pk = m.segment_pk "
                    "WHERE s.sandbox = :s AND s.key = :k AND m.status IN ('realized', 'existing')"),
                    {"s": SANDBOX, "k": key}).scalars())
                batch = set(connection.execute(members_select(
                    dialect=engine.dialect.name, sandbox=SANDBOX, expression=expression, schema=schema,
                    catalogue=SEGMENTS, as_of=as_of)).scalars())
                agree[key] = (len(streaming), streaming == batch)
        latencies = sorted(l for t in tallies for l in t.latencies)

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

        records = sum(t.records for t in tallies)
        return {
            "backend": name, "clients": args.clients, "minutes": elapsed / 60, "requests": len(latencies),
            "records": records, "rate": records / elapsed, "p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99),
            "max": latencies[-1] * 1000 if latencies else float("nan"),
            "rejected": sum(t.rejected for t in tallies), "expected_rejected": sum(t.expected_rejected for t in tallies),
            "failures": [f for t in tallies for f in t.failures],
            "events_ok": events == stored_events, "events": len(events),
            "people_ok": people <= stored_people, "people": len(people),
            "agree": agree, "health": health.get("state"), "webhook": webhook,
            "memory": [(round(t), rss) for t, rss in memory],
        }
    finally:
        server.stop()
        engine.dispose()


def report(results: list[dict], args) -> str:
    command = os.environ.get("CDP_BENCH_COMMAND", "python bench/bench_soak.py")
    lines = [f"## Load and soak — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"Command: `{command}`; {os.cpu_count()} shared cores (load average {os.getloadavg()[0]:.1f} at the "
             f"end); each client its own key, {args.batch} records a request, streaming segments "
             f"{', '.join(SEGMENTS)}.", "",
             "| backend | clients | minutes | requests | records | records/s | p50 ms | p95 ms | p99 ms | max ms | "
             "rejected (= invalid sent) | failures | stored = accepted | streaming = batch | RSS first → peak → last "
             "MiB | /healthz after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|---|"]
    for r in results:
        rss = [m for _, m in r["memory"] if m]
        memory = (f"{rss[0] / 2**20:.0f} → {max(rss) / 2**20:.0f} → {rss[-1] / 2**20:.0f}" if rss else "n/a")
        agree = all(ok for _, ok in r["agree"].values())
        lines.append(
            f"| {r['backend']} | {r['clients']} | {r['minutes']:.1f} | {r['requests']:,} | {r['records']:,} | "
            f"{r['rate']:.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | "
            f"{r['rejected']:,} ({'=' if r['rejected'] == r['expected_rejected'] else '≠'} {r['expected_rejected']:,}) | "
            f"{len(r['failures'])} | {'yes' if r['events_ok'] and r['people_ok'] else 'NO'} ({r['events']:,} events, "
            f"{r['people']:,} people) | {'yes' if agree else 'NO'} ("
            + ", ".join(f"{k} {n}" for k, (n, _) in r["agree"].items()) + f") | {memory} | {r['health']} |")
    lines += ["", f"Webhook destination activated for `{ACTIVATED}` during the load (a local receiver checking "
              "signatures); delivered = outbox: every change of the outbox received, per profile in its order; lag: "
              "from the membership change to its arrival.", "",
              "| backend | outbox changes | received (distinct deliveries) | deliveries | duplicates | missing | "
              "delivered = outbox | bad signatures | lag p50 s | lag p99 s | lag max s |",
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        w = r["webhook"]
        lines.append(f"| {r['backend']} | {w['outbox']:,} | {w['received']:,} | {w['deliveries']:,} | "
                     f"{w['duplicates']:,} | {w['missing']:,} | {'yes' if w['in_order'] and not w['extra'] else 'NO'} | "
                     f"{w['bad_signatures']} | {w['lag_p50']:.1f} | {w['lag_p99']:.1f} | {w['lag_max']:.1f} |")
    for r in results:
        for failure in r["failures"][:5]:
            lines.append(f"\n{r['backend']}: {failure}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    bench_ingest.LIMIT.update(bench_ingest.LIMITS[False])
    workdir = Path(tempfile.mkdtemp(prefix="cdp-soak-"))
    results = []
    for name in args.backends.split(","):
        if name == "sqlite":
            results.append(run_backend(name, f"sqlite:///{workdir}/soak.db", args, workdir))
        else:
            cluster = start_cluster(fsync=True, extra_options="-c synchronous_commit=on -c full_page_writes=on")
            try:
                results.append(run_backend(name, cluster.create_database("soak"), args, workdir))
            finally:
                cluster.stop()
    text = report(results, args)
    print(text)
    if args.record:
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as out:
            out.write("\n" + text)
    ok = all(not r["failures"] and r["events_ok"] and r["people_ok"] and r["rejected"] == r["expected_rejected"]
             and all(a for _, a in r["agree"].values())
             and not r["webhook"]["missing"] and r["webhook"]["in_order"] and not r["webhook"]["extra"]
             and not r["webhook"]["bad_signatures"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
