"""Settings of segment estimates, from the environment (``CDP_SEGMENT_ESTIMATE_EXACT_LIMIT`` …)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SegmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_SEGMENT_", extra="ignore")

    estimate_exact_limit: int = Field(
        default=100_000, ge=0, description="Estimates are exact counts when the sandbox holds at most this many "
                                           "profiles; above it, they come from a random sample.")
    estimate_sample_rows: int = Field(default=20_000, ge=100, description="About how many profiles a sampled "
                                                                          "estimate reads.")
    batch_every_hours: float = Field(
        default=24, ge=0, description="A sandbox gets a batch run when one of its active segments was last "
                                      "evaluated longer ago than this (0: never by the clock).")
    estimate_count_max_age_s: float = Field(
        default=60, ge=0, description="Above the exact limit, the sandbox's profile count an estimate scales by "
                                      "is kept and brought up to date with new profiles; deletions show within "
                                      "this many seconds (0: count every time).")
    due_every_seconds: float = Field(
        default=30, gt=0, description="How often the `segments.due` job looks for profiles whose streaming "
                                      "memberships can change with time alone and re-evaluates them: a "
                                      "time-based exit or entry lands at most this late.")
    estimate_timeout_ms: int = Field(default=5_000, ge=10, description="An estimate running longer is stopped "
                                                                        "(422 estimate_timeout).")
