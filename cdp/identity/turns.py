"""Turns for a process's writers of the same identities (PostgreSQL).

Two single-record requests of the same new person in flight at once — a burst of a person's
events spread over 8 keep-alive clients — both insert its identities: the second waits on the
unique index for the first to commit, then loses (``another writer claimed an identity``), rolls
back to its savepoint and does its attempt again. On PostgreSQL with 8 clients that was 15 % of
single-record POSTs, and two thirds of the slowest 1 % (bench/RESULTS.md, session 16, s16-tail):
the losers' p50 19.7 ms against 8.2 ms for the others.

So before its first attempt a streaming request of a few records takes a turn on each identity it
names (a lock per stripe of (sandbox, namespace, value), in stripe order, all or none), and gives
them back when its transaction ends (:func:`cdp.storage.database.hold_until_transaction_ends`). The
second writer of the person waits in Python, holding nothing, and then finds the identities owned
— one attempt, no lost race. Turns are an optimisation only: correctness stays with the database
(other processes, a batch file's apply pass and the sources' requests take none, and a turn not
had within :data:`TURN_WAIT_SECONDS` is skipped — the request then writes as before)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable

STRIPES = 1024
TURN_WAIT_SECONDS = 2.0
# a request naming more identities takes no turns (it would queue behind many; a large request's
# races are answered set-wise, cdp/ingestion/service.py)
MAX_TURN_KEYS = 32


class IdentityTurns:
    """A process's turns on one database (one per engine: cdp.storage.database.identity_turns).

    First come, first served: a stripe given back goes to its longest waiter (``threading.Lock``
    lets a newcomer barge in — with a burst of one person's requests a waiter was passed over again
    and again)."""

    def __init__(self, stripes: int = STRIPES):
        self._mutex = threading.Lock()
        self._busy = [False] * stripes
        self._waiters: list[deque[threading.Lock] | None] = [None] * stripes

    def take(self, keys: Iterable[Hashable], timeout: float) -> Callable[[], None] | None:
        """The turns of ``keys`` (waiting at most ``timeout`` seconds in all) and the function
        that gives them back (once); None when they were not all had in time (none is held then)."""
        count = len(self._busy)
        stripes = sorted({hash(key) % count for key in keys})
        end = time.monotonic() + timeout
        taken: list[int] = []
        for stripe in stripes:  # in stripe order: two takers never wait for each other in a cycle
            if not self._acquire(stripe, end):
                for held in reversed(taken):
                    self._release(held)
                return None
            taken.append(stripe)
        given_back = threading.Lock()

        def give_back() -> None:
            if given_back.acquire(blocking=False):
                for held in reversed(taken):
                    self._release(held)
        return give_back

    def _acquire(self, stripe: int, end: float) -> bool:
        with self._mutex:
            if not self._busy[stripe]:
                self._busy[stripe] = True
                return True
            turn = threading.Lock()
            turn.acquire()
            waiters = self._waiters[stripe]
            if waiters is None:
                waiters = self._waiters[stripe] = deque()
            waiters.append(turn)
        if turn.acquire(timeout=max(0.0, end - time.monotonic())):
            return True  # handed over by _release
        with self._mutex:
            try:
                waiters.remove(turn)
            except ValueError:  # handed over between the timeout and now: ours after all
                return True
            return False

    def _release(self, stripe: int) -> None:
        with self._mutex:
            waiters = self._waiters[stripe]
            if waiters:
                waiters.popleft().release()  # the stripe stays busy: it is the waiter's now
            else:
                self._busy[stripe] = False
