"""Estimates above the exact limit, on SQLite and PostgreSQL: the kept profile count (inserts at
once, deletions within its age, per database and sandbox) and referenced segments computed on the
very sample the estimate reads (cdp/segments/estimates.py)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cdp.engine.sql.loading import load_documents
from cdp.schema import luma_schema
from cdp.segments import estimates, service
from cdp.segments.models import SegmentCreate, SegmentStatus
from cdp.storage.models import profiles

AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
_SANDBOXES = iter(range(1, 1000))


def _sandbox() -> str:
    return f"est-{next(_SANDBOXES)}"


def _store(engine: sa.Engine, sandbox: str, ids: range, tier=lambda i: "gold" if i % 4 == 0 else "silver") -> None:
    with engine.begin() as connection:
        load_documents(connection, [{"id": f"p{i:05d}", "attributes": {"loyalty": {"tier": tier(i)}}} for i in ids],
                       sandbox=sandbox)


def _count(engine: sa.Engine, sandbox: str, *, exact_limit: int = 10, max_age_s: float = 3600) -> int:
    with engine.connect() as connection:
        return estimates.profile_count(connection, sandbox, exact_limit=exact_limit, max_age_s=max_age_s)


def _delete(engine: sa.Engine, sandbox: str, ids: list[int]) -> None:
    with engine.begin() as connection:
        connection.execute(profiles.delete().where(profiles.c.sandbox == sandbox,
                                                   profiles.c.external_id.in_([f"p{i:05d}" for i in ids])))


def test_the_kept_count_follows_inserts_at_once_in_its_own_sandbox_only(migrated_engine):
    a, b = _sandbox(), _sandbox()
    _store(migrated_engine, a, range(30))
    assert _count(migrated_engine, a) == 30
    _store(migrated_engine, a, range(30, 35))
    assert _count(migrated_engine, a) == 35  # the new rows are counted on top of the kept count
    _store(migrated_engine, b, range(12))
    assert _count(migrated_engine, b) == 12 and _count(migrated_engine, a) == 35
    _store(migrated_engine, a, range(35, 40))
    assert _count(migrated_engine, a) == 40 and _count(migrated_engine, b) == 12


def test_deletions_show_within_the_age_or_at_once_below_the_exact_limit(migrated_engine):
    a, b = _sandbox(), _sandbox()
    _store(migrated_engine, a, range(30))
    _store(migrated_engine, b, range(12))  # b's rows sit above a's: deleting a's keeps the largest pk
    assert _count(migrated_engine, a) == 30
    _delete(migrated_engine, a, [0, 1, 2])
    assert _count(migrated_engine, a) == 30  # kept: deletions are the documented staleness …
    assert _count(migrated_engine, a, max_age_s=0) == 27  # … until the count is older than its age
    assert _count(migrated_engine, a) == 27
    _delete(migrated_engine, a, [3, 4])
    assert _count(migrated_engine, a, exact_limit=100) == 25  # at or below the exact limit: counted each time
    # deleting the rows at the top (the largest pk goes down): counted again at once
    _delete(migrated_engine, b, list(range(12)))
    assert _count(migrated_engine, b) == 0


def test_a_new_database_is_not_answered_from_another_ones_count(migrated_engine):
    sandbox = _sandbox()
    _store(migrated_engine, sandbox, range(20))
    assert _count(migrated_engine, sandbox) == 20
    other = sa.create_engine(migrated_engine.url)  # the same database: its own count, equal
    try:
        with other.connect() as connection:
            assert estimates.profile_count(connection, sandbox, exact_limit=10, max_age_s=3600) == 20
    finally:
        other.dispose()


def _estimate(engine: sa.Engine, sandbox: str, expression: str, seed: int, **options):
    random.seed(seed)  # the sample (TABLESAMPLE's seed, SQLite's rowid runs) comes from here
    with engine.connect() as connection:
        return estimates.estimate(connection=connection, sandbox=sandbox, expression=expression,
                                  schema=luma_schema(), as_of=AS_OF, **{"exact_limit": 1000, "sample_rows": 600,
                                                                        "timeout_ms": 60_000, **options})


def test_a_referenced_segment_is_computed_on_the_estimates_own_sample(migrated_engine):
    sandbox = _sandbox()
    _store(migrated_engine, sandbox, range(2000))
    with migrated_engine.begin() as connection:
        service.create_segment(connection=connection, sandbox=sandbox, schema=luma_schema(), spec=SegmentCreate(
            key="gold", name="gold", expression='loyalty.tier = "gold"', status=SegmentStatus.draft))
    for seed in (1, 2, 3):
        direct = _estimate(migrated_engine, sandbox, 'loyalty.tier = "gold"', seed)
        referenced = _estimate(migrated_engine, sandbox, 'in segment "gold"', seed)
        assert direct.sampled and referenced.sampled and 0 < direct.sample_size < 2000
        assert (referenced.count, referenced.sample_size, referenced.sample) == (
            direct.count, direct.sample_size, direct.sample)
        # a profile of the sample outside the segment's sample would count here
        assert _estimate(migrated_engine, sandbox, 'loyalty.tier = "gold" and not in segment "gold"', seed).count == 0
        assert direct.total_profiles == 2000 and abs(direct.count - 500) <= 4 * direct.error_bound / 1.96


@pytest.mark.parametrize("max_age_s", [0, 3600])
def test_estimates_scale_by_the_count_with_new_profiles(migrated_engine, max_age_s):
    sandbox = _sandbox()
    _store(migrated_engine, sandbox, range(1200))
    assert _estimate(migrated_engine, sandbox, "true", 1, count_max_age_s=max_age_s).total_profiles == 1200
    _store(migrated_engine, sandbox, range(1200, 1500))
    after = _estimate(migrated_engine, sandbox, "true", 1, count_max_age_s=max_age_s)
    assert after.total_profiles == 1500 and after.count == 1500  # every sampled profile qualifies


def test_evaluate_follows_a_referenced_segments_new_definition_in_its_own_sandbox(migrated_engine):
    """POST /v1/evaluate keeps the catalogue of a sandbox while its segments version stands."""
    from cdp.segments.models import EvaluateRequest, SegmentUpdate

    a, b = _sandbox(), _sandbox()
    schema = luma_schema()
    for sandbox, tier in ((a, "gold"), (b, "silver")):
        _store(migrated_engine, sandbox, range(2))  # p00000 gold, p00001 silver
        with migrated_engine.begin() as connection:
            for key, text in (("tier", f'loyalty.tier = "{tier}"'), ("ref", 'in segment "tier"')):
                service.create_segment(connection=connection, sandbox=sandbox, schema=schema, spec=SegmentCreate(
                    key=key, name=key, expression=text, status=SegmentStatus.draft))

    def qualifies(sandbox: str) -> bool:
        with migrated_engine.connect() as connection:
            return service.evaluate(connection=connection, sandbox=sandbox, schema=schema, spec=EvaluateRequest(
                segment="ref", profile_id="p00000", as_of=AS_OF)).qualifies

    assert (qualifies(a), qualifies(b), qualifies(a)) == (True, False, True)
    with migrated_engine.begin() as connection:
        service.update_segment(connection=connection, sandbox=a, key="tier", schema=schema,
                               spec=SegmentUpdate(expression='loyalty.tier = "silver"'))
    assert (qualifies(a), qualifies(b)) == (False, False)
    with migrated_engine.begin() as connection:
        service.update_segment(connection=connection, sandbox=b, key="tier", schema=schema,
                               spec=SegmentUpdate(expression='loyalty.tier = "gold"'))
    assert (qualifies(a), qualifies(b)) == (False, True)


def test_referenced_segments_inlined_or_not_count_as_their_definitions(migrated_engine):
    """Leaf segments are compiled in place (SqlCompiler.inline_leaf), one that references others
    stays a CTE; either way a reference is membership: TRUE or FALSE, never UNKNOWN (a profile
    without points is not in "rich", so it is `not in segment "rich"`)."""
    sandbox = _sandbox()
    with migrated_engine.begin() as connection:
        load_documents(connection, [{"id": f"p{i:05d}", "attributes": {"loyalty": {
            "tier": "gold" if i % 4 == 0 else "silver", **({} if i % 3 == 0 else {"points": i % 250})}}}
            for i in range(2000)], sandbox=sandbox)
        for key, text in (("rich", "loyalty.points > 100"), ("gold", 'loyalty.tier = "gold"'),
                          ("rich-gold", 'in segment "rich" and in segment "gold"')):
            service.create_segment(connection=connection, sandbox=sandbox, schema=luma_schema(), spec=SegmentCreate(
                key=key, name=key, expression=text, status=SegmentStatus.draft))
    pairs = [('not in segment "rich"', "loyalty.points is null or loyalty.points <= 100"),
             ('in segment "rich-gold" or not in segment "gold"',
              'loyalty.points > 100 and loyalty.tier = "gold" or loyalty.tier != "gold"'),
             ('(in segment "rich" or in segment "gold") and not in segment "rich-gold"',
              '(loyalty.points > 100 or loyalty.tier = "gold")'
              ' and not (loyalty.points is not null and loyalty.points > 100 and loyalty.tier = "gold")')]
    for referenced, direct in pairs:
        for seed in (1, 2):
            exact = [_estimate(migrated_engine, sandbox, text, seed, exact_limit=5000) for text in (referenced, direct)]
            assert not exact[0].sampled and exact[0].count == exact[1].count > 0, referenced
            assert exact[0].sample == exact[1].sample
            sampled = [_estimate(migrated_engine, sandbox, text, seed) for text in (referenced, direct)]
            assert sampled[0].sampled and (sampled[0].count, sampled[0].sample_size, sampled[0].sample) == (
                sampled[1].count, sampled[1].sample_size, sampled[1].sample), referenced
