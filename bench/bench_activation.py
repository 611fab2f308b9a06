"""Activation: webhook delivery throughput, ingest → removal latency, and a file export of a large
audience, on SQLite (the embedded default).

    python bench/bench_activation.py [--changes 20000] [--samples 300] [--members 1000000] [--record]
    (or: bash bench/run_activation.sh …, which uses the project's .venv)

1. Throughput: ``--changes`` entries of a segment in the outbox (profiles, identities, memberships
   and ``membership_changes`` rows written in bulk, after the activation), then the service's
   delivery loop (``DeliveryWorker``: pump into delivery rows, signed POSTs of 100 changes, each
   marked delivered) to a receiver on a local port (a thread of this process, http.server), timed
   until the receiver holds every change. The reference is what a user would otherwise write: one
   SELECT of the outbox rows with the profiles' email, and the same signed POSTs of 100 over one
   kept-alive connection — no consent, no delivery log, no state: nothing that survives a crash.
2. Latency: a real ``cdp serve`` (subprocess) with a streaming segment ``loyalty.tier = "gold"``
   activated to the receiver; ``--samples`` gold profiles entered first; then one at a time, a
   record making one of them silver is POSTed, and the time from just before that request to the
   arrival of her removal at the receiver is taken (one clock: the receiver is in this process).
   Target: p99 < 100 ms.
3. File export: ``--members`` members of a segment (profiles with email, first name, consent;
   one identity each) written in bulk, then a full CSV export of the activation
   (``export_activation``) in a fresh child process: wall time and the child's peak RSS. The
   reference: a hand-written ``SELECT … json_extract(…)`` streamed into ``csv.writer`` in another
   fresh process.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, markdown_table  # noqa: E402

import cdp.dsl  # noqa: E402,F401 - before cdp.schema
from cdp.activation import service as activation_service  # noqa: E402
from cdp.activation.models import ActivationCreate, FileDestinationCreate, WebhookDestinationCreate  # noqa: E402
from cdp.activation.settings import ActivationSettings  # noqa: E402
from cdp.activation.worker import DeliveryWorker  # noqa: E402
from cdp.schema import luma_schema  # noqa: E402
from cdp.segments import service as segments_service  # noqa: E402
from cdp.segments.models import SegmentCreate  # noqa: E402
from cdp.storage.database import create_engine, write_transaction  # noqa: E402
from cdp.storage.migrate import upgrade  # noqa: E402
from cdp.storage.models import identities, membership_changes, memberships, profiles  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECRET = "bench-secret-0123456789"
NOW = datetime.now(UTC) - timedelta(minutes=5)  # activations start then: already running


class Receiver:
    """Counts the changes that arrive (checking each signature) and when each profile's exit came."""

    def __init__(self):
        self.changes = 0
        self.bad = 0
        self.exits: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                arrived = time.perf_counter()
                good = hmac.compare_digest(self.headers.get("X-CDP-Signature", ""), "sha256=" + hmac.new(
                    SECRET.encode(), raw, hashlib.sha256).hexdigest())
                body = json.loads(raw)
                with receiver.lock:
                    receiver.bad += not good
                    receiver.changes += len(body["changes"])
                    for change in body["changes"]:
                        if change["status"] == "exited":
                            receiver.exits.setdefault(change["identities"].get("crm_id", ["?"])[0], arrived)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not get everything in time")
            time.sleep(0.002)


def _database(folder: Path, name: str) -> tuple[str, sa.Engine]:
    url = f"sqlite:///{folder / name}"
    engine = create_engine(url)
    upgrade(engine)
    return url, engine


def _segment_and_activation(engine, *, destination, attributes) -> int:
    with write_transaction(engine) as connection:
        segments_service.create_segment(connection=connection, sandbox="prod", spec=SegmentCreate(
            key="gold", name="Gold", expression='loyalty.tier = "gold"'), schema=luma_schema(), as_of=NOW)
        made = (activation_service.create_destination(connection=connection, sandbox="prod", spec=destination,
                                                      now=NOW))
        activation_service.create_activation(connection=connection, sandbox="prod", now=NOW, spec=ActivationCreate(
            segment="gold", destination=made.id, attributes=attributes, identities=["crm_id"]))
        return connection.execute(sa.select(sa.func.max(memberships.c.segment_pk))).scalar() or 1


def _members(engine, n: int, *, outbox: bool, chunk: int = 50_000) -> None:
    """``n`` gold profiles (email, first name, consent), one crm_id each, members of segment 1,
    with their outbox rows when ``outbox``."""
    for start in range(0, n, chunk):
        rows = range(start, min(n, start + chunk))
        with write_transaction(engine) as connection:
            base = connection.execute(sa.select(sa.func.coalesce(sa.func.max(profiles.c.pk), 0))).scalar_one()
            connection.execute(profiles.insert(), [
                {"pk": base + 1 + i - start, "sandbox": "prod", "external_id": f"p-{i}", "created_at": NOW,
                 "updated_at": NOW, "attributes": {"loyalty.tier": "gold", "email": f"user{i}@example.com",
                                                   "person.first_name": f"User{i}", "consents.email": "y"}}
                for i in rows])
            connection.execute(identities.insert(), [
                {"sandbox": "prod", "profile_pk": base + 1 + i - start, "namespace": "crm_id", "value": f"C-{i}",
                 "first_seen": NOW} for i in rows])
            connection.execute(memberships.insert(), [
                {"segment_pk": 1, "profile_pk": base + 1 + i - start, "status": "realized", "entered_at": NOW,
                 "updated_at": NOW} for i in rows])
            if outbox:
                connection.execute(membership_changes.insert(), [
                    {"sandbox": "prod", "segment_pk": 1, "segment_key": "gold", "profile_pk": base + 1 + i - start,
                     "profile_id": f"p-{i}", "status": "entered", "at": NOW, "source": "batch"} for i in rows])


def _mark_backfilled(engine) -> None:
    from cdp.storage.models import activations

    with write_transaction(engine) as connection:
        connection.execute(activations.update().values(backfill_after=None))


# ---- 1. throughput -------------------------------------------------------------------------------


def _hand_written(engine, url: str, expected: int, receiver: Receiver) -> float:
    """The reference: the outbox read once, signed POSTs of 100 over one connection."""
    start = time.perf_counter()
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT c.profile_id, c.status, c.at, json_extract(p.attributes, '$.\"email\"') AS email, i.value "
            "FROM membership_changes c JOIN profiles p ON p.pk = c.profile_pk "
            "JOIN identities i ON i.profile_pk = c.profile_pk AND i.namespace = 'crm_id' ORDER BY c.pk")).all()
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    for at in range(0, len(rows), 100):
        body = json.dumps({"destination": 1, "delivery_id": f"hand-{at}", "changes": [
            {"profile_id": r.profile_id, "segment": "gold", "status": r.status, "at": str(r.at),
             "identities": {"crm_id": [r.value]}, "attributes": {"email": r.email}} for r in rows[at:at + 100]]},
            separators=(",", ":")).encode()
        conn.request("POST", "/hook", body=body, headers={
            "Content-Type": "application/json",
            "X-CDP-Signature": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()})
        conn.getresponse().read()
    receiver.wait(lambda: receiver.changes >= expected, 600)
    return time.perf_counter() - start


def throughput(folder: Path, n: int) -> dict:
    receiver = Receiver()
    _url, engine = _database(folder, "throughput.db")
    _segment_and_activation(engine, attributes=["email"], destination=WebhookDestinationCreate(
        name="hook", type="webhook", marketing_actions=["email_targeting"], consent="consents.email",
        config={"url": receiver.url, "secret": SECRET}))
    _mark_backfilled(engine)  # the members arrive through the outbox below, not the backfill
    _members(engine, n, outbox=True)
    worker = DeliveryWorker(engine, settings=ActivationSettings(poll_seconds=0.01))
    start = time.perf_counter()
    worker.start()
    try:
        receiver.wait(lambda: receiver.changes >= n, 600)
        ours = time.perf_counter() - start
    finally:
        worker.stop()
    assert receiver.bad == 0
    before = receiver.changes
    hand = _hand_written(engine, receiver.url, before + n, receiver)
    engine.dispose()
    return {"changes": n, "ours_s": ours, "hand_s": hand}


# ---- 2. latency ----------------------------------------------------------------------------------


def latency(folder: Path, samples: int) -> dict:
    import httpx2 as httpx

    receiver = Receiver()
    url = f"sqlite:///{folder / 'latency.db'}"
    with socketless_port() as port:
        pass
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(CDP_DATABASE_URL=url, CDP_BOOTSTRAP_ADMIN_KEY="cdp_benchadmin01_" + "B" * 40)
    server = __import__("subprocess").Popen(
        [str(Path(sys.executable).parent / "cdp"), "serve", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=__import__("subprocess").DEVNULL, stderr=open(folder / "serve.log", "w"))
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, headers={"Authorization": "Bearer cdp_benchadmin01_" + "B" * 40},
                          timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((folder / "serve.log").read_text())
            time.sleep(0.1)
        crm = client.post("/v1/datasets", json={"name": "CRM", "kind": "profile"}).json()["id"]
        assert client.post("/v1/segments", json={"key": "gold", "name": "Gold", "expression": 'loyalty.tier = "gold"',
                                                 "evaluation": "streaming"}).status_code == 201
        destination = client.post("/v1/destinations", json={
            "name": "hook", "type": "webhook", "marketing_actions": ["email_targeting"],
            "config": {"url": receiver.url, "secret": SECRET}}).json()["id"]
        assert client.post("/v1/activations", json={"segment": "gold", "destination": destination,
                                                    "identities": ["crm_id"]}).status_code == 201
        for start in range(0, samples, 500):
            records = [{"identities": [{"namespace": "crm_id", "id": f"C-{i}"}],
                        "attributes": {"loyalty": {"tier": "gold"}}} for i in range(start, min(samples, start + 500))]
            assert client.post(f"/v1/datasets/{crm}/records", json={"records": records}).status_code == 200
        receiver.wait(lambda: receiver.changes >= samples, 120)
        found = []
        for i in range(samples):
            sent = time.perf_counter()
            response = client.post(f"/v1/datasets/{crm}/records", json={
                "identities": [{"namespace": "crm_id", "id": f"C-{i}"}], "attributes": {"loyalty": {"tier": "silver"}}})
            assert response.status_code == 200, response.text
            receiver.wait(lambda: f"C-{i}" in receiver.exits, 30)
            found.append((receiver.exits[f"C-{i}"] - sent) * 1000)
            time.sleep(0.01)
    finally:
        client.close()
        server.terminate()
        server.wait(15)
    assert receiver.bad == 0
    return {"samples": samples, "ms": found}


class socketless_port:  # noqa: N801 - a context that hands out a free port
    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None


# ---- 3. file export ------------------------------------------------------------------------------


def _export_child(url: str, root: str, queue) -> None:
    from cdp.activation.export import export_activation

    engine = create_engine(url)
    start = time.perf_counter()
    export_activation(engine, 1, now=NOW + timedelta(minutes=1), settings=ActivationSettings(export_root=Path(root)))
    queue.put((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _hand_child(url: str, root: str, queue) -> None:
    start = time.perf_counter()
    path = Path(root) / "hand.csv"
    engine = create_engine(url)
    with engine.connect() as connection, open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["profile_id", "identity.crm_id", "email", "person.first_name"])
        result = connection.execution_options(stream_results=True, yield_per=10_000).execute(sa.text(
            "SELECT p.external_id, i.value, json_extract(p.attributes, '$.\"email\"'), "
            "json_extract(p.attributes, '$.\"person.first_name\"') FROM memberships m "
            "JOIN profiles p ON p.pk = m.profile_pk JOIN identities i ON i.profile_pk = p.pk AND i.namespace = 'crm_id' "
            "WHERE m.segment_pk = 1 AND m.status IN ('realized', 'existing') "
            "AND json_extract(p.attributes, '$.\"consents.email\"') = 'y' ORDER BY m.profile_pk"))
        for row in result:
            writer.writerow(row)
    queue.put((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _in_child(target, *args) -> tuple[float, int]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def file_export(folder: Path, n: int) -> dict:
    url, engine = _database(folder, "export.db")
    root = folder / "exports"
    _segment_and_activation(engine, attributes=["email", "person.first_name"], destination=FileDestinationCreate(
        name="files", type="file", marketing_actions=["email_targeting"], consent="consents.email",
        config={"directory": "gold", "format": "csv", "mode": "full"}))
    start = time.perf_counter()
    _members(engine, n, outbox=False)
    load = time.perf_counter() - start
    engine.dispose()
    ours, ours_rss = _in_child(_export_child, url, str(root))
    hand, hand_rss = _in_child(_hand_child, url, str(root))
    [written] = [p for p in (root / "gold").iterdir() if p.suffix == ".csv"]
    rows = sum(1 for _ in open(written)) - 1
    assert rows == n, (rows, n)
    return {"members": n, "load_s": load, "ours_s": ours, "ours_rss_mb": ours_rss / 1024, "hand_s": hand,
            "hand_rss_mb": hand_rss / 1024, "bytes": written.stat().st_size}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(command: str, started: datetime, results: dict) -> str:
    lines = [f"## Activation — {started:%Y-%m-%d %H:%M} UTC", "",
             f"`{command}` on {cpu_model()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, SQLite "
             f"{__import__('sqlite3').sqlite_version}.", ""]
    if "throughput" in results:
        t = results["throughput"]
        lines += ["### Webhook delivery throughput (outbox → signed POSTs of 100 → local receiver)", "",
                  markdown_table(["", "changes", "seconds", "changes/s"], [
                      ["cdp (DeliveryWorker: pump, delivery log, POST, mark delivered)", t["changes"],
                       f"{t['ours_s']:.2f}", f"{t['changes'] / t['ours_s']:,.0f}"],
                      ["hand-written (one SELECT, POSTs, no state)", t["changes"], f"{t['hand_s']:.2f}",
                       f"{t['changes'] / t['hand_s']:,.0f}"]]), ""]
    if "latency" in results:
        ms = results["latency"]["ms"]
        lines += [f"### Ingest → removal at the receiver (`cdp serve`, {len(ms)} sequential exits, ms)", "",
                  markdown_table(["p50", "p90", "p99", "max", "target (p99)"], [[
                      f"{statistics.median(ms):.1f}", f"{pct(ms, 0.9):.1f}", f"{pct(ms, 0.99):.1f}",
                      f"{max(ms):.1f}", "< 100 ms: " + ("PASS" if pct(ms, 0.99) < 100 else "FAIL")]]), ""]
    if "export" in results:
        e = results["export"]
        lines += [f"### Full CSV export of {e['members']:,} members (fresh process each; bulk load took "
                  f"{e['load_s']:.0f} s)", "",
                  markdown_table(["", "seconds", "rows/s", "peak RSS (MB)"], [
                      ["cdp (`export_activation`: consent, mapping, temp file + rename + manifest)",
                       f"{e['ours_s']:.1f}", f"{e['members'] / e['ours_s']:,.0f}", f"{e['ours_rss_mb']:.0f}"],
                      ["hand-written (one streamed SELECT with json_extract → csv.writer)", f"{e['hand_s']:.1f}",
                       f"{e['members'] / e['hand_s']:,.0f}", f"{e['hand_rss_mb']:.0f}"]]),
                  f"File: {e['bytes'] / 1e6:.0f} MB.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["throughput", "latency", "export"])
    parser.add_argument("--record", action="store_true", help="append the report to bench/RESULTS.md")
    args = parser.parse_args(argv)
    command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_activation.py " + " ".join(sys.argv[1:])
    started = datetime.now(UTC)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="cdp-bench-activation-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "throughput"):
            results["throughput"] = throughput(folder, args.changes)
            print(results["throughput"], flush=True)
        if args.only in (None, "latency"):
            results["latency"] = latency(folder, args.samples)
            print({k: v for k, v in results["latency"].items() if k != "ms"}, flush=True)
        if args.only in (None, "export"):
            results["export"] = file_export(folder, args.members)
            print(results["export"], flush=True)
    text = report(command, started, results)
    print(text)
    if args.record:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + text)
        print("(appended to bench/RESULTS.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
