"""The data the server starts with on `make run` (`cdp serve --demo`): the Luma sample profiles
of examples/ (Sarah Rose and friends) and generated Luma profiles, loaded once into an empty
sandbox through the same loader the engine's tests use."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from cdp.demo.generator import generate_profiles
from cdp.storage.loader import load_documents
from cdp.storage.models import profiles

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "luma_profiles.jsonl"


def seed_demo_data(engine: sa.Engine, *, sandbox: str = "prod", generated: int = 1000) -> int:
    """Load the demo profiles when the sandbox holds none; returns how many were loaded."""
    with engine.begin() as connection:
        existing = connection.execute(
            sa.select(sa.func.count()).select_from(profiles).where(profiles.c.sandbox == sandbox)).scalar()
        if existing:
            return 0
        documents = []
        if SAMPLES.exists():
            documents += [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
        documents += list(generate_profiles(generated))
        return load_documents(connection, documents, sandbox=sandbox)
