"""bench/bench_scale.py --growth-from-log fits only comparable Spark runs (issue 21).

Until 2026-12-07 14:13 UTC the bench's compiled Spark (a) and (b) read the profile attributes
through JSON while the hand-written queries read the typed columns; those log lines stay in
bench/data/scale-event-columns.jsonl, so the growth fit must leave them out of (a) and (b) — and
say so — while keeping them for (c), which reads no attribute.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_scale():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_scale

        yield bench_scale
    finally:
        sys.path.remove(str(BENCH))


def spark_line(at: str, profiles: int, seconds: float, **extra) -> dict:
    return {"engine": "spark", "profiles": profiles, "at": at, "command": "…",
            **{f"spark_columns_{key}": seconds for key in "abc"},
            **{f"spark_cpu_columns_{key}": seconds for key in "abc"}, **extra}


LOG = [
    spark_line("2026-12-07T11:29:38+00:00", 1_000_000, 60.0),  # JSON-reading (a)/(b)
    spark_line("2026-12-07T14:10:08+00:00", 1_000_000, 6.6),  # JSON-reading (a)/(b), just before the fix
    spark_line("2026-12-07T14:13:09+00:00", 1_000_000, 1.5),  # after the fix, no field yet
    spark_line("2026-12-07T14:18:51+00:00", 2_000_000, 2.6),
    spark_line("2026-12-08T10:00:00+00:00", 4_000_000, 4.4, spark_compiled_reads_attribute_columns=True),
    spark_line("2026-12-08T11:00:00+00:00", 4_000_000, 40.0, spark_compiled_reads_attribute_columns=False),
]


def test_spark_a_and_b_keep_only_the_runs_that_read_the_typed_attribute_columns(bench_scale):
    excluded: list[str] = []
    series = bench_scale.growth_series(LOG, excluded)
    for key in "ab":
        assert series[("Spark local[2], compiled", key)] == {1_000_000: [1.5], 2_000_000: [2.6], 4_000_000: [4.4]}
        assert series[("Spark local[2], compiled, CPU (Python + JVM)", key)][1_000_000] == [1.5]
    # (c) reads no attribute: every run counts
    assert series[("Spark local[2], compiled", "c")] == {1_000_000: [60.0, 6.6, 1.5], 2_000_000: [2.6],
                                                          4_000_000: [4.4, 40.0]}
    assert excluded == ["Spark at 1,000,000 profiles, logged 2026-12-07T11:29:38+00:00: (a), (b)",
                        "Spark at 1,000,000 profiles, logged 2026-12-07T14:10:08+00:00: (a), (b)",
                        "Spark at 4,000,000 profiles, logged 2026-12-08T11:00:00+00:00: (a), (b)"]


def test_the_growth_report_says_what_it_left_out(bench_scale):
    text = bench_scale.growth_report(LOG)
    assert "Left out of Spark's (a) and (b): 3 run(s)" in text
    assert "logged 2026-12-07T14:10:08+00:00: (a), (b)" in text
    # the fit of (a) is over the comparable runs only: 1.5 s → 2.6 s → 4.4 s
    row = next(line for line in text.splitlines() if line.startswith("| Spark local[2], compiled | (a) |"))
    assert "| 1.50 s (1) | 2.60 s (1) | 4.40 s (1) |" in row
