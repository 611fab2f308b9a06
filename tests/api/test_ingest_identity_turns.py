"""Two single-record POSTs of the same new person in flight at once. The second waits for
the first's turn on the person's identities (cdp/identity/turns.py) and then writes once, linked to
the profile the first created — it no longer inserts the identity beside the first, waits on the
unique index for the first's COMMIT and loses a race (a rolled-back attempt, done again: 15 % of
8 clients' single-record POSTs on the bench's event stream on PostgreSQL, bench/RESULTS.md, session 16;
SQLite's writers queue on its one write lock, so there too the second writes once).

The turns themselves: first come, first served; all of a taker's identities or none; given back once;
requests of different identities never wait for each other."""

from __future__ import annotations

import logging
import threading
import time

from cdp.identity.turns import IdentityTurns
from tests.api.conftest import create_dataset


def _event(identity: str, event_id: str) -> dict:
    return {"identities": [{"namespace": "ecid", "id": identity}],
            "event": {"id": event_id, "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}


def _second_writer_while_the_first_holds_its_commit(api, monkeypatch, caplog, body_of) -> dict:
    """Two POSTs of the same new people: the first is held after its writes, before its COMMIT; the
    second is sent then, must still be in flight half a second later (waiting for its turn on
    PostgreSQL, for the one write lock on SQLite), and ends after the first commits. The answers by
    name ("first", "second"); the test's log of cdp.ingestion is in ``caplog``."""
    import cdp.api.routes.ingestion as route

    dataset = create_dataset(api, "event")
    path = f"/v1/datasets/{dataset}/records"
    first_written, let_first_commit = threading.Event(), threading.Event()
    commit = route.commit_now
    calls: list[int] = []

    def held_commit(connection):  # the first request waits here, its identities written, not committed
        calls.append(1)
        if len(calls) == 1:
            first_written.set()
            assert let_first_commit.wait(30)
        commit(connection)

    monkeypatch.setattr(route, "commit_now", held_commit)
    caplog.set_level(logging.INFO, logger="cdp.ingestion")
    answers: dict[str, object] = {}

    def post(name: str) -> None:
        answers[name] = api.post(path, json=body_of(name))

    first = threading.Thread(target=post, args=("first",))
    first.start()
    assert first_written.wait(30)
    second = threading.Thread(target=post, args=("second",))
    second.start()
    time.sleep(0.5)  # the second is in flight: waiting for its turn (or, without turns, on the index)
    assert second.is_alive()
    let_first_commit.set()
    first.join(30)
    second.join(30)
    return answers


def _lost_races(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "lost a race" in r.getMessage()]


def test_a_second_writer_of_the_same_new_person_waits_its_turn_instead_of_losing_a_race(api, monkeypatch, caplog):
    # on PostgreSQL the second waits for its turn; on SQLite for the one write lock (cdp/storage/database.py)
    answers = _second_writer_while_the_first_holds_its_commit(
        api, monkeypatch, caplog, lambda name: _event("turn-person", f"{name}-e"))
    results = {name: answer.json()["results"][0] for name, answer in answers.items()}
    assert all(answer.status_code == 200 for answer in answers.values()), answers
    assert [r["status"] for r in results.values()] == ["accepted", "accepted"], results
    assert results["first"]["profile_id"] == results["second"]["profile_id"]
    assert _lost_races(caplog) == []


def test_turns_are_first_come_first_served():
    turns = IdentityTurns()
    held = turns.take(["a"], timeout=1)
    assert held is not None
    order: list[int] = []

    def waiter(n: int) -> None:
        give_back = turns.take(["a"], timeout=10)
        order.append(n)
        give_back()

    threads = []
    for n in range(5):
        threads.append(threading.Thread(target=waiter, args=(n,)))
        threads[-1].start()
        time.sleep(0.05)  # queued in this order
    # a newcomer that arrives as the stripe is given back does not pass the queue
    held()
    late = turns.take(["a"], timeout=10)
    order.append("late")
    late()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4, "late"]


def test_turns_are_all_or_none_and_given_back_once():
    turns = IdentityTurns()
    keys = [("s", "ecid", str(n)) for n in range(10)]
    blocker = turns.take([keys[-1]], timeout=1)
    assert turns.take(keys, timeout=0.1) is None  # the last key is busy: nothing is held
    others = turns.take(keys[:-1], timeout=0)
    assert others is not None  # none of the others was kept
    others()
    blocker()
    give_back = turns.take(keys, timeout=1)
    assert give_back is not None
    assert all(turns.take([key], timeout=0) is None for key in keys)
    give_back()
    give_back()  # once: a second call gives back nothing more
    assert turns._held == set() and turns._queue == []
    again = turns.take(keys, timeout=0.1)
    assert again is not None
    again()


def test_a_waiter_is_not_passed_by_a_later_taker_of_one_of_its_identities():
    turns = IdentityTurns()
    held = turns.take(["a"], timeout=1)
    order: list[str] = []

    def take(name: str, keys: list[str]) -> None:
        give_back = turns.take(keys, timeout=10)
        order.append(name)
        time.sleep(0.05)
        give_back()

    first = threading.Thread(target=take, args=("a+b", ["a", "b"]))
    first.start()
    time.sleep(0.05)  # queued for "a", holding nothing
    second = threading.Thread(target=take, args=("b", ["b"]))
    second.start()
    time.sleep(0.05)
    # "b" is free, but an earlier waiter wants it: the later taker queues behind it; "c" goes at once
    unrelated = turns.take(["c"], timeout=0)
    assert unrelated is not None and order == []
    unrelated()
    held()
    first.join(10)
    second.join(10)
    assert order == ["a+b", "b"]


def test_a_waiter_that_gives_up_lets_the_ones_behind_it_go():
    turns = IdentityTurns()
    held = turns.take(["a"], timeout=1)
    assert turns.take(["a", "b"], timeout=0.2) is None  # queued, then gave up
    behind = turns.take(["b"], timeout=1)
    assert behind is not None
    behind()
    held()


def test_requests_of_different_identities_never_wait_for_each_other():
    """Two 500-record requests of different people (two sources' customers) wrote one after the
    other: the turns were kept per stripe of 16,384 (identities hashed) and ~200 identities each
    met one of the other's stripes ~91 % of the time (bench/RESULTS.md, session 17)."""
    turns = IdentityTurns()
    held = turns.take([("s", "ecid", f"first-{n}") for n in range(2000)], timeout=1)
    assert held is not None
    other = turns.take([("s", "ecid", f"second-{n}") for n in range(2000)], timeout=0)
    assert other is not None
    other()
    held()


def test_turns_hold_each_identity_once_under_contention():
    turns = IdentityTurns()
    holders: dict[str, int] = {}
    guard = threading.Lock()
    clashes: list[str] = []
    import random

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            keys = rng.sample("abcdefghij", rng.randint(1, 4))
            give_back = turns.take(keys, timeout=10)
            assert give_back is not None
            with guard:
                clashes.extend(k for k in keys if holders.get(k))
                for k in keys:
                    holders[k] = holders.get(k, 0) + 1
            time.sleep(0.0001)
            with guard:
                for k in keys:
                    holders[k] -= 1
            give_back()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert clashes == [] and turns._held == set() and turns._queue == []


def test_a_second_large_request_of_the_same_new_people_waits_its_turn_instead_of_losing_a_race(api, monkeypatch,
                                                                                                   caplog):
    # requests of hundreds of records naming more than the old bound of 32 identities: in the bench's
    # time-ordered stream (500 a request, 8 clients) every request shared people with the 7 before it,
    # and without turns each lost ~3 attempts on the unique index (bench/RESULTS.md, session 16, s16-par)
    people = [f"big-turn-{n}" for n in range(60)]
    answers = _second_writer_while_the_first_holds_its_commit(
        api, monkeypatch, caplog,
        lambda name: {"records": [_event(person, f"{name}-{n}") for n, person in enumerate(people)]})
    assert all(answer.status_code == 200 for answer in answers.values()), answers
    results = {name: answer.json()["results"] for name, answer in answers.items()}
    assert all(r["status"] == "accepted" for rs in results.values() for r in rs), results
    assert [r["profile_id"] for r in results["first"]] == [r["profile_id"] for r in results["second"]]
    assert _lost_races(caplog) == []


def test_a_large_request_never_holds_an_unrelated_small_requests_turn():
    """A 500-record request names ~200 identities; an unrelated one-identity request never waits
    for it (with stripes of 16,384 it did 1.2 % of the time, with 1,024 ~18 %)."""
    turns = IdentityTurns()
    held = turns.take([("s", "ecid", f"large-{n}") for n in range(200)], timeout=1)
    assert held is not None
    kept_waiting = 0
    for n in range(1000):
        give_back = turns.take([("s", "ecid", f"small-{n}")], timeout=0)
        if give_back is None:
            kept_waiting += 1
        else:
            give_back()
    held()
    assert kept_waiting == 0, kept_waiting
