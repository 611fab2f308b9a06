"""Streaming segments over HTTP, on SQLite and PostgreSQL, with the service's clock injected:
the Luma story steps 6 and 8 on the streaming path (entry on ingest, exit on ingest, exit when a
window passes with no new data), each change in the outbox once; merges; what is not evaluated."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.segments.due import run_due
from cdp.storage.database import write_transaction
from cdp.storage.models import membership_changes, segment_due, segment_due_saved
from tests.api.conftest import create_dataset as _dataset

GIFT_GIVERS = (Path(__file__).parents[2] / "examples" / "gift_giving_cart_abandoners.pql").read_text()
SARAH_EMAIL = {"namespace": "email", "id": "sarah.rose@example.com"}
CRM = {"namespace": "crm_id", "id": "C-1001"}
WEB_COOKIE = {"namespace": "ecid", "id": "web-cookie-1"}
MOBILE_COOKIE = {"namespace": "ecid", "id": "mobile-cookie-2"}
T0 = datetime(2026, 12, 3, 15, 0, tzinfo=timezone.utc)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(api):
    """The service's clock, set to T0 for the test (and given back after)."""
    before = api.app.state.clock
    api.app.state.clock = clock = Clock(T0)
    yield clock
    api.app.state.clock = before


def _segment(api, key: str, expression: str, **fields) -> dict:
    response = api.post("/v1/segments", json={"key": key, "name": fields.pop("name", key), "expression": expression,
                                              "evaluation": fields.pop("evaluation", "streaming"), **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _ingest(api, dataset_id: int, records: list) -> None:
    response = api.post(f"/v1/datasets/{dataset_id}/records", json={"records": records})
    assert response.status_code == 200, response.text
    assert all(r["status"] == "accepted" for r in response.json()["results"]), response.text


def _members(api, key: str) -> list[tuple[str, str]]:
    response = api.get(f"/v1/segments/{key}/members")
    assert response.status_code == 200, response.text
    return [(m["profile_id"], m["status"]) for m in response.json()["items"]]


def _outbox(engine, sandbox: str) -> list[tuple[str, str, str, datetime, str]]:
    with engine.connect() as connection:
        return [(r.segment_key, r.profile_id, r.status, r.at, r.source) for r in connection.execute(
            sa.select(membership_changes).where(membership_changes.c.sandbox == sandbox)
            .order_by(membership_changes.c.pk))]


def _due(engine, sandbox: str) -> list[datetime]:
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(segment_due.c.due_at).where(segment_due.c.sandbox == sandbox))
                      .scalars())


def test_luma_streaming_entry_and_exits(api, engine, sandbox, clock):
    """Step 6: Sarah enters "Gift-giving cart abandoners" when her addToCart event is ingested (no
    batch run); step 8: she exits at once when her purchase on the phone is ingested; "bought in
    the last 3 hours" lets her go 3 hours after the purchase with no new data. Each change lands in
    the outbox once."""
    crm, web, mobile = (_dataset(api, "profile", "CRM contacts"), _dataset(api, "event", "Web events"),
                        _dataset(api, "event", "Mobile events"))
    _segment(api, "gift-givers", GIFT_GIVERS, name="Gift-giving cart abandoners")
    _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours',
             name="Bought in the last 3 hours")
    _segment(api, "batch-only", 'exists event where type = "addToCart"', evaluation="batch")
    _ingest(api, crm, [{"identities": [SARAH_EMAIL, CRM], "attributes": {
        "person": {"first_name": "Sarah", "last_name": "Rose"}, "loyalty": {"tier": "bronze"},
        "preferred_category": "womens", "preferred_size": "S"}}])
    assert _outbox(engine, sandbox) == []
    _ingest(api, web, [
        {"identities": [WEB_COOKIE, SARAH_EMAIL, CRM], "event": {"id": "w-2", "type": "login", "timestamp": _iso(
            T0 - timedelta(days=2, minutes=5)), "channel": "web"}},
        {"identities": [WEB_COOKIE], "event": {"id": "w-3", "type": "addToCart", "timestamp": _iso(
            T0 - timedelta(days=2)), "channel": "web",
            "product": {"sku": "MH01-L", "size": "L", "category": "mens", "price": 52.0}}}])
    sarah = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["id"]
    assert _members(api, "gift-givers") == [(sarah, "realized")]  # at ingest, not at a batch run
    assert _members(api, "batch-only") == []  # batch segments wait for their run
    assert _outbox(engine, sandbox) == [("gift-givers", sarah, "entered", T0, "streaming")]

    clock.at = T0 + timedelta(minutes=30)
    bought = T0 + timedelta(minutes=20)
    _ingest(api, mobile, [{"identities": [MOBILE_COOKIE, SARAH_EMAIL], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(bought), "channel": "mobile",
        "device": {"type": "phone"}, "order": {"id": "o-1", "total": 52.0}}}])
    # the purchase is more than a day after the cart: the cart was abandoned, she stays; the
    # purchase puts her among the recent buyers
    assert _members(api, "recent-buyers") == [(sarah, "realized")]
    assert bought + timedelta(hours=3) in _due(engine, sandbox)  # the window's end is scheduled

    # nothing changes before the 3 hours are up
    assert run_due(lambda: write_transaction(engine), now=bought + timedelta(hours=2)) >= 0
    assert _members(api, "recent-buyers") == [(sarah, "realized")]
    later = bought + timedelta(hours=3, seconds=1)
    while run_due(lambda: write_transaction(engine), now=later):
        pass
    assert [k for k, *_ in _outbox(engine, sandbox)].count("recent-buyers") == 2
    assert _outbox(engine, sandbox)[-1] == ("recent-buyers", sarah, "exited", _outbox(engine, sandbox)[-1][3],
                                            "streaming")
    assert _outbox(engine, sandbox)[-1][3] <= later
    assert run_due(lambda: write_transaction(engine), now=later) == 0  # done once: no second exit
    assert [k for k, *_ in _outbox(engine, sandbox)].count("recent-buyers") == 2


def test_luma_streaming_purchase_exits_at_once(api, engine, sandbox, clock):
    """Step 8: a purchase within a day of the cart, ingested, makes Sarah exit at once."""
    crm, web, mobile = (_dataset(api, "profile", "CRM contacts"), _dataset(api, "event", "Web events"),
                        _dataset(api, "event", "Mobile events"))
    _segment(api, "gift-givers", GIFT_GIVERS, name="Gift-giving cart abandoners")
    _ingest(api, crm, [{"identities": [SARAH_EMAIL, CRM], "attributes": {
        "loyalty": {"tier": "bronze"}, "preferred_category": "womens", "preferred_size": "S"}}])
    _ingest(api, web, [{"identities": [WEB_COOKIE, SARAH_EMAIL], "event": {
        "id": "w-3", "type": "addToCart", "timestamp": _iso(T0 - timedelta(days=2)), "channel": "web",
        "product": {"sku": "MH01-L", "size": "L", "category": "mens", "price": 52.0}}}])
    sarah = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["id"]
    assert _members(api, "gift-givers") == [(sarah, "realized")]
    clock.at = T0 + timedelta(minutes=1)
    _ingest(api, mobile, [{"identities": [MOBILE_COOKIE, SARAH_EMAIL], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(T0 - timedelta(days=1, hours=20)), "channel": "mobile",
        "device": {"type": "phone"}, "order": {"id": "o-1", "total": 52.0}}}])
    assert _members(api, "gift-givers") == []
    assert _outbox(engine, sandbox) == [("gift-givers", sarah, "entered", T0, "streaming"),
                                        ("gift-givers", sarah, "exited", T0 + timedelta(minutes=1), "streaming")]


def test_unaffected_segments_not_evaluated_and_references_follow(api, engine, sandbox, clock):
    """An attribute record evaluates no segment reading only events; a segment referencing a
    streaming segment follows it in the same request."""
    crm, web = _dataset(api, "profile", "CRM"), _dataset(api, "event", "Web")
    _segment(api, "carts", 'exists event where type = "addToCart"')
    _segment(api, "gold", 'loyalty.tier = "gold"')
    _segment(api, "gold-carts", 'in segment "gold" and in segment "carts"')
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "w-1", "type": "login", "timestamp": _iso(T0), "channel": "web"}}])
    assert _outbox(engine, sandbox) == []
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "w-2", "type": "addToCart", "timestamp": _iso(T0), "channel": "web",
        "product": {"sku": "MH01-L", "size": "L", "category": "mens", "price": 52.0}}}])
    sarah = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["id"]
    assert [(k, s) for k, _, s, *_ in _outbox(engine, sandbox)] == [("carts", "entered")]
    _ingest(api, crm, [{"identities": [SARAH_EMAIL], "attributes": {"loyalty": {"tier": "gold"}}}])
    assert [(k, s) for k, _, s, *_ in _outbox(engine, sandbox)] == [
        ("carts", "entered"), ("gold", "entered"), ("gold-carts", "entered")]
    assert _members(api, "gold-carts") == [(sarah, "realized")]


def test_merge_exits_the_merged_away_profile(api, engine, sandbox, clock):
    """Two profiles linked by a record: the merged-away profile's memberships exit (outbox), the
    survivor is re-evaluated."""
    web = _dataset(api, "event", "Web")
    _segment(api, "carts", 'exists event where type = "addToCart"')
    _segment(api, "logins", 'exists event where type = "login"')
    _ingest(api, web, [{"identities": [WEB_COOKIE], "event": {
        "id": "w-1", "type": "addToCart", "timestamp": _iso(T0), "channel": "web",
        "product": {"sku": "MH01-L", "size": "L", "category": "mens", "price": 52.0}}}])
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "w-2", "type": "login", "timestamp": _iso(T0), "channel": "web"}}])
    before = {(k, p) for k, p, s, *_ in _outbox(engine, sandbox)}
    assert len(before) == 2
    _ingest(api, web, [{"identities": [WEB_COOKIE, SARAH_EMAIL], "event": {
        "id": "w-3", "type": "login", "timestamp": _iso(T0), "channel": "web"}}])
    survivor = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["id"]
    assert _members(api, "carts") == [(survivor, "realized")] and _members(api, "logins") == [(survivor, "realized")]
    changes = _outbox(engine, sandbox)[2:]
    gone = [(k, s) for k, p, s, *_ in changes if p != survivor]
    assert gone == [(next(k for k, p in before if p != survivor), "exited")]


def _saved_due(engine, sandbox: str) -> list[datetime]:
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(segment_due_saved.c.due_at)
                                         .where(segment_due_saved.c.sandbox == sandbox)).scalars())


def test_a_streaming_segment_saved_over_existing_data_lets_members_go_when_windows_pass(api, engine, sandbox, clock):
    """Saved after the purchase: a member from the save on; every profile is scheduled
    (GET shows how many), and the due job lets her go when the 3 hours are up."""
    web = _dataset(api, "event", "Web")
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(T0 - timedelta(hours=1)), "channel": "web",
        "order": {"id": "o-1", "total": 52.0}}}])
    _ingest(api, web, [{"identities": [CRM], "event": {
        "id": "w-1", "type": "login", "timestamp": _iso(T0 - timedelta(hours=1)), "channel": "web"}}])
    saved = _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours')
    sarah = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["id"]
    assert saved["size"] == 1 and saved["scheduled"] == 2
    assert _segment(api, "gold", 'loyalty.tier = "gold"')["scheduled"] == 0  # time cannot change it
    while run_due(lambda: write_transaction(engine), now=T0):
        pass
    assert api.get("/v1/segments/recent-buyers").json()["scheduled"] == 1  # only Sarah's answer can change
    assert _due(engine, sandbox) == [T0 + timedelta(hours=2)]
    while run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=2, seconds=1)):
        pass
    assert _members(api, "recent-buyers") == []
    assert [(k, s) for k, p, s, *_ in _outbox(engine, sandbox) if p == sarah] == [
        ("recent-buyers", "entered"), ("recent-buyers", "exited")]
    assert api.get("/v1/segments/recent-buyers").json()["scheduled"] == 0


def test_metrics_count_streaming_evaluations_and_the_due_queue(api, engine, sandbox, clock):
    web = _dataset(api, "event", "Web")
    _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours')
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(T0), "channel": "web", "order": {"id": "o", "total": 1.0}}}])
    from cdp.segments.due import due_job_kind

    class Context:  # what the runner gives a job: its engine and its clock
        def __init__(self):
            self.engine = engine
            self.clock = lambda: T0 + timedelta(hours=4)

    due_job_kind(api.app.state.metrics).run(Context())
    text = api.get("/metrics").text
    assert f'cdp_streaming_evaluations_total{{sandbox="{sandbox}",segment="recent-buyers"}} 2.0' in text
    assert f'cdp_streaming_evaluation_seconds_count{{sandbox="{sandbox}",segment="recent-buyers"}} 2.0' in text
    assert "cdp_streaming_due_scheduled " in text and "cdp_streaming_due_lag_seconds " in text
    for phase in ("evaluate", "write"):  # the ingest's profile and the due job's: two each
        assert f'cdp_streaming_profile_seconds_count{{phase="{phase}",sandbox="{sandbox}"}} 2.0' in text
    assert _members(api, "recent-buyers") == []


def test_the_due_job_runs_at_the_configured_interval(api, engine, monkeypatch):
    """One recurring due job per database; its interval is CDP_SEGMENT_DUE_EVERY_SECONDS, and a
    changed setting changes the stored job at the next start (it is not re-created)."""
    from cdp.api.app import job_registry
    from cdp.segments.settings import SegmentSettings
    from cdp.segments.due import DUE_KIND, schedule_due_job
    from cdp.storage.models import jobs

    def stored() -> list[float]:
        with engine.connect() as connection:
            return list(connection.execute(sa.select(jobs.c.interval_seconds).where(jobs.c.kind == DUE_KIND))
                        .scalars())

    assert stored() == [30.0]  # the app's start scheduled it with the default
    monkeypatch.setenv("CDP_SEGMENT_DUE_EVERY_SECONDS", "2.5")
    every = timedelta(seconds=SegmentSettings().due_every_seconds)
    schedule_due_job(engine, job_registry(api.app.state.metrics), every=every)
    assert stored() == [2.5]
    schedule_due_job(engine, job_registry(api.app.state.metrics), every=every)
    assert stored() == [2.5]


def test_privacy_deletion_writes_the_exits_to_the_outbox(api, engine, sandbox, clock):
    web = _dataset(api, "event", "Web")
    _segment(api, "buyers", 'exists event where type = "purchase"')
    _ingest(api, web, [{"identities": [SARAH_EMAIL], "event": {
        "id": "m-1", "type": "purchase", "timestamp": _iso(T0), "channel": "web", "order": {"id": "o", "total": 1.0}}}])
    sarah = api.get("/v1/profiles/lookup", params=SARAH_EMAIL).json()["id"]
    response = api.delete("/v1/profiles/lookup", params=SARAH_EMAIL)
    assert response.status_code == 200, response.text
    assert [(k, p, s) for k, p, s, *_ in _outbox(engine, sandbox)] == [("buyers", sarah, "entered"),
                                                                        ("buyers", sarah, "exited")]
    assert _outbox(engine, sandbox)[-1][4] == "privacy" and _members(api, "buyers") == []


def test_a_batch_segment_made_streaming_is_evaluated_and_scheduled_at_once(api, engine, sandbox, clock):
    """PATCH evaluation=streaming of an active batch segment: its members are brought up to date
    and its profiles' next instants scheduled then, as for a streaming segment saved anew — not left
    as of its last batch run until one comes."""
    web = _dataset(api, "event", "Web")
    _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours', evaluation="batch")
    _ingest(api, web, [{"identities": [{"namespace": "email", "id": "b@example.com"}], "event": {
        "id": "b-1", "type": "purchase", "timestamp": _iso(T0), "channel": "web", "order": {"id": "o1", "total": 1.0}}}])
    assert _members(api, "recent-buyers") == [] and _due(engine, sandbox) == []  # batch: no run since
    response = api.patch("/v1/segments/recent-buyers", json={"evaluation": "streaming"})
    assert response.status_code == 200, response.text
    assert [status for _, status in _members(api, "recent-buyers")] == ["realized"]
    # due now for the segment (segment_due_saved, migration 0023): the wave then stores her instant
    assert _due(engine, sandbox) == [] and _saved_due(engine, sandbox) == [T0]
    assert api.get("/v1/segments/recent-buyers").json()["scheduled"] == 1
    # the waves then let her go when her purchase is 3 hours old (and leave no due row behind
    # for the next tests' waves, which run over every sandbox of this module's database)
    while run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=4)):
        pass
    assert _due(engine, sandbox) == [] and _saved_due(engine, sandbox) == [] and _members(api, "recent-buyers") == []


def test_a_wave_stopped_midway_loses_nothing(api, engine, sandbox, clock):
    """Each profile's re-evaluation and the removal of its due row commit together: a wave that
    stops after some profiles (here: the third transaction fails) leaves the others due, and the
    next wave does them — each exit in the outbox once. Profiles that share a transaction (the
    default: several per transaction) stay due together when it fails."""
    web = _dataset(api, "event", "Web")
    _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours')
    for n in range(5):
        _ingest(api, web, [{"identities": [{"namespace": "email", "id": f"p{n}@example.com"}], "event": {
            "id": f"m-{n}", "type": "purchase", "timestamp": _iso(T0), "channel": "web",
            "order": {"id": f"o{n}", "total": 1.0}}}])
    assert len(_due(engine, sandbox)) == 5
    later = T0 + timedelta(hours=4)
    opened = []

    class Stop(Exception):
        pass

    from contextlib import contextmanager

    @contextmanager
    def failing_third():
        opened.append(1)
        with write_transaction(engine) as connection:
            yield connection
            if len(opened) == 4:  # the listing, then profiles 1, 2 and (failing) 3
                raise Stop

    @contextmanager
    def failing_first():
        opened.append(1)
        with write_transaction(engine) as connection:
            yield connection
            if len(opened) == 2:  # the listing's transaction, then the wave's first: fails
                raise Stop

    with pytest.raises(Stop):
        run_due(failing_first, now=later)  # all five in one transaction: all stay due
    assert len(_due(engine, sandbox)) == 5 and len(_members(api, "recent-buyers")) == 5
    opened.clear()
    with pytest.raises(Stop):
        run_due(failing_third, now=later, batch=1)  # a transaction per profile
    assert len(_due(engine, sandbox)) == 3 and len(_members(api, "recent-buyers")) == 3
    while run_due(lambda: write_transaction(engine), now=later):
        pass
    assert _due(engine, sandbox) == [] and _members(api, "recent-buyers") == []
    exits = [p for k, p, s, *_ in _outbox(engine, sandbox) if s == "exited"]
    assert len(exits) == 5 == len(set(exits))


def test_a_record_moving_an_instant_later_keeps_the_early_one(api, engine, sandbox, clock):
    """A second purchase an hour after the first moves "bought in the last 3 hours"'s instant from
    T0+3h to T0+4h: the stored T0+3h stays (an instant may be early, never late), the re-evaluation
    at it keeps her a member and schedules T0+4h, and she exits then — once."""
    web = _dataset(api, "event", "Web events")
    _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours')

    def purchase(event_id: str, at: datetime) -> dict:
        return {"identities": [WEB_COOKIE], "event": {"id": event_id, "type": "purchase", "timestamp": _iso(at),
                                                      "order": {"id": event_id, "total": 10.0}}}

    minute = timedelta(minutes=1)
    _ingest(api, web, [purchase("p-1", T0 - minute)])
    assert _due(engine, sandbox) == [T0 + timedelta(hours=3) - minute]
    clock.at = T0 + timedelta(hours=1)
    _ingest(api, web, [purchase("p-2", T0 + timedelta(hours=1) - minute)])
    assert _due(engine, sandbox) == [T0 + timedelta(hours=3) - minute]  # later: not rewritten
    assert run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=3)) == 1
    assert [status for _, status in _members(api, "recent-buyers")] == ["realized"]
    assert _due(engine, sandbox) == [T0 + timedelta(hours=4) - minute]
    assert run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=4)) == 1
    assert [status for _, status in _members(api, "recent-buyers") if status != "exited"] == []
    assert [(k, s) for k, _, s, *_ in _outbox(engine, sandbox)] == [("recent-buyers", "entered"),
                                                                    ("recent-buyers", "exited")]


def test_one_instant_per_profile_covers_the_segments_a_record_does_not_evaluate(api, engine, sandbox, clock):
    """One stored instant per profile (migration 0018), the earliest of its timed segments': a
    purchase schedules "bought in the last 3 hours"'s end; a cart an hour later evaluates only the
    cart segment and lowers the instant to its end; the due job there re-evaluates both (the cart
    one exits, the buyer stays) and schedules the purchase window's end, where she exits it. The
    segment shows the profiles scheduled."""
    web = _dataset(api, "event", "Web events")
    _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours')
    _segment(api, "recent-carts", 'exists event where type = "addToCart" within last 1 hours')
    minute = timedelta(minutes=1)
    _ingest(api, web, [{"identities": [WEB_COOKIE], "event": {"id": "p-1", "type": "purchase",
                                                              "timestamp": _iso(T0 - minute)}}])
    assert _due(engine, sandbox) == [T0 + timedelta(hours=3) - minute]
    clock.at = T0 + timedelta(hours=1)
    _ingest(api, web, [{"identities": [WEB_COOKIE], "event": {"id": "c-1", "type": "addToCart",
                                                              "timestamp": _iso(T0 + timedelta(hours=1) - minute)}}])
    assert _due(engine, sandbox) == [T0 + timedelta(hours=2) - minute]  # one row: the earlier
    assert api.get("/v1/segments/recent-buyers").json()["scheduled"] == 1
    assert run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=2)) == 1
    assert [s for _, s in _members(api, "recent-carts") if s != "exited"] == []
    assert [s for _, s in _members(api, "recent-buyers")] == ["realized"]
    assert _due(engine, sandbox) == [T0 + timedelta(hours=3) - minute]
    assert run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=3)) == 1
    assert [s for _, s in _members(api, "recent-buyers") if s != "exited"] == []
    assert _due(engine, sandbox) == []  # nothing left that time alone can change
    assert api.get("/v1/segments/recent-buyers").json()["scheduled"] == 0
    assert sorted((k, s) for k, _, s, *_ in _outbox(engine, sandbox)) == [
        ("recent-buyers", "entered"), ("recent-buyers", "exited"), ("recent-carts", "entered"),
        ("recent-carts", "exited")]


def test_saving_a_timed_segment_starts_a_wave_that_evaluates_only_it(api, engine, sandbox, clock):
    """Saving a timed streaming segment over existing profiles makes them due for THAT segment
    (``segment_due_saved``, migration 0023): the wave evaluates, per profile, the segments saved
    since — not all its timed segments (was: profiles × timed segments for each save). The
    profiles' own instants stand for the others, and at them everything is evaluated again."""
    web = _dataset(api, "event", "Web")
    clock.at = T0 - timedelta(hours=2)  # saved (evaluated) before the one saved at T0
    _segment(api, "recent-buyers", 'exists event where type = "purchase" within last 3 hours')
    _segment(api, "two-day-buyers", 'exists event where type = "purchase" within last 2 days')
    clock.at = T0
    for n in range(3):
        _ingest(api, web, [{"identities": [{"namespace": "email", "id": f"p{n}@example.com"}], "event": {
            "id": f"m-{n}", "type": "purchase", "timestamp": _iso(T0 - timedelta(hours=1)), "channel": "web",
            "order": {"id": f"o{n}", "total": 1.0}}}])
    own = [T0 + timedelta(hours=2)] * 3  # recent-buyers' end, each profile's own instant
    assert _due(engine, sandbox) == own
    metrics = api.app.state.metrics

    def counts() -> dict[str, int]:
        return {key: metrics.segment_evaluations.count(sandbox, key)
                for key in ("recent-buyers", "two-day-buyers", "day-buyers")}

    before = counts()
    saved = _segment(api, "day-buyers", 'exists event where type = "purchase" within last 1 days')
    assert saved["size"] == 3 and saved["scheduled"] == 3
    while run_due(lambda: write_transaction(engine), now=T0, metrics=metrics):
        pass
    assert counts() == {**before, "day-buyers": 3}  # only the segment saved, once a profile
    assert _due(engine, sandbox) == own  # its end (T0 + 23 h) is later: the own instants stand
    assert api.get("/v1/segments/day-buyers").json()["scheduled"] == 3
    while run_due(lambda: write_transaction(engine), now=T0 + timedelta(hours=2, seconds=1), metrics=metrics):
        pass
    assert counts() == {"recent-buyers": before["recent-buyers"] + 3, "two-day-buyers": before["two-day-buyers"] + 3,
                        "day-buyers": 6}  # at an own instant: all of them
    assert [s for _, s in _members(api, "recent-buyers") if s != "exited"] == []
    assert len(_members(api, "day-buyers")) == 3 and len(_members(api, "two-day-buyers")) == 3
    assert _due(engine, sandbox) == [T0 + timedelta(hours=23)] * 3


def test_a_request_of_several_people_moves_the_hours_history_once(api, engine, sandbox, clock):
    """A request whose records change several profiles moves the hour's segment_history rows in one
    statement at its end (StreamingEvaluator.profiles_changed: the rows shared with concurrent
    writers locked in one order — per profile, two requests deadlocked on PostgreSQL), and the
    history counts every entry."""
    crm = _dataset(api, "profile", "CRM contacts")
    _segment(api, "gold", 'loyalty.tier = "gold"')
    updates: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if "UPDATE segment_history" in statement:
            updates.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        _ingest(api, crm, [{"identities": [{"namespace": "email", "id": f"p{i}@example.com"}],
                            "attributes": {"loyalty": {"tier": "gold"}}} for i in range(3)])
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert len(updates) == 1, updates  # per profile: one each
    with engine.connect() as connection:
        entered, size = connection.execute(sa.text(
            "SELECT h.entered, h.size FROM segment_history h JOIN segments s ON s.pk = h.segment_pk "
            "WHERE s.sandbox = :sandbox AND s.key = 'gold'"), {"sandbox": sandbox}).one()
    assert (entered, size) == (3, 3)
    assert [(key, status) for key, _, status, _, _ in _outbox(engine, sandbox)] == [("gold", "entered")] * 3
