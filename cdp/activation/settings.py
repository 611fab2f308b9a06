"""Settings of delivery and file export, from the environment (``CDP_ACTIVATION_MAX_ATTEMPTS`` …)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ActivationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_ACTIVATION_", extra="ignore")

    export_root: Path = Field(default=Path("var/exports"), description="File destinations write into folders under "
                                                                       "it (a destination's directory is relative).")
    max_attempts: int = Field(default=8, ge=1, le=100, description="Attempts of a webhook delivery before it is dead.")
    backoff_seconds: float = Field(default=1.0, ge=0, description="Wait after the first failed attempt; doubled per "
                                                                  "attempt, with jitter (50–100 %).")
    max_backoff_seconds: float = Field(default=300.0, ge=0, description="The longest wait between two attempts.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="A receiver that has not answered by then failed "
                                                                   "this attempt.")
    batch_size: int = Field(default=100, ge=1, le=10_000, description="At most this many changes per webhook POST.")
    poll_seconds: float = Field(default=0.05, gt=0, description="How often the delivery loop looks at the outbox "
                                                                "when nothing woke it.")
    wake_coalesce_seconds: float = Field(default=0.02, ge=0, le=5, description=(
        "A woken delivery loop starts its next cycle no sooner than this after the last one began: "
        "under a stream of ingest requests (each that changes a membership wakes it) one cycle serves all the changes of that "
        "interval instead of one cycle per request (0: a cycle per wake)."))
    consent_every_seconds: float = Field(default=5.0, gt=0, description="How often consent withdrawals (and grants) "
                                                                        "of exported members are looked for.")
    senders: int = Field(default=4, ge=1, le=64, description="Destinations sent to at once (one POST at a time "
                                                             "each, so changes stay in order).")
