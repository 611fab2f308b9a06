"""Turns for a process's writers of the same identities (PostgreSQL).

Two single-record requests of the same new person in flight at once — a burst of a person's
events spread over 8 keep-alive clients — both insert its identities: the second waits on the
unique index for the first to commit, then loses (``another writer claimed an identity``), rolls
back to its savepoint and does its attempt again. On PostgreSQL with 8 clients that was 12–16 % of
single-record POSTs and 28–65 % of the slowest 1 % (bench/RESULTS.md, session 16, s16-tail): the
losers' p50 19.7 ms against 8.2 ms for the others.

So before its first attempt a streaming request takes a turn on each identity it
names ((sandbox, namespace, value): all of them at once or none), and gives them back when its
transaction ends (:func:`cdp.storage.database.hold_until_transaction_ends`). The second writer of
the person waits in Python, holding nothing, and then finds the identities owned — one attempt, no
lost race. Two requests wait for each other only when they name the same identity: the turns were
locks per stripe of 16,384 (identities hashed), and two 500-record requests of disjoint people
(~200 identities each) shared a stripe by chance ~91 % of the time, so two clients' streams of
different people wrote one after the other (bench/RESULTS.md, session 17). Turns are an
optimisation only: correctness stays with the database (other processes, a batch file's apply pass
and the sources' requests take none, and a turn not had within :data:`TURN_WAIT_SECONDS` is skipped
— the request then writes as before)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable

from cdp.storage.database import PerEngine

TURN_WAIT_SECONDS = 2.0
# a request naming more identities takes no turns. Large requests take them too: answered set-wise
# instead (cdp/ingestion/writer.py), 8 clients' requests of 500 records of the bench's time-ordered
# stream (every request shares people with the 7 before it) waited on the unique index for each
# other's COMMIT, lost ~3 attempts a request and 30 % of them ended as the serialized writer:
# PostgreSQL's CPU 3× and the server's 2× one client's. With turns they queue in Python, holding
# nothing, and write once (bench/RESULTS.md, session 16, s16-par).
MAX_TURN_KEYS = 100_000


class _Waiter:
    __slots__ = ("keys", "turn", "granted")

    def __init__(self, keys: frozenset):
        self.keys = keys
        self.turn = threading.Lock()
        self.turn.acquire()
        self.granted = False


class IdentityTurns:
    """A process's turns on one database (one per engine: :func:`identity_turns`).

    A taker gets all its keys at once or waits, holding none (so no two takers wait for each other
    in a cycle). First come, first served: a taker goes before no earlier waiter it shares a key
    with, and keys given back go to the waiters in the order they came."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: set[Hashable] = set()  # the keys taken and not given back
        self._queue: list[_Waiter] = []  # the waiters, in the order they came

    def take(self, keys: Iterable[Hashable], timeout: float) -> Callable[[], None] | None:
        """The turns of ``keys`` (waiting at most ``timeout`` seconds) and the function that gives
        them back (once); None when they were not had in time (none is held then)."""
        wanted = frozenset(keys)
        with self._guard:
            if wanted.isdisjoint(self._held) and all(wanted.isdisjoint(w.keys) for w in self._queue):
                self._held |= wanted
                return self._giver(wanted)
            waiter = _Waiter(wanted)
            self._queue.append(waiter)
        if waiter.turn.acquire(timeout=max(0.0, timeout)):
            return self._giver(wanted)  # handed over by _grant
        with self._guard:
            if waiter.granted:  # handed over between the timeout and now: ours after all
                return self._giver(wanted)
            self._queue.remove(waiter)
            self._grant()  # the waiters behind it that only its keys held back
        return None

    def _grant(self) -> None:
        """Under the guard: the turns of each waiter, in order, whose keys are free and shared with
        no earlier waiter that still waits."""
        waiting: list[_Waiter] = []
        blocked: set[Hashable] = set()
        for waiter in self._queue:
            if waiter.keys.isdisjoint(self._held) and waiter.keys.isdisjoint(blocked):
                self._held |= waiter.keys
                waiter.granted = True
                waiter.turn.release()
            else:
                blocked |= waiter.keys
                waiting.append(waiter)
        self._queue = waiting

    def _giver(self, keys: frozenset) -> Callable[[], None]:
        given_back = threading.Lock()

        def give_back() -> None:
            if given_back.acquire(blocking=False):
                with self._guard:
                    self._held -= keys
                    if self._queue:
                        self._grant()
        return give_back


# the process's turns on an engine's database (one per engine)
identity_turns = PerEngine(IdentityTurns)
