"""Ingestion over HTTP: a real ``cdp serve`` on SQLite and on PostgreSQL, fed through its API.

    bash bench/run_ingest.sh [--backend sqlite|postgresql|both] [--quick] [--only stream,csv,identity] [--record]
                             [--stream-records N,M] [--csv-rows N] [--csv-pad-bytes N] [--people N]
    (or: .venv/bin/python bench/bench_ingest.py …)

For each backend, a fresh database (an SQLite file in a temporary folder; a throwaway PostgreSQL
cluster, ``cdp.devtools.postgres.start_cluster``, stopped at the end) and one ``cdp serve``
subprocess on a free local port (as tests/api/test_server.py starts it), with a bootstrap admin
key fixed by ``CDP_BOOTSTRAP_ADMIN_KEY``. Datasets are created through the API with that key.
Every section works in sandboxes of its own, so its profiles are its own.

A. Streaming (``POST /v1/datasets/{id}/records``, ``{"records": [...]}``): Luma event records
   (``generate_profiles``' events, sorted by time across profiles: many people at once, as a
   collector sees them), each with the person's web ``ecid`` and, for logins, checkouts,
   purchases, e-mail events and 15 % of the others, their ``email``. Four scenarios per
   backend: requests of 1 and of 500 records, 1 client and 8 concurrent clients (threads, one
   ``httpx.Client`` each, taking requests from one shared queue). Each scenario replays the same
   records into an empty sandbox of its own, so 1 and 8 clients do the same work. A fifth, reported
   on its own line: requests of 500 from 2 clients whose streams name disjoint people (every other
   person by first appearance, each client into a dataset of its own: two sources' customers).
   Request bodies are encoded before the clock starts. Every response must be 200 with every
   record accepted (non-200 answers and rejected / duplicate records are counted, never retried),
   and afterwards the events stored for the scenario's sandbox (counted with SQLAlchemy on the
   database) must equal the records sent.
B. A CSV file of N CRM contacts (1,000,000; 50,000 with --quick): crm_id and email identities,
   first/last name, loyalty tier and points (for ~60 %), city; uploaded to a profile dataset with
   a mapping (``POST /v1/datasets/{id}/batches``) and polled through the list endpoint
   ``GET /v1/datasets/{id}/batches`` until the job ends. Reported: time from the start of the
   upload to ``succeeded`` (and its phases), rows/s and the server's peak RSS (``VmHWM`` in
   /proc, reset just before the upload through ``clear_refs``; the highest sampled ``VmRSS`` when
   that reset is not allowed). Checked: the job's counts, the profiles and identities stored.
C. Identity graph: P people (20,000; 2,000 with --quick) with three identities each (ecid,
   email, crm_id) and 5·P events, each for a person drawn at random and carrying one or two of
   that person's identities drawn at random, in random order (fixed seed), streamed by 1 client
   in requests of 500 records. For each tenth of the stream: its time, the profiles in the
   database at its end, what a correct merge would give (connected components of the identities
   seen so far, by a union-find over the generated stream) and what a service that never merges
   would give (a record goes to the first profile owning one of its identities). Checked at the
   end: the database's profiles = the union-find's components.

Sizes (records): A 200 and 5,000 (--quick) or 2,000 and 50,000 per scenario for requests of 1 and
of 500 records; B and C as above (``--csv-rows`` and ``--people`` override them; ``--csv-pad-bytes N``
adds an unmapped ``notes`` column of N characters to every row, for a file of ~1 GiB within the
1,000,000 rows a file may hold: ``--csv-rows 1000000 --csv-pad-bytes 900``, the peak-memory check).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import queue
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import sqlalchemy as sa
from _common import cpu_model, markdown_table

from cdp.demo import generate_profiles
from cdp.devtools.postgres import start_cluster
from cdp.storage.database import create_engine

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "RESULTS.md"
CDP = str(Path(sys.executable).parent / "cdp")

SEED = 42
GiB = 1024 ** 3
BODY_LIMIT = 2 * GiB  # CDP_MAX_BODY_BYTES and CDP_MAX_FILE_BYTES for the server started here
CLIENTS = (1, 8)
REQUEST_SIZES = (1, 500)
IDENTITY_REQUEST = 500
EVENTS_PER_PERSON = 5
SIZES = {
    False: {"stream": {1: 2_000, 500: 50_000}, "csv": 1_000_000, "people": 20_000},
    True: {"stream": {1: 200, 500: 4_000}, "csv": 5_000, "people": 1_000},
}
SECTIONS = ("stream", "csv", "identity")
LIMIT: dict = {}  # LIMITS[quick], set by main
EMAIL_EVENT_TYPES = {"login", "checkout", "purchase", "emailSent", "emailOpen", "emailClick"}
# PostgreSQL: a throwaway cluster (start_cluster: fsync=off, synchronous_commit=off,
# full_page_writes=off) with memory for a 2-core / 24 GiB box and no checkpoint in the middle.
PG_SETTINGS = {"shared_buffers": "1GB", "work_mem": "16MB", "maintenance_work_mem": "256MB",
               "max_wal_size": "8GB", "checkpoint_timeout": "30min", "jit": "off"}
# Bounds, so that a service that stalls (a deadlock loop, a lock never released) ends the run with
# a report instead of hanging it: per request, per streaming scenario (no new request is sent after
# it), and for a CSV job (at least CSV_MIN_RATE rows/s).
LIMITS = {False: {"request": 300, "scenario": 900}, True: {"request": 60, "scenario": 90}}
CSV_MIN_TIMEOUT_S = 300
CSV_MIN_RATE = 20


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def one_run_at_a_time():
    """Two ingestion runs would measure each other: a second run waits for the first."""
    import fcntl

    DATA.mkdir(parents=True, exist_ok=True)
    lock = (DATA / "bench_ingest.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another bench_ingest run holds bench/data/bench_ingest.lock: waiting for it to finish")
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


# ---- /proc ---------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM … of a process, in bytes ({} when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Vm") and line.endswith("kB"):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU of a process, of its reaped children (cutime, cstime) and of its live children: a
    PostgreSQL postmaster and its backends, past and present."""
    fields = _stat_fields(root_pid)
    if not fields:
        return 0.0
    total = sum(int(x) for x in fields[11:15])
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            child = _stat_fields(int(entry.name))
            if child and child[1] == str(root_pid):
                total += int(child[11]) + int(child[12])
    return total / _TICK


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:,.0f} MiB" if n >= 10 * 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MiB"


# ---- the server ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``cdp serve`` in a subprocess, as tests/api/test_server.py starts it."""

    def __init__(self, url: str, log_path: Path, admin_key: str, workers: int = 1):
        self.url = url
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_") or k == "CDP_PG_BIN"}
        env.update(CDP_DATABASE_URL=url, CDP_BOOTSTRAP_ADMIN_KEY=admin_key, CDP_MAX_BODY_BYTES=str(BODY_LIMIT),
                   CDP_MAX_FILE_BYTES=str(BODY_LIMIT))
        with open(log_path, "w") as stderr:
            self.process = subprocess.Popen([CDP, "serve", "--port", str(self.port), "--log-level", "warning",
                                             *(["--workers", str(workers)] if workers > 1 else [])],
                                            env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"cdp serve exited {self.process.returncode}: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"cdp serve did not answer within 120 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        # CDP_BENCH_PYSPY=DIR: sample the server with py-spy (collapsed stacks, DIR/server-<pid>.txt;
        # bench/profile_report.py sums them); py-spy comes with the `bench` extra
        self.profiler = None
        spy_dir = os.environ.get("CDP_BENCH_PYSPY")
        if spy_dir:
            Path(spy_dir).mkdir(parents=True, exist_ok=True)
            self.profiler = subprocess.Popen(
                [os.environ.get("CDP_BENCH_PYSPY_BIN") or str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(self.process.pid), "--rate",
                 "250", "--format", "raw", "--output", str(Path(spy_dir) / f"server-{self.process.pid}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Api:
    """Calls with the admin key in one sandbox (created here: sandboxes exist before use)."""

    def __init__(self, base: str, key: str, sandbox: str):
        self.headers = {"Authorization": f"Bearer {key}", "X-Sandbox": sandbox}
        self.client = httpx.Client(base_url=base, headers=self.headers, timeout=LIMIT["request"])
        response = self.client.post("/v1/sandboxes", json={"name": sandbox})
        if response.status_code not in (201, 409):  # 409: made by an earlier section
            raise RuntimeError(f"creating sandbox {sandbox!r}: {response.status_code} {response.text[:500]}")

    def create_dataset(self, name: str, kind: str) -> int:
        response = self.client.post("/v1/datasets", json={"name": name, "kind": kind})
        if response.status_code != 201:
            raise RuntimeError(f"creating dataset {name!r}: {response.status_code} {response.text[:500]}")
        return response.json()["id"]

    def close(self) -> None:
        self.client.close()


@dataclass
class Backend:
    name: str  # sqlite | postgresql
    url: str
    server: Server
    key: str
    engine: sa.Engine
    db_pid: int | None = None  # the postmaster, for its CPU time
    version: str = ""
    log_lines: list[str] = field(default_factory=list)

    restarts: int = 0

    def db_cpu(self) -> float | None:
        return tree_cpu_seconds(self.db_pid) if self.db_pid else None

    def deadlocks(self) -> int | None:
        if self.name != "postgresql":
            return None
        return self.count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")

    def restart(self) -> None:
        """A new ``cdp serve`` on the same database (its stuck requests die with the old one)."""
        log_path = self.server.log_path
        self.server.stop()
        self.restarts += 1
        self.log_lines.append(log_path.read_text(errors="replace"))
        self.server = Server(self.url, log_path, self.key)

    def count(self, sql: str, **params) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar_one()


# ---- A. streaming --------------------------------------------------------------------------------

def event_stream(count: int, seed: int) -> list[dict]:
    """``count`` Luma event records, in time order across people (see the module doc)."""
    rng = random.Random(seed)
    records: list[tuple[str, dict]] = []
    for document in generate_profiles(max(10, count // 4), seed=seed):
        by_namespace: dict[str, str] = {}
        for identity in document["identities"]:
            by_namespace.setdefault(identity["namespace"], identity["id"])
        for event in document["events"]:
            identities = [{"namespace": "ecid", "id": by_namespace["ecid"]}]
            email = by_namespace.get("email")
            if email and (event["type"] in EMAIL_EVENT_TYPES or rng.random() < 0.15):
                identities.append({"namespace": "email", "id": email})
            records.append((event["timestamp"], {"identities": identities, "event": event}))
        if len(records) >= count:
            break
    if len(records) < count:
        raise RuntimeError(f"the generator gave {len(records)} events, {count} wanted")
    records.sort(key=lambda pair: pair[0])
    return [record for _, record in records[:count]]


def disjoint_halves(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The records of every other person (by first appearance; a person is its ecid, every record's
    first identity) in each half, in the stream's order: two streams naming disjoint people."""
    order: dict[str, int] = {}
    halves: tuple[list[dict], list[dict]] = ([], [])
    for record in records:
        person = record["identities"][0]["id"]
        halves[order.setdefault(person, len(order)) % 2].append(record)
    return halves


def encode_requests(records: list[dict], size: int) -> list[tuple[bytes, int]]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    return [(dumps({"records": records[i:i + size]}).encode(), len(records[i:i + size]))
            for i in range(0, len(records), size)]


@dataclass
class Outcome:
    """What the clients saw, over a run of requests."""
    requests: int = 0
    records: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    warnings: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # "<status> <code>: <message>" → how many
    latencies: list[float] = field(default_factory=list)
    unsent: int = 0  # records of requests not sent (the scenario's time limit passed)

    @property
    def non_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    def add(self, other: Outcome) -> None:
        for name in ("requests", "records", "accepted", "rejected", "duplicates", "warnings", "unsent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        for text, n in other.errors.items():
            self.errors[text] = self.errors.get(text, 0) + n
        self.latencies += other.latencies

    def count_error(self, text: str) -> None:
        self.errors[text] = self.errors.get(text, 0) + 1

    def sent(self, started: float, status: int, n: int) -> None:
        """A request's time, status and records (``status`` 0: it did not get through)."""
        self.latencies.append(time.perf_counter() - started)
        self.requests += 1
        self.records += n
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def answered(self, status: int, answer: Any, raw_text: str) -> None:
        """An ingest answer's counts, or its error (``answer``: the decoded JSON, {} if not JSON)."""
        if status != 200:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            self.count_error(f"{status} {error.get('code', '?')}: {str(error.get('message', raw_text))[:200]}")
            return
        self.accepted += answer.get("accepted", 0)
        self.rejected += answer.get("rejected", 0)
        self.duplicates += answer.get("duplicates", 0)
        for result in answer.get("results", ()):
            self.warnings += len(result.get("warnings") or ())
            if result.get("status") == "rejected":
                self.count_error("rejected: " + "; ".join(f"{e['path']}: {e['message']}"
                                                          for e in result.get("errors", []))[:200])


def send(client: httpx.Client, path: str, body: bytes, n: int, out: Outcome) -> None:
    started = time.perf_counter()
    try:
        response = client.post(path, content=body)
        status = response.status_code
    except httpx.HTTPError as exc:
        response, status = None, 0
        out.count_error(f"transport error: {type(exc).__name__}: {str(exc)[:200]}")
    out.sent(started, status, n)
    if response is None:
        return
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    out.answered(status, answer, response.text)


def _lean_send(connection, method: str, path: str, body: bytes, n: int, out: Outcome) -> None:
    """``send``'s bookkeeping over a bench/http_load.py connection."""
    started = time.perf_counter()
    try:
        status, data = connection.request(method, path, body)
    except OSError as exc:
        connection.close()  # the next request opens another connection
        status, data = 0, None
        out.count_error(f"transport error: {type(exc).__name__}: {str(exc)[:200]}")
    out.sent(started, status, n)
    if data is None:
        return
    if method == "GET":  # the trivial GET of bench_baseline.py: its answer is a dataset
        out.accepted += 1 if status == 200 else 0
        return
    try:
        answer = json.loads(data)
    except ValueError:
        answer = {}
    out.answered(status, answer, str(data[:200]))


def run_clients(base: str, headers: dict, path: str, bodies: list[tuple[bytes, int]], clients: int,
                client: str = "httpx", method: str = "POST",
                own: list[tuple[str, list[tuple[bytes, int]]]] | None = None) -> tuple[float, Outcome]:
    """``clients`` threads take the requests from one queue, each on one keep-alive connection:
    ``client="httpx"`` an httpx.Client each (``send``), ``"lean"`` bench/http_load.py's
    LeanConnection (a fraction of httpx's CPU a request); (wall, outcome). ``own``: instead, client
    i sends ``own[i]``'s bodies to ``own[i]``'s path, in order (``path``, ``bodies`` and ``clients``
    unused)."""
    from http_load import LeanConnection

    if own is None:
        work: queue.SimpleQueue = queue.SimpleQueue()
        for item in bodies:
            work.put(item)
        lanes = [(path, work)] * clients
    else:
        lanes = []
        for lane_path, lane_bodies in own:
            lane: queue.SimpleQueue = queue.SimpleQueue()
            for item in lane_bodies:
                lane.put(item)
            lanes.append((lane_path, lane))
        clients = len(lanes)
    outcomes = [Outcome() for _ in range(clients)]
    ready = threading.Barrier(clients + 1)
    headers = {**headers, "Content-Type": "application/json"}

    deadline = [0.0]

    def worker(out: Outcome, path: str, work: queue.SimpleQueue) -> None:
        if client == "lean":
            connection = LeanConnection.to(base, headers, timeout=LIMIT["request"])

            def one(body: bytes, n: int) -> None:
                _lean_send(connection, method, path, body, n, out)
        else:
            connection = httpx.Client(base_url=base, headers=headers, timeout=LIMIT["request"])

            def one(body: bytes, n: int) -> None:
                if method == "POST":
                    send(connection, path, body, n, out)
                else:
                    _httpx_get(connection, path, n, out)
        with connection:
            connection.request("GET", "/healthz")  # the connection is open before the clock starts
            ready.wait()
            while True:
                try:
                    body, n = work.get_nowait()
                except queue.Empty:
                    return
                if time.perf_counter() > deadline[0]:
                    out.unsent += n
                    continue
                one(body, n)

    threads = [threading.Thread(target=worker, args=(o, *lanes[i]), name=f"bench-client-{i}")
               for i, o in enumerate(outcomes)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + LIMIT["scenario"]
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    total = Outcome()
    for o in outcomes:
        total.add(o)
    return wall, total


def _httpx_get(client: httpx.Client, path: str, n: int, out: Outcome) -> None:
    started = time.perf_counter()
    response = client.get(path)
    out.latencies.append(time.perf_counter() - started)
    out.requests += 1
    out.records += n
    out.statuses[response.status_code] = out.statuses.get(response.status_code, 0) + 1
    out.accepted += 1 if response.status_code == 200 else 0


@dataclass
class StreamResult:
    backend: str
    size: int
    clients: int
    wall: float
    outcome: Outcome
    stored: int
    profiles: int
    server_cpu: float
    db_cpu: float | None
    client_cpu: float
    deadlocks: int | None  # PostgreSQL: pg_stat_database.deadlocks during the scenario
    restarted: bool = False  # the server was restarted after this scenario (requests left hanging)
    disjoint: bool = False  # each client its own half of the people, into its own dataset (two sources)

    @property
    def rate(self) -> float:
        """Accepted records per second (= records sent per second when every check passes)."""
        return self.outcome.accepted / self.wall if self.wall else 0.0

    @property
    def ok(self) -> bool:
        o = self.outcome
        return (o.non_200 == 0 and o.rejected == 0 and o.duplicates == 0 and o.accepted == o.records
                and o.unsent == 0 and self.stored == o.records)


def section_stream(backend: Backend, sizes: dict[int, int], seed: int) -> list[StreamResult]:
    results = []
    for size in REQUEST_SIZES:
        records = event_stream(sizes[size], seed)
        bodies = encode_requests(records, size)
        # 500 a request: also 2 clients whose streams name disjoint people (two sources' customers,
        # each into a dataset of its own): requests that share no identity can overlap their
        # Python and the database's work (bench/RESULTS.md, session 17)
        for clients, disjoint in [*((c, False) for c in CLIENTS), *([(2, True)] if size > 1 else [])]:
            sandbox = f"stream-r{size}-c{clients}" + ("-disjoint" if disjoint else "")
            api = Api(backend.server.base, backend.key, sandbox)
            if disjoint:
                halves = disjoint_halves(records)
                own = [(f"/v1/datasets/{api.create_dataset(f'Web events ({size}/request, source {i + 1})', 'event')}"
                        f"/records", encode_requests(half, size)) for i, half in enumerate(halves)]
                dataset = None
            else:
                dataset = api.create_dataset(f"Web events ({size}/request, {clients} clients)", "event")
                own = None
            api.close()
            log(f"{backend.name}: A. {len(records):,} records in {len(bodies):,} requests of {size}, "
                f"{clients} client(s)" + (" of disjoint people" if disjoint else ""))
            cpu0, db0, client0 = cpu_seconds(backend.server.pid), backend.db_cpu(), time.process_time()
            deadlocks0 = backend.deadlocks()
            wall, outcome = run_clients(backend.server.base, api.headers, f"/v1/datasets/{dataset}/records", bodies,
                                        clients, own=own)
            cpu1, db1, client1 = cpu_seconds(backend.server.pid), backend.db_cpu(), time.process_time()
            deadlocks1 = backend.deadlocks()
            restarted = False
            if outcome.unsent or any("Timeout" in text for text in outcome.errors):
                # requests left hanging in the server: a clean server for what follows
                log(f"{backend.name}: A. requests timed out or were not sent: restarting cdp serve")
                backend.restart()
                restarted = True
            stored = backend.count("SELECT count(*) FROM events AS e JOIN profiles AS p ON p.pk = e.profile_pk "
                                   "WHERE p.sandbox = :s", s=sandbox)
            profiles = backend.count("SELECT count(*) FROM profiles WHERE sandbox = :s", s=sandbox)
            result = StreamResult(backend.name, size, clients, wall, outcome, stored, profiles, cpu1 - cpu0,
                                  None if db0 is None else db1 - db0, client1 - client0,
                                  None if deadlocks0 is None else deadlocks1 - deadlocks0, restarted, disjoint)
            log(f"{backend.name}: A. {result.rate:,.0f} records/s; {outcome.non_200} non-200, {outcome.rejected} "
                f"rejected, {outcome.unsent:,} not sent, {stored:,} stored of {len(records):,}"
                + (f", {result.deadlocks} deadlocks" if result.deadlocks else "") + ("" if result.ok else " — FAILED"))
            for text, n in sorted(outcome.errors.items(), key=lambda kv: -kv[1])[:5]:
                log(f"    {n}× {text}")
            results.append(result)
    return results


# ---- B. CSV --------------------------------------------------------------------------------------

FIRST = ["Sarah", "Mia", "Emma", "Olivia", "Ava", "Sophia", "Chloe", "Grace", "Zoe", "Aisha", "Yuki", "Elena",
         "Priya", "Liam", "Noah", "Oliver", "James", "Lucas", "Henry", "Mateo", "Jack", "Leo", "Arjun", "Kenji",
         "Omar", "Félix", "Hugo", "Alex", "Jordan", "Riley"]
LAST = ["Rose", "Chen", "Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Martinez", "Lopez",
        "Wilson", "Anderson", "Taylor", "Lee", "Walker", "Hall", "King", "Patel", "Kim", "Nguyen", "Müller",
        "Schmidt", "Dubois", "O'Brien", "Tanaka"]
CITIES = ["Portland", "Seattle", "San Francisco", "New York", "Austin", "Chicago", "Denver", "Boston", "Toronto",
          "Vancouver", "London", "Manchester", "Berlin", "Munich", "Paris", "Lyon", "Sydney", "Melbourne"]
DOMAINS = ["example.com", "gmail.com", "yahoo.com", "outlook.com", "luma.com", "icloud.com"]
TIERS = ["bronze"] * 45 + ["silver"] * 30 + ["gold"] * 18 + ["platinum"] * 7
CSV_HEADER = ["crm_id", "email", "first_name", "last_name", "loyalty_tier", "loyalty_points", "city"]
CSV_MAPPING = {
    "crm_id": "identity.crm_id",
    "email": {"to": "identity.email", "transforms": ["trim", "lower"]},
    "first_name": "person.first_name",
    "last_name": "person.last_name",
    "loyalty_tier": {"to": "loyalty.tier", "transforms": ["trim", "lower"]},
    "loyalty_points": "loyalty.points",
    "city": "home_address.city",
}


CSV_PAD = {"bytes": 0}  # --csv-pad-bytes: an unmapped `notes` column this wide on every row


def crm_csv(rows: int, seed: int) -> Path:
    """The CSV file of ``rows`` contacts, written once into bench/data/ and reused. With
    ``CSV_PAD["bytes"]`` a `notes` column of that many characters (not mapped: a wide export's
    other columns) makes the file as large as wanted without more rows (at most 1,000,000 a file)."""
    DATA.mkdir(parents=True, exist_ok=True)
    pad = CSV_PAD["bytes"]
    path = DATA / (f"ingest-crm-{rows}-seed{seed}.csv" if not pad else f"ingest-crm-{rows}-pad{pad}-seed{seed}.csv")
    if path.exists():
        return path
    log(f"B. writing {rows:,} CRM contacts to {path.relative_to(ROOT)}")
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER + (["notes"] if pad else []))
        filler = "".join(rng.choice("abcdefghij klmnopqrstuvwxyz") for _ in range(pad + 997)) if pad else ""
        for i in range(1, rows + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            local = re.sub(r"[^a-z]", "", f"{first}.{last}".lower().replace("é", "e").replace("ü", "u"))
            email = f"{local}{i}@{rng.choice(DOMAINS)}"
            member = rng.random() < 0.6
            tier = rng.choice(TIERS) if member else ""
            points = str(rng.randint(0, 20_000)) if member else ""
            writer.writerow([f"CRM-{i:07d}", email, first, last, tier.capitalize() if rng.random() < 0.1 else tier,
                             points, rng.choice(CITIES)] + ([filler[i % 997:i % 997 + pad]] if pad else []))
    os.replace(tmp, path)
    return path


@dataclass
class CsvResult:
    backend: str
    rows: int
    file_bytes: int
    upload_s: float  # upload start → 202
    seen_processing_s: float | None  # upload start → first poll that saw "processing"
    total_s: float  # upload start → first poll that saw the end
    job: dict
    server_phases: dict  # from the job's own timestamps
    peak_rss: int | None
    peak_how: str
    rss_before: int
    profiles: int
    identities: int
    server_cpu: float
    db_cpu: float | None
    file_limit: str

    @property
    def ok(self) -> bool:
        j = self.job
        return (j.get("status") == "succeeded" and j.get("accepted_rows") == self.rows and j.get("rejected_rows") == 0
                and self.profiles == self.rows and self.identities == 2 * self.rows)


def file_limit_setting() -> str:
    text = (ROOT / "cdp" / "settings.py").read_text()
    if "max_file_bytes" in text:
        return "CDP_MAX_FILE_BYTES (and CDP_MAX_BODY_BYTES) = 2 GiB"
    return "CDP_MAX_BODY_BYTES = 2 GiB (CDP_MAX_FILE_BYTES not in cdp/settings.py yet; set anyway)"


def section_csv(backend: Backend, rows: int, seed: int) -> CsvResult:
    path = crm_csv(rows, seed)
    sandbox = "csv"
    api = Api(backend.server.base, backend.key, sandbox)
    dataset = api.create_dataset("CRM contacts", "profile")
    pid = backend.server.pid
    rss_before = proc_status(pid).get("VmRSS", 0)
    try:  # "5" resets the peak resident set size (VmHWM) to the current one (Linux ≥ 4.0)
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        peak_how = "VmHWM, reset before the upload"
    except OSError:
        peak_how = "highest VmRSS sampled every 0.2 s"
    sampled = [rss_before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sampled.append(proc_status(pid).get("VmRSS", 0))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    log(f"{backend.name}: B. uploading {path.name} ({mib(path.stat().st_size)}, {rows:,} rows)")
    cpu0, db0 = cpu_seconds(pid), backend.db_cpu()
    started = time.perf_counter()
    with path.open("rb") as f:
        response = api.client.post(f"/v1/datasets/{dataset}/batches", files={"file": (path.name, f, "text/csv")},
                                   data={"mapping": json.dumps(CSV_MAPPING)})
    upload_s = time.perf_counter() - started
    if response.status_code != 202:
        stop.set()
        raise RuntimeError(f"{backend.name}: upload answered {response.status_code}: {response.text[:1000]}")
    batch_id = response.json()["id"]
    log(f"{backend.name}: B. 202 after {upload_s:.1f} s (batch {batch_id}); polling /v1/datasets/{dataset}/batches")
    seen_processing = None
    job: dict = {}
    while True:
        listed = api.client.get(f"/v1/datasets/{dataset}/batches")
        now = time.perf_counter() - started
        if listed.status_code == 200:
            job = next((j for j in listed.json()["items"] if j["id"] == batch_id), {})
            if job.get("status") == "processing" and seen_processing is None:
                seen_processing = now
            if job.get("status") in ("succeeded", "failed"):
                break
        else:
            log(f"{backend.name}: B. polling answered {listed.status_code}: {listed.text[:200]}")
        if now > max(CSV_MIN_TIMEOUT_S, rows / CSV_MIN_RATE):
            job = {**job, "status": f"timeout after {now:.0f} s (last seen: {job.get('status')})"}
            break
        time.sleep(0.5)
    total_s = time.perf_counter() - started
    cpu1, db1 = cpu_seconds(pid), backend.db_cpu()
    stop.set()
    sampler.join()
    status = proc_status(pid)
    peak = status.get("VmHWM") if peak_how.startswith("VmHWM") else max(sampled)
    api.close()
    phases = {}
    try:
        created = datetime.fromisoformat(job["created_at"])
        if job.get("started_at"):
            phases["queued"] = (datetime.fromisoformat(job["started_at"]) - created).total_seconds()
            if job.get("finished_at"):
                phases["processing"] = (datetime.fromisoformat(job["finished_at"])
                                        - datetime.fromisoformat(job["started_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        pass
    profiles = backend.count("SELECT count(*) FROM profiles WHERE sandbox = :s", s=sandbox)
    identities = backend.count("SELECT count(*) FROM identities WHERE sandbox = :s", s=sandbox)
    result = CsvResult(backend.name, rows, path.stat().st_size, upload_s, seen_processing, total_s, job, phases,
                       peak, peak_how, rss_before, profiles, identities, cpu1 - cpu0,
                       None if db0 is None else db1 - db0, file_limit_setting())
    log(f"{backend.name}: B. {job.get('status')} after {total_s:.1f} s ({rows / total_s:,.0f} rows/s); peak RSS "
        f"{mib(peak or 0)}; {profiles:,} profiles, {identities:,} identities" + ("" if result.ok else " — FAILED"))
    if job.get("message"):
        log(f"    job message: {job['message']}")
    return result


# ---- C. identity graph ---------------------------------------------------------------------------

class UnionFind:
    def __init__(self):
        self.parent: dict = {}
        self.components = 0

    def add(self, x) -> None:
        if x not in self.parent:
            self.parent[x] = x
            self.components += 1

    def find(self, x):
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.components -= 1


def identity_stream(people: int, seed: int) -> tuple[list[dict], list[int], list[int], tuple[int, int]]:
    """(records, union-find components after each record, no-merge profiles after each record,
    (people with an event, people whose three identities are linked) at the end)."""
    rng = random.Random(seed)
    types = ["pageView", "productView", "addToCart", "checkout", "purchase", "login", "emailOpen", "emailClick"]
    weights = [40, 25, 12, 5, 5, 6, 4, 3]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    uf = UnionFind()
    owner: dict[tuple[str, str], int] = {}  # the no-merge service's resolution
    no_merge_profiles = 0
    records, components, no_merge = [], [], []
    for n in range(people * EVENTS_PER_PERSON):
        person = rng.randrange(people)
        mine = [("ecid", f"ecid-{person:06d}"), ("email", f"person{person:06d}@example.com"),
                ("crm_id", f"CRM-{person:06d}")]
        chosen = rng.sample(mine, rng.choice((1, 2)))
        for pair in chosen:
            uf.add(pair)
        if len(chosen) == 2:
            uf.union(*chosen)
        owners = [owner[p] for p in chosen if p in owner]
        if owners:
            target = owners[0]
        else:
            no_merge_profiles += 1
            target = no_merge_profiles
        for pair in chosen:
            owner.setdefault(pair, target)
        event_type = rng.choices(types, weights)[0]
        ts = start + timedelta(seconds=n * 7 + rng.randrange(7))
        records.append({"identities": [{"namespace": ns, "id": value} for ns, value in chosen],
                        "event": {"id": f"ig-{n:07d}", "type": event_type,
                                  "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "channel": "web"}})
        components.append(uf.components)
        no_merge.append(no_merge_profiles)
    seen = linked = 0
    for p in range(people):
        mine = [("ecid", f"ecid-{p:06d}"), ("email", f"person{p:06d}@example.com"), ("crm_id", f"CRM-{p:06d}")]
        present = [x for x in mine if x in uf.parent]
        seen += bool(present)
        linked += len(present) == 3 and len({uf.find(x) for x in present}) == 1
    return records, components, no_merge, (seen, linked)


@dataclass
class Tenth:
    records: int
    seconds: float
    profiles: int
    expected: int  # union-find components
    no_merge: int
    warnings: int
    non_200: int
    rejected: int


@dataclass
class IdentityResult:
    backend: str
    people: int
    records: int
    wall: float
    outcome: Outcome
    tenths: list[Tenth]
    stored: int
    profiles: int
    expected: int
    no_merge: int
    seen: int
    linked: int
    merges_logged: int | None
    server_cpu: float
    db_cpu: float | None

    @property
    def transport_ok(self) -> bool:
        o = self.outcome
        return o.non_200 == 0 and o.rejected == 0 and o.duplicates == 0 and self.stored == self.records

    @property
    def merged_ok(self) -> bool:
        return self.profiles == self.expected


def section_identity(backend: Backend, people: int, seed: int) -> IdentityResult:
    records, components, no_merge, (seen, linked) = identity_stream(people, seed)
    sandbox = "identity"
    api = Api(backend.server.base, backend.key, sandbox)
    dataset = api.create_dataset("Identity graph events", "event")
    api.close()
    bodies = encode_requests(records, IDENTITY_REQUEST)
    log(f"{backend.name}: C. {len(records):,} records for {people:,} people, {len(bodies)} requests of "
        f"{IDENTITY_REQUEST}, 1 client")
    path = f"/v1/datasets/{dataset}/records"
    headers = {**api.headers, "Content-Type": "application/json"}
    tenths: list[Tenth] = []
    total = Outcome()
    cpu0, db0 = cpu_seconds(backend.server.pid), backend.db_cpu()
    wall = 0.0
    with httpx.Client(base_url=backend.server.base, headers=headers, timeout=LIMIT["request"]) as client:
        client.get("/healthz")
        for k in range(10):
            part = bodies[k * len(bodies) // 10:(k + 1) * len(bodies) // 10]
            out = Outcome()
            started = time.perf_counter()
            for body, n in part:
                send(client, path, body, n, out)
            seconds = time.perf_counter() - started
            wall += seconds
            total.add(out)
            sent = total.records
            profiles = backend.count("SELECT count(*) FROM profiles WHERE sandbox = :s", s=sandbox)
            tenths.append(Tenth(out.records, seconds, profiles, components[sent - 1], no_merge[sent - 1],
                                out.warnings, out.non_200, out.rejected))
            log(f"{backend.name}: C. tenth {k + 1}: {out.records:,} records in {seconds:.1f} s; profiles "
                f"{profiles:,} (union-find {components[sent - 1]:,}, no-merge {no_merge[sent - 1]:,}); "
                f"{out.non_200} non-200, {out.warnings} warnings")
    cpu1, db1 = cpu_seconds(backend.server.pid), backend.db_cpu()
    stored = backend.count("SELECT count(*) FROM events WHERE dataset_pk = :d", d=dataset)
    try:
        merges = backend.count("SELECT count(*) FROM profile_merges WHERE sandbox = :s", s=sandbox)
    except sa.exc.SQLAlchemyError:
        merges = None
    for text, n in sorted(total.errors.items(), key=lambda kv: -kv[1])[:5]:
        log(f"    {n}× {text}")
    return IdentityResult(backend.name, people, len(records), wall, total, tenths, stored, tenths[-1].profiles,
                          components[-1], no_merge[-1], seen, linked, merges, cpu1 - cpu0,
                          None if db0 is None else db1 - db0)


# ---- one backend ---------------------------------------------------------------------------------

def server_log_findings(text: str) -> list[str]:
    """Distinct warning / error lines of the server's stderr (numbers blurred), with counts."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|^(WARNING|ERROR):", line):
            key = re.sub(r"\d+", "N", line.strip())[:220]
            counts[key] = counts.get(key, 0) + 1
    return [f"{n}× {line}" for line, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def run_backend(name: str, sections: list[str], sizes: dict, seed: int, workdir: Path, results: dict) -> None:
    """Fills ``results`` as the sections end (so a failure keeps what ran)."""
    key = f"cdp_benchingest_{secrets.token_urlsafe(32)}"
    cluster = None
    server = None
    engine = None
    log_path = workdir / f"server-{name}.log"
    try:
        if name == "sqlite":
            db_path = workdir / "cdp.db"
            url = f"sqlite:///{db_path}"
            version = f"{sqlite3.sqlite_version} (WAL, the service's own pragmas)"
            db_pid = None
        else:
            options = " ".join(f"-c {k}={v}" for k, v in PG_SETTINGS.items())
            log(f"postgresql: starting a throwaway cluster ({options})")
            cluster = start_cluster(extra_options=options)
            url = cluster.create_database("cdp_ingest")
            db_pid = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
            version = ""
        log(f"{name}: starting cdp serve")
        server = Server(url, log_path, key)
        engine = create_engine(url)
        if name == "postgresql":
            with engine.connect() as c:
                version = (c.execute(sa.text("SHOW server_version")).scalar_one().split()[0]
                           + " (throwaway cluster: fsync off, synchronous_commit off, "
                           + ", ".join(f"{k}={v}" for k, v in PG_SETTINGS.items()) + ")")
        backend = Backend(name, url, server, key, engine, db_pid, version)
        results["backend_obj"] = backend
        results["version"] = version
        results["rss_start"] = proc_status(server.pid).get("VmRSS", 0)
        if "stream" in sections:
            results["stream"] = section_stream(backend, sizes["stream"], seed)
        if "csv" in sections:
            results["csv"] = section_csv(backend, sizes["csv"], seed)
        if "identity" in sections:
            results["identity"] = section_identity(backend, sizes["people"], seed)
        status = proc_status(backend.server.pid)
        results["rss_end"], results["hwm_end"] = status.get("VmRSS", 0), status.get("VmHWM", 0)
        results["deadlocks"] = backend.deadlocks()
        if name == "sqlite":
            results["db_size"] = sum(p.stat().st_size for p in workdir.glob("cdp.db*"))
        else:
            results["db_size"] = backend.count("SELECT pg_database_size(current_database())")
    finally:
        backend = results.pop("backend_obj", None)
        if backend is not None:
            server = backend.server
            results["restarts"] = backend.restarts
        if server is not None:
            server.stop()
        if engine is not None:
            engine.dispose()
        DATA.mkdir(parents=True, exist_ok=True)
        if cluster is not None:
            pg_log = cluster.directory / "log"
            if pg_log.exists():
                kept = DATA / "ingest-postgresql-cluster.log"
                shutil.copyfile(pg_log, kept)
                text = pg_log.read_text(errors="replace")
                results["pg_log"] = {"path": kept, "deadlocks": text.count("deadlock detected"),
                                     "errors": text.count(" ERROR: ")}
            log("postgresql: stopping the cluster")
            cluster.stop()
        if log_path.exists():
            kept = DATA / f"ingest-server-{name}.log"
            text = "".join(backend.log_lines if backend is not None else []) + log_path.read_text(errors="replace")
            kept.write_text(text)
            results["log_findings"] = server_log_findings(text)
            results["log_path"] = kept


# ---- report --------------------------------------------------------------------------------------

LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def fmt_ms(values: list[float], q: float) -> str:
    if not values:
        return "–"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:,.1f}"


def fmt_cpu(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def versions() -> str:
    from importlib.metadata import version

    parts = [f"CPython {platform.python_version()}"]
    for package in ("SQLAlchemy", "fastapi", "uvicorn", "httpx2", "psycopg"):
        try:
            parts.append(f"{package} {version(package)}")
        except Exception:  # noqa: BLE001, S112 - a package missing from the line is fine
            continue
    return "; ".join(parts)


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cdp"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10, check=False).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if dirty:
        return f"{head} + uncommitted changes to {len(dirty)} file(s) under cdp/ (work in progress of others)"
    return f"{head} (cdp/ clean)"


def report(args, command: str, started_at: datetime, wall: float, load_avg: float, all_results: list[dict],
           sizes: dict, failures: list[str]) -> str:
    mode = "quick" if args.quick else "full"
    lines = [
        f"## Ingestion over HTTP (`cdp serve`), {mode} — {started_at:%Y-%m-%d %H:%M} UTC",
        "",
        (f"- machine: nproc {os.cpu_count()}, {cpu_model()}, {platform.system()} {platform.machine()}; "
        f"load average at start {load_avg:.2f}; client, server and database share the machine"),
        f"- python: {versions()}",
        "- databases: " + "; ".join(f"{LABEL[r['backend']]} {r.get('version', '')}" for r in all_results),
        f"- code: {git_state()}",
        (f"- server: one `cdp serve` process per backend (uvicorn, one worker), a fresh database each; "
        f"{file_limit_setting()}"),
        f"- command: `{command}`",
        f"- wall time: {wall / 60:.1f} min",
        "",
    ]
    stream = [s for r in all_results for s in r.get("stream", [])]
    if stream:
        lines += [
            "### A. Streaming: `POST /v1/datasets/{id}/records`, Luma events",
            "",
            ("Each row replays the same time-ordered events into an empty sandbox of its own (1 and 8 clients do the "
            "same work); bodies encoded before the clock starts. Latency per request; CPU seconds over the run "
            "(server: the `cdp serve` process; db: the PostgreSQL postmaster and its backends; client: this "
            "process's threads). `stored` is counted in the database afterwards; `accepted/s` = records accepted "
            "per second of wall time; `deadlocks` = PostgreSQL's `pg_stat_database.deadlocks` over the run. Limits: "
            f"{LIMIT['request']} s per request, no new request after {LIMIT['scenario']} s (`not sent`); a "
            "scenario with requests left hanging is followed by a server restart."),
            "",
        ]
        rows = []
        for s in stream:
            o = s.outcome
            rows.append([LABEL[s.backend], s.size, f"{s.clients} (disjoint people)" if s.disjoint else s.clients,
                         f"{o.records + o.unsent:,}", f"{s.wall:.1f}",
                         f"{s.rate:,.0f}", fmt_ms(o.latencies, 0.5), fmt_ms(o.latencies, 0.95),
                         fmt_ms(o.latencies, 1.0), o.non_200, o.rejected + o.duplicates, f"{o.unsent:,}",
                         f"{s.stored:,}", f"{s.profiles:,}", "–" if s.deadlocks is None else s.deadlocks,
                         fmt_cpu(s.server_cpu), fmt_cpu(s.db_cpu), fmt_cpu(s.client_cpu),
                         ("ok" if s.ok else "**FAIL**") + (" (server restarted)" if s.restarted else "")])
        lines.append(markdown_table(["backend", "records/request", "clients", "records", "wall s", "accepted/s",
                                     "p50 ms", "p95 ms", "max ms", "non-200", "rejected+dup", "not sent", "stored",
                                     "profiles", "deadlocks", "server CPU s", "db CPU s", "client CPU s", "check"],
                                    rows, align="lrrrrrrrrrrrrrrrrrl"))
        lines.append("")
        for backend in dict.fromkeys(s.backend for s in stream):
            parts = []
            for size in REQUEST_SIZES:
                by = {s.clients: s for s in stream if s.backend == backend and s.size == size and not s.disjoint}
                if 1 in by and 8 in by and by[1].rate:
                    parts.append(f"{size} record{'s' if size > 1 else ''}/request {by[8].rate / by[1].rate:.2f}×")
            lines.append(f"- {LABEL[backend]}, 8 clients / 1 client: " + "; ".join(parts))
        for s in stream:
            for text, n in sorted(s.outcome.errors.items(), key=lambda kv: -kv[1])[:4]:
                lines.append(f"- {LABEL[s.backend]} {s.size}/request, {s.clients} clients: {n}× {text}")
        lines.append("")
    csvs = [r["csv"] for r in all_results if "csv" in r]
    if csvs:
        c0 = csvs[0]
        lines += [
            f"### B. CSV batch file: {c0.rows:,} CRM contacts ({mib(c0.file_bytes)}), profile dataset",
            "",
            "Upload (`POST /v1/datasets/{id}/batches`, multipart, mapping of 7 columns: crm_id and email "
            "identities, names, loyalty tier/points, city), then `GET /v1/datasets/{id}/batches` every 0.5 s. "
            "`total` = upload start → the poll that saw the job end; `queued` and `processing` from the job's own "
            "timestamps. Peak RSS: the `cdp serve` process, " + c0.peak_how + ".",
            "",
        ]
        rows = []
        for c in csvs:
            j = c.job
            rows.append([LABEL[c.backend], j.get("status"), f"{c.upload_s:.1f}",
                         f"{c.server_phases['queued']:.1f}" if "queued" in c.server_phases else "–",
                         f"{c.server_phases['processing']:.1f}" if "processing" in c.server_phases else "–",
                         f"{c.total_s:.1f}", f"{c.rows / c.total_s:,.0f}",
                         f"{j.get('accepted_rows', 0):,} / {j.get('rejected_rows', 0):,}",
                         f"{c.profiles:,} / {c.identities:,}", mib(c.rss_before), mib(c.peak_rss or 0),
                         fmt_cpu(c.server_cpu), fmt_cpu(c.db_cpu), "ok" if c.ok else "**FAIL**"])
        lines.append(markdown_table(["backend", "status", "upload → 202 s", "queued s", "processing s", "total s",
                                     "rows/s", "accepted / rejected", "profiles / identities", "RSS before",
                                     "peak RSS", "server CPU s", "db CPU s", "check"], rows,
                                    align="llrrrrrrrrrrrl"))
        for c in csvs:
            if c.job.get("message"):
                lines.append(f"- {LABEL[c.backend]}: job message: {c.job['message']}")
        lines.append("")
    ids = [r["identity"] for r in all_results if "identity" in r]
    if ids:
        i0 = ids[0]
        lines += [
            (f"### C. Identity graph: {i0.records:,} events for {i0.people:,} people (3 identities each), "
            f"requests of {IDENTITY_REQUEST}, 1 client"),
            "",
            ("Each event carries 1 or 2 of its person's identities (ecid, email, crm_id), drawn at random; people "
            "and events in random order (seed 42). `union-find` = the connected components of the identities seen "
            "so far: the profiles a service that merges must have; `no-merge` = the profiles of a service that "
            "never merges (a record goes to the first profile owning one of its identities). `warnings` = "
            "per-record warnings in the answers (merge notices; \"not merged\" from a service that does not merge). "
            "`people (fully linked)`: people with at least one event (and those of them whose three identities "
            "the stream links)."),
            "",
        ]
        summary = []
        for i in ids:
            summary.append([LABEL[i.backend], f"{i.wall:.1f}", f"{i.records / i.wall:,.0f}",
                            f"{i.profiles:,}", f"{i.expected:,}", f"{i.no_merge:,}", f"{i.seen:,} ({i.linked:,})",
                            "–" if i.merges_logged is None else f"{i.merges_logged:,}",
                            f"{i.stored:,}", i.outcome.non_200, i.outcome.rejected + i.outcome.duplicates,
                            f"{i.outcome.warnings:,}", fmt_cpu(i.server_cpu), fmt_cpu(i.db_cpu),
                            ("merged ok" if i.merged_ok else "**profiles ≠ union-find**")
                            + ("" if i.transport_ok else "; **records lost**")])
        lines.append(markdown_table(["backend", "wall s", "records/s", "profiles (db)", "union-find", "no-merge",
                                     "people (fully linked)", "profile_merges rows", "events stored", "non-200",
                                     "rejected+dup", "warnings", "server CPU s", "db CPU s", "check"], summary,
                                    align="lrrrrrrrrrrrrrl"))
        lines.append("")
        headers = ["tenth"]
        for i in ids:
            headers += [f"{LABEL[i.backend]} s", "rec/s", "profiles (db)", "union-find", "no-merge", "warnings"]
        rows = []
        for k in range(10):
            row = [f"{k + 1}"]
            for i in ids:
                t = i.tenths[k]
                row += [f"{t.seconds:.1f}", f"{t.records / t.seconds:,.0f}" if t.seconds else "–", f"{t.profiles:,}",
                        f"{t.expected:,}", f"{t.no_merge:,}", f"{t.warnings:,}"]
            rows.append(row)
        lines.append(markdown_table(headers, rows))
        for i in ids:
            for text, n in sorted(i.outcome.errors.items(), key=lambda kv: -kv[1])[:4]:
                lines.append(f"- {LABEL[i.backend]}: {n}× {text}")
        lines.append("")
    lines.append("### Server")
    lines.append("")
    for r in all_results:
        text = (f"- {LABEL[r['backend']]}: RSS at start {mib(r.get('rss_start', 0))}, at the end "
                f"{mib(r.get('rss_end', 0))}; database size at the end {mib(r.get('db_size', 0))}")
        if r.get("restarts"):
            text += f"; restarted {r['restarts']} time(s) after hanging requests"
        if r.get("deadlocks") is not None:
            text += f"; pg_stat_database.deadlocks at the end {r['deadlocks']:,}"
        if r.get("pg_log"):
            text += (f"; PostgreSQL log: {r['pg_log']['deadlocks']:,} `deadlock detected`, {r['pg_log']['errors']:,} "
                     f"ERROR lines ({r['pg_log']['path'].relative_to(ROOT)})")
        findings = r.get("log_findings") or []
        text += (f"; server log: {len(findings)} distinct warning/error line(s)" if findings
                 else "; server log: no warnings or errors")
        lines.append(text)
        for finding in findings[:6]:
            lines.append(f"  - `{finding}`")
    lines.append("")
    lines.append("### Checks")
    lines.append("")
    lines += [f"- **FAIL** {f}" for f in failures] or ["- every check passed"]
    lines.append("")
    return "\n".join(lines)


def collect_failures(all_results: list[dict]) -> list[str]:
    failures = []
    for r in all_results:
        name = LABEL[r["backend"]]
        if "error" in r:
            failures.append(f"{name}: the run stopped: {r['error']}")
        for s in r.get("stream", []):
            if not s.ok:
                o = s.outcome
                failures.append(f"{name} A ({s.size}/request, {s.clients} clients): {o.non_200} non-200 answers "
                                f"{dict(sorted(o.statuses.items()))}, {o.rejected} rejected, {o.duplicates} "
                                f"duplicates, {o.unsent:,} not sent (time limit); {s.stored:,} events stored of "
                                f"{o.records + o.unsent:,}")
        c = r.get("csv")
        if c is not None and not c.ok:
            failures.append(f"{name} B: job {c.job.get('status')}, accepted {c.job.get('accepted_rows')}, rejected "
                            f"{c.job.get('rejected_rows')} of {c.rows:,}; {c.profiles:,} profiles and "
                            f"{c.identities:,} identities stored (want {c.rows:,} and {2 * c.rows:,})")
        i = r.get("identity")
        if i is not None:
            if not i.transport_ok:
                failures.append(f"{name} C: {i.outcome.non_200} non-200, {i.outcome.rejected} rejected; "
                                f"{i.stored:,} events stored of {i.records:,}")
            if not i.merged_ok:
                failures.append(f"{name} C: {i.profiles:,} profiles in the database, {i.expected:,} expected from "
                                f"the union-find of the stream ({i.people:,} people; a service that never merges "
                                f"would have {i.no_merge:,})")
    return failures


# ---- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="smaller volumes (the whole run in about 2 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="sections to run, comma-separated: stream, csv, identity (default: all)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--stream-records", default=None,
                        help="records per streaming scenario, for requests of 1 and of 500: 'N1,N500' (default "
                             "2000,50000; 200,4000 with --quick)")
    parser.add_argument("--csv-rows", type=int, default=None, help="rows of the CSV file (default 1,000,000; "
                                                                     "5,000 with --quick)")
    parser.add_argument("--csv-pad-bytes", type=int, default=0,
                        help="an unmapped `notes` column this wide on every CSV row (1,000,000 rows × ~1,000: a "
                             "file of ~1 GiB for the peak-memory check)")
    parser.add_argument("--people", type=int, default=None, help="people of the identity section (default 20,000; "
                                                                   "1,000 with --quick)")
    parser.add_argument("--record", action="store_true", help="append the report to bench/RESULTS.md")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--only: one or more of {', '.join(SECTIONS)}")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    sizes = dict(SIZES[args.quick])
    LIMIT.update(LIMITS[args.quick])

    def terminated(signum, _frame):  # stop the servers and the cluster on the way out
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminated)
    if args.stream_records:
        try:
            n1, n500 = (int(x) for x in args.stream_records.split(","))
        except ValueError:
            parser.error("--stream-records: two numbers, 'N1,N500'")
        sizes["stream"] = {1: n1, 500: n500}
    if args.csv_rows is not None:
        sizes["csv"] = args.csv_rows
    CSV_PAD["bytes"] = args.csv_pad_bytes
    if args.people is not None:
        sizes["people"] = args.people
    command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_ingest.py " + " ".join(sys.argv[1:])
    _lock = one_run_at_a_time()
    started_at = datetime.now(UTC)
    load_avg = os.getloadavg()[0]
    wall = time.perf_counter()
    all_results = []
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-ingest-"))
    try:
        for name in backends:
            results: dict = {"backend": name}
            all_results.append(results)
            try:
                run_backend(name, sections, sizes, args.seed, workdir, results)
            except Exception as exc:  # noqa: BLE001 - report what ran, and why the rest did not
                log(f"{name}: the run stopped: {type(exc).__name__}: {exc}")
                results["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    failures = collect_failures(all_results)
    text = report(args, command, started_at, time.perf_counter() - wall, load_avg, all_results, sizes, failures)
    print(text)
    print("(server logs: " + ", ".join(str(r["log_path"].relative_to(ROOT)) for r in all_results if "log_path" in r)
          + ")")
    if args.record:
        with RESULTS.open("a", encoding="utf-8") as out:  # append only
            out.write("\n" + text)
        print(f"(appended to {RESULTS.relative_to(ROOT)})")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
