"""Prometheus metrics, one registry per app (so several apps in one process — tests — do not
share counters), served at ``GET /metrics`` in the text exposition format (any API key).

* ``cdp_http_requests_total{method, route, status}`` and
  ``cdp_http_request_duration_seconds{method, route}`` — ``route`` is the route template
  (``/v1/datasets/{dataset_id}``), ``unmatched`` for unknown paths, so labels stay bounded;
* ``cdp_ingested_records_total{sandbox, kind}`` and ``cdp_rejected_records_total{sandbox, kind}``
  — counted by ingestion through :meth:`Metrics.ingested` / :meth:`Metrics.rejected`;
* ``cdp_streaming_evaluations_total{sandbox, segment}`` and
  ``cdp_streaming_evaluation_seconds{sandbox, segment}`` — streaming segments evaluated in memory
  (on ingest and by the due job) and the time each took;
* ``cdp_streaming_profile_seconds{sandbox, phase}`` — per profile a record (or the due job)
  changed, the time streaming took: ``evaluate`` (load the profile, the predicates, the next
  instants) and ``write`` (read its memberships, write the changes); inside the record's
  transaction, so part of the request's ``cdp_http_request_duration_seconds``;
* ``cdp_streaming_due_scheduled`` and ``cdp_streaming_due_overdue`` — re-evaluations scheduled
  for the instant an answer can change with time alone (one per profile, of all its timed
  streaming segments), and of those already due, as the due job
  last saw them; ``cdp_streaming_due_lag_seconds`` — how late the oldest due one was.
* ``cdp_source_messages_total{sandbox, source, status}`` — the tracking API's messages per source
  (cdp/sources).

One process: with several worker processes each would count its own (use one uvicorn worker, or
prometheus_client's multiprocess mode, not set up here).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily

EVALUATION_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1)


class SegmentEvaluations:
    """``cdp_streaming_evaluations_total{sandbox, segment}`` and
    ``cdp_streaming_evaluation_seconds{sandbox, segment}`` as one collector: streaming evaluates
    tens of segments per record, and a prometheus_client Counter and Histogram child cost two locks
    and a bucket search each per observation (~0.25 ms of CPU per record at 500 segments, measured:
    bench/RESULTS.md, issue 15, session 9);
    here a record's observations are added under one lock to plain per-segment tallies, which
    become the two families only when ``/metrics`` is read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], list] = {}  # (sandbox, segment) → [count, seconds, per-bucket counts]
        # the same lists by sandbox, then segment: a record's observations are looked up by the
        # segment's key alone (a string's hash is kept; a (sandbox, segment) tuple's is computed
        # each time)
        self._by_sandbox: dict[str, dict[str, list]] = {}

    def record(self, sandbox: str, spent: Iterable[tuple[str, float]]) -> None:
        buckets = EVALUATION_BUCKETS
        with self._lock:
            tallies = self._by_sandbox.get(sandbox)
            if tallies is None:
                tallies = self._by_sandbox[sandbox] = {}
            for segment, seconds in spent:
                tally = tallies.get(segment)
                if tally is None:
                    tally = tallies[segment] = self._tallies[(sandbox, segment)] = [0, 0.0, [0] * (len(buckets) + 1)]
                tally[0] += 1
                tally[1] += seconds
                tally[2][bisect_left(buckets, seconds)] += 1  # a bound is inclusive (le)

    def count(self, sandbox: str, segment: str) -> int:
        tally = self._tallies.get((sandbox, segment))
        return tally[0] if tally else 0

    def describe(self):
        return [CounterMetricFamily("cdp_streaming_evaluations", "Streaming segments evaluated for a profile."),
                HistogramMetricFamily("cdp_streaming_evaluation_seconds", "Time to evaluate a streaming segment "
                                      "for a profile.")]

    def collect(self):
        counts = CounterMetricFamily("cdp_streaming_evaluations", "Streaming segments evaluated for a profile.",
                                     labels=["sandbox", "segment"])
        seconds = HistogramMetricFamily("cdp_streaming_evaluation_seconds", "Time to evaluate a streaming segment "
                                        "for a profile.", labels=["sandbox", "segment"])
        with self._lock:
            tallies = [(key, tally[0], tally[1], list(tally[2])) for key, tally in sorted(self._tallies.items())]
        for (sandbox, segment), count, total, per_bucket in tallies:
            counts.add_metric([sandbox, segment], count)
            cumulative, buckets = 0, []
            for bound, n in zip((*map(repr, EVALUATION_BUCKETS), "+Inf"), per_bucket):
                cumulative += n
                buckets.append((bound, cumulative))
            seconds.add_metric([sandbox, segment], buckets, total)
        yield counts
        yield seconds


class Metrics:
    def __init__(self) -> None:
        self.last_due_lag = 0.0
        disable_created_metrics()  # no `*_created` series (process-wide switch of prometheus_client)
        self.registry = CollectorRegistry()
        self.requests = Counter("cdp_http_requests", "HTTP requests answered.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("cdp_http_request_duration_seconds", "Time to answer HTTP requests.",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                          2.5, 5, 10))
        self.ingested_records = Counter("cdp_ingested_records", "Records ingested (stored).", ["sandbox", "kind"],
                                        registry=self.registry)
        self.rejected_records = Counter("cdp_rejected_records", "Records rejected by validation.",
                                        ["sandbox", "kind"], registry=self.registry)
        self.segment_evaluations = SegmentEvaluations()
        self.registry.register(self.segment_evaluations)
        self.streaming_profile_seconds = Histogram(
            "cdp_streaming_profile_seconds", "Time streaming evaluation took for one changed profile, by phase "
            "(evaluate: load and predicates; write: memberships, outbox, next instants).", ["sandbox", "phase"],
            registry=self.registry, buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01,
                                             0.015, 0.025, 0.05, 0.1, 0.25))
        self._profile_children: dict[str, tuple] = {}
        # a request's two children (its counter, its histogram) by (method, route, status): labels()
        # looks them up under a lock each time, ~3 % of a streamed record's event-loop time (issue 16)
        self._request_children: dict[tuple[str, str, int], tuple] = {}
        self.due_scheduled = Gauge("cdp_streaming_due_scheduled", "Profiles with a scheduled streaming re-evaluation.",
                                   registry=self.registry)
        self.due_overdue = Gauge("cdp_streaming_due_overdue", "Scheduled streaming re-evaluations already due.",
                                 registry=self.registry)
        self.due_lag = Gauge("cdp_streaming_due_lag_seconds", "How late the oldest due re-evaluation was when the "
                             "due job ran.", registry=self.registry)
        self.source_messages_total = Counter("cdp_source_messages", "Messages of the tracking API by source and "
                                             "outcome (accepted, rejected, duplicate).",
                                             ["sandbox", "source", "status"], registry=self.registry)
        self.delivery_attempts = Counter("cdp_delivery_attempts", "Webhook delivery attempts by outcome (delivered, "
                                         "retrying, dead).", ["outcome"], registry=self.registry)
        self.delivered_changes = Counter("cdp_delivered_changes", "Membership changes delivered to webhooks.",
                                         registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._request_children.get((method, route, status))
        if children is None:
            if len(self._request_children) >= 10_000:  # methods, route templates, statuses: a few hundred
                self._request_children.clear()
            children = self._request_children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    def ingested(self, sandbox: str, kind: str, count: int = 1) -> None:
        self.ingested_records.labels(sandbox, kind).inc(count)

    def rejected(self, sandbox: str, kind: str, count: int = 1) -> None:
        self.rejected_records.labels(sandbox, kind).inc(count)

    def evaluated(self, sandbox: str, spent: Iterable[tuple[str, float]]) -> None:
        """Streaming segments evaluated for one profile: (segment key, seconds) each."""
        self.segment_evaluations.record(sandbox, spent)

    def streaming_profile(self, sandbox: str, evaluate_seconds: float, write_seconds: float) -> None:
        children = self._profile_children.get(sandbox)
        if children is None:
            children = self._profile_children[sandbox] = (self.streaming_profile_seconds.labels(sandbox, "evaluate"),
                                                          self.streaming_profile_seconds.labels(sandbox, "write"))
        children[0].observe(evaluate_seconds)
        children[1].observe(write_seconds)

    def due_queue(self, scheduled: int, overdue: int, lag_seconds: float) -> None:
        self.last_due_lag = lag_seconds  # read by /healthz (degraded when re-evaluations run late)
        self.due_scheduled.set(scheduled)
        self.due_overdue.set(overdue)
        self.due_lag.set(lag_seconds)

    def source_messages(self, sandbox: str, source: str, status: str, count: int = 1) -> None:
        self.source_messages_total.labels(sandbox, source, status).inc(count)

    def delivery(self, outcome: str, changes: int) -> None:
        self.delivery_attempts.labels(outcome).inc()
        if outcome == "delivered":
            self.delivered_changes.inc(changes)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
