"""One conformance suite for every backend (DSL.md, all sections).

Cases are data (cases.toml: expression, expected ids, the section they exercise) over a fixed
dataset (profiles.jsonl); expected ids were worked out by hand from DSL.md. Each backend is a
function (cases, profiles) → ids; the SQL backends join the BACKENDS table when they land.
"""

from __future__ import annotations

import json
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdp.dsl import PqlError, check
from cdp.engine import compile_predicate, load_profile
from cdp.engine.profile import parse_timestamp

HERE = Path(__file__).parent
DEFAULT_AS_OF = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
CASES = tomllib.loads((HERE / "cases.toml").read_text(encoding="utf-8"))["case"]
DOCUMENTS = [json.loads(line) for line in (HERE / "profiles.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate_memory(expression: str, as_of: datetime, segments: dict | None) -> list[str]:
    predicate = compile_predicate(expression, segments=segments)
    return [p.id for p in _loaded() if predicate(p, as_of)]


_LOADED: list = []


def _loaded():
    if not _LOADED:
        _LOADED.extend(load_profile(d) for d in DOCUMENTS)
    return _LOADED


BACKENDS = {"memory": evaluate_memory}


def _case_id(case: dict) -> str:
    return case["name"]


def test_cases_are_well_formed():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    ids = {d["id"] for d in DOCUMENTS}
    assert len(CASES) >= 150
    for case in CASES:
        assert ("expected" in case) != ("error" in case), case["name"]
        assert set(case.get("expected", [])) <= ids, case["name"]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("case", [c for c in CASES if "expected" in c], ids=_case_id)
def test_case(case: dict, backend: str):
    as_of = parse_timestamp(case["as_of"]) if "as_of" in case else DEFAULT_AS_OF
    ids = BACKENDS[backend](case["expression"], as_of, case.get("segments"))
    assert ids == case["expected"], f"{case['section']}: {case.get('note', '')}"


@pytest.mark.parametrize("case", [c for c in CASES if "error" in c], ids=_case_id)
def test_invalid_case(case: dict):
    with pytest.raises(PqlError) as info:
        check(case["expression"], segments=case.get("segments"))
    assert case["error"] in info.value.codes, f"{case['section']}: got {info.value.codes}: {info.value}"
