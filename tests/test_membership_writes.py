"""One profile's membership changes written set-wise (cdp/storage/memberships.py write_profile —
on PostgreSQL one statement, on SQLite one executemany per table): for generated sequences of
changes and next-change instants, the memberships, the outbox, the hourly history and the
profile's due instant equal what a plain model of the contract says (API.md statuses; one outbox
row per change, in the segments' order; the hour's row counts entries and exits, its size the
members after the change, a first change of the hour counting the members; the instant only
lowered by a write, or deleted), on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.schema import luma_schema
from cdp.segments.streaming import _LISTED_AT_MOST, _load_with_state
from cdp.storage.memberships import MEMBER, due_form, hour_of, profile_state, write_profile
from cdp.storage.models import membership_changes, memberships, profiles, segment_due, segment_history, segments

T0 = datetime(2026, 12, 6, 9, 15, tzinfo=timezone.utc)
SEGMENTS = 4
_SANDBOXES = itertools.count()  # one sandbox per example


def _setup(connection, sandbox: str) -> tuple[list[int], list[int]]:
    segment_pks = [connection.execute(segments.insert().values(
        sandbox=sandbox, key=f"s{i}", name=f"s{i}", expression="loyalty.points > 1", canonical="x",
        status="active", evaluation="streaming", created_at=T0, updated_at=T0).returning(segments.c.pk)).scalar_one()
        for i in range(SEGMENTS)]
    profile_pks = [connection.execute(profiles.insert().values(
        sandbox=sandbox, external_id=f"p{i}", attributes={}, created_at=T0, updated_at=T0)
        .returning(profiles.c.pk)).scalar_one() for i in range(2)]
    return segment_pks, profile_pks


# a step: (minutes after T0, profile index, {segment index: qualifies}, instant: due in minutes | "undue" | None)
_steps = st.lists(st.tuples(
    st.integers(0, 150), st.integers(0, 1),
    st.dictionaries(st.integers(0, SEGMENTS - 1), st.booleans(), max_size=SEGMENTS),
    st.one_of(st.none(), st.just("undue"), st.integers(1, 10_000))),
    min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_steps)
def test_writes_equal_the_model(migrated_engine, steps):
    sandbox = f"writes-{next(_SANDBOXES)}"
    with migrated_engine.begin() as c:
        segment_pks, profile_pks = _setup(c, sandbox)
    members: dict[tuple[int, int], tuple[str, datetime, datetime | None]] = {}
    outbox: list[tuple] = []
    history: dict[tuple[int, datetime], list[int]] = {}
    due: dict[int, datetime] = {}  # profile → instant
    for minutes, who, verdicts, instant in sorted(steps, key=lambda step: step[0]):
        now = T0 + timedelta(minutes=minutes)
        profile_pk = profile_pks[who]
        with migrated_engine.begin() as c:
            current, stored = profile_state(c, profile_pk)
            # streaming's one read (the profile, its memberships and instant) says the same
            loaded, streaming_members, streaming_stored, saved = _load_with_state(
                c, profile_pk, luma_schema(), frozenset(), sorted(segment_pks))
            assert (loaded.id, streaming_members, streaming_stored, saved) == (f"p{who}", current, stored, None)
            # a long list of segments to evaluate reads all the profile's memberships instead
            padded = sorted(segment_pks) + [-n for n in range(1, _LISTED_AT_MOST + 1)]
            assert _load_with_state(c, profile_pk, luma_schema(), frozenset(), padded)[1:] == (current, stored, None)
            form = due_form(c)
            assert current == {s for (s, p), row in members.items() if p == profile_pk and row[0] in MEMBER}
            assert stored == (form(due[profile_pk]) if profile_pk in due else None)
            changes = [(segment_pks[i], f"s{i}", q) for i, q in sorted(verdicts.items())
                       if q != (segment_pks[i] in current)]
            set_due = now + timedelta(minutes=instant) if isinstance(instant, int) else None
            write_profile(c, sandbox=sandbox, profile_pk=profile_pk, profile_id=f"p{who}", now=now,
                          source="streaming", changes=changes, due=set_due, undue=instant == "undue")
        # the model
        for segment_pk, key, entered in sorted(changes):
            was = members.get((segment_pk, profile_pk))
            members[(segment_pk, profile_pk)] = ("realized", now, None) if entered else ("exited", was[1], now)
            outbox.append((segment_pk, key, profile_pk, f"p{who}", "entered" if entered else "exited", now))
            row = history.get((segment_pk, hour_of(now)))
            size = sum(1 for (s, _), m in members.items() if s == segment_pk and m[0] in MEMBER)
            if row is None:
                history[(segment_pk, hour_of(now))] = [size, int(entered), int(not entered)]
            else:
                row[0] += 1 if entered else -1
                row[1 if entered else 2] += 1
        if set_due is not None:
            due[profile_pk] = min(due.get(profile_pk, set_due), set_due)  # only ever lowered
        elif instant == "undue":
            due.pop(profile_pk, None)
    with migrated_engine.connect() as c:
        mine = segments.c.sandbox == sandbox
        stored_members = {(r.segment_pk, r.profile_pk): (r.status, r.entered_at, r.exited_at) for r in c.execute(
            sa.select(memberships).join(segments, segments.c.pk == memberships.c.segment_pk).where(mine))}
        stored_outbox = [tuple(r) for r in c.execute(sa.select(
            membership_changes.c.segment_pk, membership_changes.c.segment_key, membership_changes.c.profile_pk,
            membership_changes.c.profile_id, membership_changes.c.status, membership_changes.c.at)
            .where(membership_changes.c.sandbox == sandbox).order_by(membership_changes.c.pk))]
        stored_history = {(r.segment_pk, r.at): [r.size, r.entered, r.exited] for r in c.execute(
            sa.select(segment_history).join(segments, segments.c.pk == segment_history.c.segment_pk).where(mine))}
        stored_due = {r.profile_pk: r.due_at for r in c.execute(
            sa.select(segment_due).where(segment_due.c.sandbox == sandbox))}
    assert stored_members == members
    assert stored_outbox == outbox
    assert stored_history == history
    assert stored_due == due
