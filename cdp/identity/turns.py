"""Turns for a process's writers of the same identities (PostgreSQL).

Two single-record requests of the same new person in flight at once — a burst of a person's
events spread over 8 keep-alive clients — both insert its identities: the second waits on the
unique index for the first to commit, then loses (``another writer claimed an identity``), rolls
back to its savepoint and does its attempt again. On PostgreSQL with 8 clients that was 12–16 % of
single-record POSTs and 28–65 % of the slowest 1 % (bench/RESULTS.md, session 16, s16-tail): the
losers' p50 19.7 ms against 8.2 ms for the others.

So before its first attempt a streaming request takes a turn on each identity it
names (a lock per stripe of (sandbox, namespace, value), in stripe order, all or none), and gives
them back when its transaction ends (:func:`cdp.storage.database.hold_until_transaction_ends`). The
second writer of the person waits in Python, holding nothing, and then finds the identities owned
— one attempt, no lost race. Turns are an optimisation only: correctness stays with the database
(other processes, a batch file's apply pass and the sources' requests take none, and a turn not
had within :data:`TURN_WAIT_SECONDS` is skipped — the request then writes as before)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable

from cdp.storage.database import FifoLock, PerEngine

# a request of 500 records names ~200 identities: with 16,384 stripes a one-identity request
# shares one of them by chance 1.2 % of the time (with 1,024: 18 %), and waits for that request
STRIPES = 16_384
TURN_WAIT_SECONDS = 2.0
# a request naming more identities takes no turns. Large requests take them too: answered set-wise
# instead (cdp/ingestion/service.py), 8 clients' requests of 500 records of the bench's time-ordered
# stream (every request shares people with the 7 before it) waited on the unique index for each
# other's COMMIT, lost ~3 attempts a request and 30 % of them ended as the serialized writer:
# PostgreSQL's CPU 3× and the server's 2× one client's. With turns they queue in Python, holding
# nothing, and write once (bench/RESULTS.md, session 16, s16-par). A large request's ~200 stripes
# can make an unrelated small request wait for it (a stripe shared by chance: STRIPES).
MAX_TURN_KEYS = 100_000


class IdentityTurns:
    """A process's turns on one database (one per engine: :func:`identity_turns`).

    First come, first served: a stripe given back goes to its longest waiter (FifoLock)."""

    def __init__(self, stripes: int = STRIPES):
        self._stripes = stripes
        # made on first use: a process touches the stripes of the identities it writes, and many
        # stripes keep a large request's ~200 from being shared by chance with a small request's
        self._locks: dict[int, FifoLock] = {}
        self._guard = threading.Lock()

    def _lock(self, stripe: int) -> FifoLock:
        lock = self._locks.get(stripe)
        if lock is None:
            with self._guard:
                lock = self._locks.setdefault(stripe, FifoLock())
        return lock

    def take(self, keys: Iterable[Hashable], timeout: float) -> Callable[[], None] | None:
        """The turns of ``keys`` (waiting at most ``timeout`` seconds in all) and the function
        that gives them back (once); None when they were not all had in time (none is held then)."""
        count = self._stripes
        stripes = sorted({hash(key) % count for key in keys})
        end = time.monotonic() + timeout
        taken: list[FifoLock] = []
        for stripe in stripes:  # in stripe order: two takers never wait for each other in a cycle
            lock = self._lock(stripe)
            if not lock.acquire(timeout=max(0.0, end - time.monotonic())):
                for held in reversed(taken):
                    held.release()
                return None
            taken.append(lock)
        given_back = threading.Lock()

        def give_back() -> None:
            if given_back.acquire(blocking=False):
                for held in reversed(taken):
                    held.release()
        return give_back


# the process's turns on an engine's database (one per engine)
identity_turns = PerEngine(IdentityTurns)
