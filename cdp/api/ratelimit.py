"""Rate limits per API key: a token bucket per key, in the memory of the process.

Each key may make ``rate_limit_burst`` requests at once and ``rate_limit_per_second`` a second
sustained (``CDP_RATE_LIMIT_PER_SECOND``, ``CDP_RATE_LIMIT_BURST``; 0 requests a second turns the
limit off). A request past it is 429 ``rate_limited`` with ``Retry-After`` (whole seconds, at
least 1) and the wait in ``details.retry_after_seconds``; nothing of it ran. The check runs in
the authorization dependency (cdp/api/deps.py), after the key was authenticated, so an unknown
key never holds a bucket and a refused request was not counted against a key it did not prove.

The tracking API's write keys (cdp/api/routes/sources.py) have buckets of their own with the same
limits (ids ``write-key:<source>``, apart from API keys' ids), taken once the write key is known
and before any message is handled.

The default (1,000 requests a second, bursts of 2,000) is above what one key of the demo, the docs
or the suite can send (a trivial request takes a few milliseconds of one thread), and still
bounds a runaway client. One process: with several `cdp serve` processes each holds its own
buckets, so N processes behind a load balancer let a key make up to N times the limit
(docs/operations.md). A shared bucket would cost a database write per request, more than most
requests cost themselves.
"""

from __future__ import annotations

import math
import threading
import time

from cdp.errors import TooManyRequests

_MAX_BUCKETS = 100_000  # keys are few; this only bounds memory should ids churn


class RateLimiter:
    def __init__(self, *, per_second: float, burst: int, clock=time.monotonic):
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, when counted)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def take(self, key_id: str, *, holder: str = "this API key") -> None:
        """One request of ``key_id``; TooManyRequests when its bucket is empty (``holder`` names
        the key in the message)."""
        if not self.enabled:
            return
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
            if tokens >= 1:
                if len(self._buckets) >= _MAX_BUCKETS and key_id not in self._buckets:
                    self._buckets.clear()
                self._buckets[key_id] = (tokens - 1, now)
                return
            self._buckets[key_id] = (tokens, now)
        wait = (1 - tokens) / self.per_second
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"{holder} made more than {self.burst} requests at once or {self.per_second:g} a second sustained "
            f"(CDP_RATE_LIMIT_BURST, CDP_RATE_LIMIT_PER_SECOND); retry in {seconds} s",
            details={"retry_after_seconds": seconds, "per_second": self.per_second, "burst": self.burst},
            headers={"Retry-After": str(seconds)})
