"""Streaming segments on ingest (issue 15): single-record ingest latency and throughput with 0,
100 and 500 active streaming segments, through a real ``cdp serve``.

    python bench/bench_streaming.py [--backend sqlite|postgresql|both] [--segments 100,500]
                                    [--people 400] [--requests 300] [--rounds 3] [--record]
                                    [--segment-mix shapes|by-value] [--fresh]
    (or: bash bench/run_streaming.sh …, which uses the project's .venv)

Per backend one server (bench_ingest.Server) on a fresh database (an SQLite file; a throwaway
PostgreSQL cluster with bench_ingest's settings). One sandbox per segment count, each with an
event dataset holding the same Luma events (bench_ingest.event_stream, seed 42): every person's
history but the last ``--requests`` × ``--rounds`` records, loaded in requests of 500 before any
segment exists. Then the sandbox's segments are saved through ``POST /v1/segments`` as active and
streaming: bench_segments.shapes(N) — attributes, lists, event windows, counts, sums, last(),
days_since, the §13 sequence, and every 10th referencing three earlier ones. With ``--segment-mix
by-value``: :func:`by_value_shapes` — segments per product category and channel, which most
events of the types they read do not match (streaming skips a segment none of whose filters can
admit the record's event: cdp/segments/relevance.py); with ``--fresh`` the stream is moved in time
to end at the run's start, so the records arrive minutes old (the generator's are days old, older
than many windows — which skips those windows' segments too).

Measured: the held-back records, one per request, one client, the same records into every
sandbox, in rounds whose sandbox order flips each round. A request's answer comes after its
transaction committed, memberships and outbox rows included (the streaming evaluation runs in the
record's transaction), so the client's round trip is an upper bound of "arrival → committed
membership change". Reported: median and p99 per segment count, records/s and its ratio to the
sandbox without segments (target ≥ 0.8), the membership changes the run wrote (outbox rows of
source ``streaming``), and the server's CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest as bi  # noqa: E402 - the server, the event stream and the cluster settings
from _common import cpu_model, markdown_table  # noqa: E402
from bench_segments import GIFT, shapes  # noqa: E402

from cdp.devtools.postgres import start_cluster  # noqa: E402
from cdp.storage.database import create_engine  # noqa: E402
from cdp.storage.models import segment_due  # noqa: E402

RESULTS = bi.RESULTS

CATEGORIES = ["mens", "womens", "kids", "gear"]  # the Luma catalogue's (cdp/demo/generator.py)
CHANNELS = ["web", "mobile"]


def by_value_shapes(count: int) -> dict[str, str]:
    """``count`` segments the way a merchandising team writes them: per product category and
    channel, so most segments reading an event type filter it by a value most events of the type
    do not have — per category purchases, views and abandoned carts, per channel spend and visits —
    beside attribute segments, the §13 gift-giving abandoners (no value filter: every cart and
    purchase may change it), an unfiltered last(), and every 10th referencing three earlier ones."""
    made: dict[str, str] = {}
    for i in range(count):
        k, kind = divmod(i, 10)
        category, channel = CATEGORIES[k % 4], CHANNELS[k % 2]
        made[f"seg-{i:03d}"] = [
            f'loyalty.tier = "{["bronze", "silver", "gold", "platinum"][k % 4]}" and loyalty.points > {100 * k}',
            f'exists event where type = "purchase" and product.category = "{category}" within last {k + 1} days',
            f'count(event where type = "productView" and product.category = "{category}" within last {k + 1} days) '
            f'>= {1 + k % 3}',
            f'sum(event.order.total where type = "purchase" and channel = "{channel}" within last 365 days) '
            f'> {100 * (k + 1)}',
            f'exists event as cart where type = "addToCart" and product.category = "{category}" within last {7 + k} days '
            f'then no event where type = "purchase" and product.category = "{category}" within 1 day',
            f'count(event where type = "pageView" and channel = "{channel}" within last {k + 1} days) >= {3 + k % 5}',
            GIFT.format(d=7 + k),
            f'last(event.product.category where type = "purchase") = "{category}"',
            f'exists event where type = "emailClick" and campaign.id = "cmp-{101 + k % 5}" within last {30 + k} days',
            f'(in segment "seg-{i - 9:03d}" or in segment "seg-{i - 7:03d}") and not in segment "seg-{i - 3:03d}"',
        ][kind]
    return made


MIXES = {"shapes": shapes, "by-value": by_value_shapes}


def fresh(records: list[dict], end: datetime) -> list[dict]:
    """The stream moved in time so that its last record is at ``end`` (a live stream: what arrives
    is minutes old, not the generator's as-of days ago); order and spacing kept."""
    last = max(datetime.fromisoformat(r["event"]["timestamp"]) for r in records)
    shift = end - last
    return [{**r, "event": {**r["event"], "timestamp": (datetime.fromisoformat(r["event"]["timestamp"]) + shift)
                            .isoformat().replace("+00:00", "Z")}} for r in records]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def prepare(server: bi.Server, key: str, counts: list[int], seed_records: list[dict],
            mix=shapes) -> dict[int, tuple[str, int]]:
    """A sandbox per segment count: dataset, history, segments. Returns count → (sandbox, dataset)."""
    made = {}
    for count in counts:
        sandbox = f"streaming-{count}"
        api = bi.Api(server.base, key, sandbox)
        dataset = api.create_dataset("web events", "event")
        for body, n in bi.encode_requests(seed_records, 500):
            response = api.client.post(f"/v1/datasets/{dataset}/records", content=body,
                                       headers={"Content-Type": "application/json"})
            assert response.status_code == 200, response.text[:500]
        for segment_key, text in mix(count).items():
            response = api.client.post("/v1/segments", json={"key": segment_key, "name": segment_key,
                                                             "expression": text, "status": "active",
                                                             "evaluation": "streaming"})
            assert response.status_code == 201, response.text[:500]
        api.close()
        made[count] = (sandbox, dataset)
        bi.log(f"prepared {sandbox}: {len(seed_records)} records, {count} streaming segments")
    return made


def warm_up(server: bi.Server, key: str, made: dict[int, tuple[str, int]], records: list[dict]) -> None:
    """A few records per sandbox, not counted: the first evaluation of each segment compiles it."""
    for sandbox, dataset in made.values():
        headers = {"Authorization": f"Bearer {key}", "X-Sandbox": sandbox, "Content-Type": "application/json"}
        with httpx.Client(base_url=server.base, headers=headers, timeout=300) as client:
            for body, _ in bi.encode_requests(records, 1):
                response = client.post(f"/v1/datasets/{dataset}/records", content=body)
                assert response.status_code == 200, response.text[:500]


INGEST_ROUTE = "/v1/datasets/{dataset_id}/records"


def histograms(client: httpx.Client) -> dict[tuple, dict[float, float]]:
    """The server's histograms this bench reads, from ``GET /metrics``: (name, labels…) →
    cumulative bucket counts by upper bound (seconds). The request's latency (arrival in the app to
    its answer, which comes after the commit) and streaming's time per changed profile by phase."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    response.raise_for_status()
    found: dict[tuple, dict[float, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "cdp_streaming_evaluations_total":  # segments evaluated, summed per sandbox
                into = found.setdefault(("evaluations", labels["sandbox"]), {float("inf"): 0.0})
                into[float("inf")] += sample.value
                continue
            if not sample.name.endswith("_bucket"):
                continue
            if sample.name == "cdp_http_request_duration_seconds_bucket":
                if labels.get("route") != INGEST_ROUTE or labels.get("method") != "POST":
                    continue
                key = ("request",)
            elif sample.name == "cdp_streaming_profile_seconds_bucket":
                key = ("streaming", labels["sandbox"], labels["phase"])
            else:
                continue
            found.setdefault(key, {})[float(labels["le"])] = sample.value
    return found


def delta(after: dict, before: dict) -> dict[tuple, dict[float, float]]:
    return {key: {le: n - before.get(key, {}).get(le, 0.0) for le, n in buckets.items()}
            for key, buckets in after.items()}


def add(into: dict, more: dict) -> None:
    for key, buckets in more.items():
        target = into.setdefault(key, {})
        for le, n in buckets.items():
            target[le] = target.get(le, 0.0) + n


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile (ms) of a cumulative histogram, linear within a bucket (as Prometheus'
    histogram_quantile); None without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower * 1000
            inside = buckets[bound] - below
            return (lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)) * 1000
        lower, below = bound, buckets[bound]
    return lower * 1000


def share_within(buckets: dict[float, float], seconds: float) -> float | None:
    """The share of observations ≤ ``seconds`` (a bucket bound: exact)."""
    total = buckets.get(float("inf"), 0)
    return buckets[seconds] / total if total and seconds in buckets else None


class SandboxProfile:
    """``CDP_BENCH_PYSPY_MEASURED=DIR``: py-spy samples the server during one sandbox's measured
    requests only (not the set-up, not the due wave), into ``DIR/<backend>-<segments>-r<round>.txt``
    (bench/profile_report.py sums them), so that the sandboxes' profiles can be set side by side.
    ``CDP_BENCH_SIGNAL_MEASURED=1``: the server gets SIGUSR1 before and after each sandbox's
    requests (for a hook of one's own in the server, e.g. a ``sitecustomize`` counting statements)."""

    def __init__(self, server: bi.Server, name: str):
        self.directory = os.environ.get("CDP_BENCH_PYSPY_MEASURED")
        self.server, self.name = server, name
        self.process: subprocess.Popen | None = None
        self.signal = bool(os.environ.get("CDP_BENCH_SIGNAL_MEASURED"))

    def start(self, count: int, round_: int) -> None:
        if self.signal:
            os.kill(self.server.pid, signal.SIGUSR1)
            time.sleep(0.2)
        if not self.directory:
            return
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        output = Path(self.directory) / f"{self.name}-{count}-r{round_}.txt"
        self.process = subprocess.Popen(
            [os.environ.get("CDP_BENCH_PYSPY_BIN") or str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(self.server.pid), "--rate", "250",
             "--format", "raw", "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached before the first request

    def stop(self) -> None:
        if self.signal:
            os.kill(self.server.pid, signal.SIGUSR1)
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            self.process.wait(timeout=60)
            self.process = None


def thread_cpu(pid: int) -> dict[int, float]:
    """Each thread's user + system CPU seconds (``/proc/PID/task``): the event loop's thread is the
    one whose id is the process's, the others are the request threads and the service's own."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def measure(server: bi.Server, key: str, made: dict[int, tuple[str, int]], records: list[dict], rounds: int,
            name: str = "", client_kind: str = "httpx") -> dict:
    """``client_kind``: the timed POSTs by an httpx.Client (default: as recorded so far) or by
    bench/http_load.py's lean connection (``--client lean``: ~0.1 ms of client CPU a request
    instead of ~1, out of the latency measured)."""
    from http_load import LeanConnection

    per_round = len(records) // rounds
    server_side: dict[int, dict] = {count: {} for count in made}  # histograms over the measured requests
    latencies: dict[int, list[float]] = {count: [] for count in made}
    walls: dict[int, float] = {count: 0.0 for count in made}
    cpu: dict[int, float] = {count: 0.0 for count in made}  # the server's CPU seconds (robust to a loaded machine)
    loop_cpu: dict[int, float] = {count: 0.0 for count in made}  # of which its event loop's thread
    order = list(made)
    profile = SandboxProfile(server, name)
    for round_ in range(rounds):
        chunk = records[round_ * per_round:(round_ + 1) * per_round]
        bodies = [body for body, _ in bi.encode_requests(chunk, 1)]
        for count in (order if round_ % 2 == 0 else order[::-1]):
            sandbox, dataset = made[count]
            headers = {"Authorization": f"Bearer {key}", "X-Sandbox": sandbox, "Content-Type": "application/json"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client, \
                    LeanConnection.to(server.base, headers, timeout=60) as lean:
                path = f"/v1/datasets/{dataset}/records"
                if client_kind == "lean":
                    lean.request("GET", "/healthz")  # the connection open before the clock starts
                histograms_before = histograms(client)
                profile.start(count, round_ + 1)
                cpu_before = bi.cpu_seconds(server.pid)
                threads_before = thread_cpu(server.pid)
                started = time.perf_counter()
                for body in bodies:
                    t0 = time.perf_counter()
                    if client_kind == "lean":
                        status, text = lean.request("POST", path, body)
                    else:
                        response = client.post(path, content=body)
                        status, text = response.status_code, response.content
                    latencies[count].append((time.perf_counter() - t0) * 1000)
                    assert status == 200 and json.loads(text)["accepted"] == 1, text[:500]
                walls[count] += time.perf_counter() - started
                cpu[count] += bi.cpu_seconds(server.pid) - cpu_before
                loop_cpu[count] += thread_cpu(server.pid).get(server.pid, 0.0) - threads_before.get(server.pid, 0.0)
                profile.stop()
                add(server_side[count], delta(histograms(client), histograms_before))
        bi.log(f"round {round_ + 1}/{rounds}: " + ", ".join(
            f"{c} segments p50 {statistics.median(latencies[c]):.1f} ms" for c in order))
    return {"latencies": latencies, "walls": walls, "cpu": cpu, "loop_cpu": loop_cpu, "requests": per_round * rounds,
            "server_side": server_side}


def wait_for_due_wave(engine: sa.Engine, timeout: float = 1800) -> None:
    """Saving a streaming segment over existing data makes every profile due at once (the due job
    computes each one's next instant): that one-time wave is let finish before measuring."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            due = connection.execute(sa.select(sa.func.count()).select_from(segment_due)
                                     .where(segment_due.c.due_at <= datetime.now(UTC))).scalar_one()
            if sa.inspect(connection).has_table("segment_due_saved"):  # migration 0021: due for the saved segments
                due += connection.execute(sa.text("SELECT count(*) FROM segment_due_saved WHERE due_at <= :now"),
                                          {"now": datetime.now(UTC)}).scalar_one()
        if not due:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{due} profiles still due after {timeout} s")
        bi.log(f"waiting for the due wave of the segments just saved: {due:,} profiles due "
               f"(one instant a profile: migration 0018)")
        time.sleep(5)


def changes_written(engine: sa.Engine, sandbox: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM membership_changes WHERE sandbox = :s AND "
                                          "source = 'streaming'"), {"s": sandbox}).scalar_one()


def run_backend(name: str, args, counts: list[int]) -> dict:
    key = f"cdp_benchstream_{secrets.token_urlsafe(32)}"
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-streaming-"))
    cluster = None
    try:
        if name == "sqlite":
            url = f"sqlite:///{workdir / 'cdp.db'}"
        else:
            cluster = start_cluster(extra_options=" ".join(f"-c {k}={v}" for k, v in bi.PG_SETTINGS.items()))
            url = cluster.create_database("cdp_streaming")
        measured = args.requests * args.rounds
        stream = bi.event_stream(args.people * 5, bi.SEED)
        if args.fresh:
            stream = fresh(stream, datetime.now(UTC))
        # hold back each person's last events (the stream is in time order): what arrives next
        seed_records, records = stream[:-measured - args.warmup], stream[-measured - args.warmup:]
        warmup, records = records[:args.warmup], records[args.warmup:]
        server = bi.Server(url, workdir / "server.log", key)
        try:
            made = prepare(server, key, counts, seed_records, MIXES[args.segment_mix])
            engine = create_engine(url)
            wait_for_due_wave(engine)
            engine.dispose()
            warm_up(server, key, made, warmup)
            cpu_before = bi.cpu_seconds(server.pid)
            out = measure(server, key, made, records, args.rounds, name, client_kind=args.client)
            out["server_cpu"] = bi.cpu_seconds(server.pid) - cpu_before
        finally:
            server.stop()
        engine = create_engine(url)
        out["changes"] = {count: changes_written(engine, sandbox) for count, (sandbox, _) in made.items()}
        engine.dispose()
        out["seed_records"] = len(seed_records)
        return out
    finally:
        if cluster is not None:
            cluster.stop()


def report(args, counts: list[int], results: dict[str, dict], started: datetime, wall: float) -> str:
    command = os.environ.get("CDP_BENCH_COMMAND") or "python bench/bench_streaming.py " + " ".join(sys.argv[1:])
    git = os.popen("git rev-parse --short HEAD").read().strip()
    lines = [f"## Streaming segments on ingest: 1 record per request — {started:%Y-%m-%d %H:%M} UTC", "",
             f"- machine: nproc {os.cpu_count()}, {cpu_model()}; load average at start {os.getloadavg()[0]:.2f}; "
             f"Python {platform.python_version()}; commit {git}",
             f"- command: `{command}`",
             f"- the timed requests' client: {args.client}",
             f"- wall time: {wall / 60:.1f} min",
             f"- segments: {'bench/bench_segments.py `shapes(N)`' if args.segment_mix == 'shapes' else 'bench/bench_streaming.py `by_value_shapes(N)` (per category / channel)'}"
             f"{'; the stream moved to end at the run start (--fresh)' if args.fresh else ''}"
             ", saved active and streaming; every sandbox first holds "
             "the same history, then receives the same held-back records, 1 per request, 1 client, rounds "
             f"alternating between sandboxes, after {args.warmup} uncounted requests per sandbox (the first "
             "evaluation of a segment compiles it) and after the one-time wave of due re-evaluations that saving "
             "the segments over existing profiles starts", ""]
    rows = []
    for name, out in results.items():
        base = out["requests"] / out["walls"][0] if 0 in out["walls"] else None
        for count in counts:
            lat = out["latencies"][count]
            rate = out["requests"] / out["walls"][count]
            ratio = f"{rate / base:.2f}×" if base and count else "—"
            p99 = pct(lat, 0.99)
            target = ("≤ 10 ms: " + ("PASS" if p99 <= 10 else "FAIL")) if count == 500 else ""
            cpu_ms = out["cpu"][count] / out["requests"] * 1000
            cpu_ratio = f"{out['cpu'][0] / out['cpu'][count]:.2f}×" if 0 in out["cpu"] and count else "—"
            loop_ms = out["loop_cpu"][count] / out["requests"] * 1000
            rows.append([name, count, out["requests"], f"{statistics.median(lat):.2f}", f"{pct(lat, 0.95):.2f}",
                         f"{p99:.2f}", target, f"{rate:,.0f}", ratio, f"{cpu_ms:.2f}", f"{loop_ms:.2f}",
                         f"{cpu_ms - loop_ms:.2f}", cpu_ratio, out["changes"][count]])
    lines += ["Latency = the client's round trip of a single-record request (ms); the membership changes and their "
              "outbox rows commit in the record's transaction, before the answer. Server CPU per record (the "
              "`cdp serve` process, from /proc) is the figure a loaded machine disturbs least; its ratio is the "
              "throughput ratio one core would give.", "",
              markdown_table(["database", "streaming segments", "requests", "p50", "p95", "p99", "target (p99)",
                              "records/s", "÷ no segments (≥ 0.8)", "server CPU ms / record",
                              "of which the event loop's thread", "the other threads", "CPU: no segments ÷ this", "outbox rows (streaming)"], rows), ""]
    rows = []
    for name, out in results.items():
        for count in counts:
            sandbox = f"streaming-{count}"
            side = out["server_side"][count]
            request = side.get(("request",), {})

            def ms(buckets: dict, q: float) -> str:
                value = quantile(buckets, q)
                return "—" if value is None else f"{value:.2f}"

            within = share_within(request, 0.01)
            phases = [side.get(("streaming", sandbox, phase), {}) for phase in ("evaluate", "write")]
            evaluated = side.get(("evaluations", sandbox), {}).get(float("inf"))
            rows.append([name, count, ms(request, 0.5), ms(request, 0.99),
                         "—" if within is None else f"{100 * within:.1f} %",
                         *(ms(buckets, q) for buckets in phases for q in (0.5, 0.99)),
                         "—" if evaluated is None else f"{evaluated / out['requests']:.1f}"])
    lines += ["Server side (the server's own histograms on `/metrics`, read before and after each sandbox's requests): "
              "the request from its arrival in the app to its answer, which is sent after the transaction — record, "
              "memberships, outbox, next instants — committed; and streaming's share of it per changed profile, "
              "`cdp_streaming_profile_seconds` by phase (evaluate: one statement reading the lean profile, its "
              "memberships of the selected segments and their instants, then the selected predicates and the next "
              "instants; write: the changes written). The phases count the due job's profiles too. "
              "Quantiles interpolated within the histogram's buckets (as Prometheus' histogram_quantile); the "
              "share ≤ 10 ms is exact (a bucket bound). ms:", "",
              markdown_table(["database", "streaming segments", "request p50", "request p99", "requests ≤ 10 ms",
                              "evaluate p50", "evaluate p99", "write p50", "write p99",
                              "segments evaluated / record"], rows), ""]
    for name, out in results.items():
        lines.append(f"- {name}: history of {out['seed_records']:,} records per sandbox; server CPU during the "
                     f"measured requests {out['server_cpu']:.1f} s")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--segments", default="100,500")
    parser.add_argument("--people", type=int, default=400)
    parser.add_argument("--requests", type=int, default=300, help="per round and sandbox")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20, help="requests per sandbox before measuring, not counted")
    parser.add_argument("--segment-mix", choices=sorted(MIXES), default="shapes",
                        help="shapes: bench_segments.shapes (as before); by-value: per category / channel segments "
                             "(by_value_shapes), most of which a given event's values rule out")
    parser.add_argument("--fresh", action="store_true",
                        help="move the stream in time so that it ends now (the generator's events are days old)")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--client", choices=["httpx", "lean"], default="httpx",
                        help="the timed requests' client: httpx (as recorded so far) or bench/http_load.py")
    args = parser.parse_args()
    bi.LIMIT.update(bi.LIMITS[False])
    counts = [0, *(int(c) for c in args.segments.split(","))]
    started, t0 = datetime.now(UTC), time.perf_counter()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = {}
    lock = bi.one_run_at_a_time()  # noqa: F841 - held until the process ends
    for name in backends:
        results[name] = run_backend(name, args, counts)
    text = report(args, counts, results, started, time.perf_counter() - t0)
    print(text)
    if args.record:
        with open(RESULTS, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
