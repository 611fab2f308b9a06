"""The delivery loop of the service: the outbox pumped into deliveries and the deliveries sent,
in threads of their own (cdp/activation/delivery.py says how; docs/activation.md).

Everything it knows is in the database — cursors, deliveries and their attempts — so a restart
resumes where it stopped: a delivery that was being sent when the process died is sent again
(same ``delivery_id``). It looks at the outbox every ``poll_seconds`` (a read on an index) and at
once when woken (a request that made work — an ingest request that changed a membership, an
activation created — calls :meth:`DeliveryWorker.wake`; wakes within
``wake_coalesce_seconds`` of a cycle's start share the next cycle). Each destination
with open deliveries is sent to by one sender at a time, up to ``senders`` destinations at once,
so one slow receiver holds up only its own deliveries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from cdp.activation.delivery import Poster, open_destinations, pump, send_next
from cdp.activation.outbox import Horizon
from cdp.activation.settings import ActivationSettings
from cdp.storage.models import activations, deliveries, membership_changes

log = logging.getLogger("cdp.activation")

# whether a delivery cycle can find anything: an active activation (changes to pump), a delivery
# not yet delivered or dead (to send)
_WORK = sa.select(sa.exists().where(activations.c.status == "active"),
                  sa.exists().where(deliveries.c.status.in_(("pending", "retrying"))))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DeliveryWorker:
    def __init__(self, engine: sa.Engine, *, settings: ActivationSettings | None = None,
                 clock: Callable[[], datetime] = _utcnow, metrics: Any = None):
        self.engine = engine
        self.metrics = metrics
        self.settings = settings or ActivationSettings()
        self.clock = clock
        self.horizon = Horizon()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders: ThreadPoolExecutor | None = None
        self._in_flight: set[int] = set()
        self._posters: dict[int, Poster] = {}
        self._lock = threading.Lock()
        self._consent_checked: datetime | None = None
        self._consent_at = 0.0
        self._started = False
        self.cycles = 0  # delivery-loop cycles run (what coalescing wakes saves shows here)

    # ---- life ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._started:
            return
        with self.engine.connect() as connection:
            lowest = connection.execute(sa.select(sa.func.min(activations.c.cursor))
                                        .where(activations.c.status == "active")).scalar()
            if lowest is None:
                lowest = connection.execute(sa.select(sa.func.coalesce(sa.func.max(membership_changes.c.pk), 0))
                                            ).scalar_one()
        self.horizon.start(lowest)
        self._started = True

    def start(self) -> None:
        self._begin()
        self._senders = ThreadPoolExecutor(max_workers=self.settings.senders, thread_name_prefix="cdp-deliver")
        self._thread = threading.Thread(target=self._loop, name="cdp-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._senders is not None:
            self._senders.shutdown(wait=True, cancel_futures=True)
        for poster in self._posters.values():
            poster.close()

    # ---- work ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            self.cycles += 1
            began = time.monotonic()
            try:
                for destination in self._cycle():
                    with self._lock:
                        if destination in self._in_flight:
                            continue
                        self._in_flight.add(destination)
                    self._senders.submit(self._send_loop, destination)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup; it says so
                log.exception("delivery loop: a cycle failed; trying again")
                self._stopping.wait(1.0)
            self._wake.wait(self.settings.poll_seconds)
            # woken early (each ingest request that changed a membership wakes it): a cycle costs
            # ~1 ms of CPU whether it finds one change or a hundred, so the changes of a short
            # interval share one cycle
            rest = began + self.settings.wake_coalesce_seconds - time.monotonic()
            if rest > 0:
                self._stopping.wait(rest)

    def _cycle(self) -> list[int]:
        """One look at the work: the destinations with deliveries to send. When no activation is
        active and no delivery is open — a service ingesting with nothing subscribed — that is ONE
        read (was three: the outbox horizon, the activations, the open destinations, every cycle,
        and cycles run up to 1/``wake_coalesce_seconds`` times a second under ingest); the horizon
        catches up at the first cycle that has an activation (an activation starts at the outbox's
        end, its members first from the memberships: cdp/activation/service.py)."""
        with self.engine.connect() as connection:
            active, open_ = connection.execute(_WORK).one()
        if not active and not open_:
            return []
        if active:
            self.pump_once()
        with self.engine.connect() as connection:
            return open_destinations(connection)

    def _poster(self, destination: int) -> Poster:
        with self._lock:
            return self._posters.setdefault(destination, Poster(self.settings.timeout_seconds))

    def _send_loop(self, destination: int) -> None:
        try:
            while not self._stopping.is_set():
                if send_next(self.engine, destination, poster=self._poster(destination), now_fn=self.clock,
                             settings=self.settings, metrics=self.metrics) is not True:
                    break
        except Exception:  # noqa: BLE001
            log.exception("delivery to destination %s failed; trying again", destination)
        finally:
            with self._lock:
                self._in_flight.discard(destination)

    def pump_once(self) -> int:
        """The outbox up to the horizon into deliveries (and, every consent_every_seconds, the
        consent changes of the profiles changed since the last look)."""
        self._begin()
        with self.engine.connect() as connection:
            safe = self.horizon.advance(connection)
        now = self.clock()
        consent_since: datetime | None | bool = False
        if time.monotonic() - self._consent_at >= self.settings.consent_every_seconds:
            consent_since = None if self._consent_checked is None else self._consent_checked - timedelta(seconds=5)
            self._consent_checked, self._consent_at = now, time.monotonic()
        return pump(self.engine, horizon=safe, now=now, settings=self.settings, consent_since=consent_since)

    def run_once(self) -> None:
        """Pump, then send every due delivery (in this thread): for tests and the CLI."""
        self.pump_once()
        with self.engine.connect() as connection:
            open_ = open_destinations(connection)
        for destination in open_:
            while send_next(self.engine, destination, poster=self._poster(destination), now_fn=self.clock,
                            settings=self.settings, metrics=self.metrics) is True:
                pass
