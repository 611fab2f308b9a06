"""The streaming evaluations' collector (cdp/observability/metrics.py ``SegmentEvaluations``)
exposes exactly what a prometheus_client Counter and Histogram fed the same observations expose."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from cdp.observability.metrics import EVALUATION_BUCKETS, Metrics

observations = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["seg-1", "seg-2", "x\"y"]),
                                  st.one_of(st.sampled_from(EVALUATION_BUCKETS),  # on a bound: inclusive
                                            st.floats(0, 0.2, allow_nan=False))), max_size=30)


def _reference(seen: list[tuple[str, str, float]]) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("cdp_streaming_evaluations", "Streaming segments evaluated for a profile.",
                      ["sandbox", "segment"], registry=registry)
    histogram = Histogram("cdp_streaming_evaluation_seconds", "Time to evaluate a streaming segment for a profile.",
                          ["sandbox", "segment"], registry=registry, buckets=EVALUATION_BUCKETS)
    for sandbox, segment, seconds in sorted(seen, key=lambda o: (o[0], o[1])):
        counter.labels(sandbox, segment).inc()
        histogram.labels(sandbox, segment).observe(seconds)
    return generate_latest(registry)


def _ours(seen: list[tuple[str, str, float]]) -> bytes:
    metrics = Metrics()
    for sandbox, segment, seconds in seen:  # one call per profile in the service; grouping does not matter
        metrics.evaluated(sandbox, [(segment, seconds)])
    registry = CollectorRegistry()
    registry.register(metrics.segment_evaluations)
    return generate_latest(registry)


def _samples(text: bytes) -> dict[str, float]:
    lines = [line for line in text.decode().splitlines() if line and not line.startswith("#")]
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines)}


@settings(max_examples=60, deadline=None)
@given(observations)
def test_the_collector_exposes_what_a_counter_and_a_histogram_would(seen):
    ours, reference = _samples(_ours(seen)), _samples(_reference(seen))
    assert ours.keys() == reference.keys()
    for name, value in reference.items():
        assert abs(ours[name] - value) <= 1e-9 * max(1.0, abs(value)), name


def test_counts_per_segment():
    metrics = Metrics()
    metrics.evaluated("s", [("a", 0.001), ("b", 0.002), ("a", 0.003)])
    assert (metrics.segment_evaluations.count("s", "a"), metrics.segment_evaluations.count("s", "b"),
            metrics.segment_evaluations.count("s", "c")) == (2, 1, 0)
    assert 'cdp_streaming_evaluations_total{sandbox="s",segment="a"} 2.0' in metrics.exposition()[0].decode()
