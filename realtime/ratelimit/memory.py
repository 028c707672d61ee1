"""In-process counters and token buckets: one node only (a cluster needs the redis driver to share
them).

Memory is bounded two ways: expired windows (and buckets that have refilled to full, which are the
same as no bucket) are swept out every ``sweep_interval`` seconds (one pass over each table, ~10 ms
per 100 000 keys), and each table never holds more than ``max_keys`` entries; past that the oldest
is dropped (its client gets a fresh budget, which is the price of not letting a flood of distinct
IPs grow memory without end).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from realtime.ratelimit.base import Decision, RateLimiter


class MemoryRateLimiter(RateLimiter):
    def __init__(
        self,
        max_keys: int = 100_000,
        sweep_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_keys = max_keys
        self.sweep_interval = sweep_interval
        self.clock = clock
        # key -> [count, expires_at]; dict order is window start order (a new window re-inserts).
        self._counters: dict[str, list[float]] = {}
        # DRF views hit from worker threads while the upgrade path hits from the loop thread.
        self._lock = threading.Lock()
        # key -> [tokens, updated_at, full_at]; dict order is creation order.
        self._buckets: dict[str, list[float]] = {}
        self._next_sweep = 0.0

    def hit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        now = self.clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            entry = self._counters.get(key)
            if entry is None or entry[1] <= now:
                if entry is not None:
                    del self._counters[key]
                elif len(self._counters) >= self.max_keys:
                    del self._counters[next(iter(self._counters))]
                entry = self._counters[key] = [0, now + window]
            entry[0] += cost
            count, expires = int(entry[0]), entry[1]
        return Decision.of(count, limit, expires - now)

    def hit_nowait(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        return self.hit(key, limit, window, cost)

    def take(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision:
        now = self.clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            entry = self._buckets.get(key)
            if entry is None:
                if len(self._buckets) >= self.max_keys:
                    del self._buckets[next(iter(self._buckets))]
                tokens = float(capacity)
                entry = self._buckets[key] = [tokens, now, now]
            else:
                tokens = min(float(capacity), entry[0] + (now - entry[1]) * per_second)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            entry[0], entry[1] = tokens, now
            entry[2] = now + (capacity - tokens) / per_second
        return Decision.of_bucket(allowed, tokens, capacity, per_second, cost)

    def take_nowait(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision:
        return self.take(key, capacity, per_second, cost)

    async def atake(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision:
        return self.take(key, capacity, per_second, cost)

    def __len__(self) -> int:
        return len(self._counters) + len(self._buckets)

    def _sweep(self, now: float) -> None:
        expired = [key for key, (_, expires) in self._counters.items() if expires <= now]
        for key in expired:
            del self._counters[key]
        full = [key for key, (_, _, full_at) in self._buckets.items() if full_at <= now]
        for key in full:
            del self._buckets[key]
        self._next_sweep = now + self.sweep_interval
