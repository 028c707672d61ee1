"""The rate-limiter contract: fixed-window counters and token buckets keyed by a string.

Guarantees every driver gives (tests/test_rate_limits.py runs the same checks over each):

* ``hit(key, limit, window, cost)`` adds ``cost`` to the counter of ``key`` and answers in one step
  (atomic per key): the counter starts at the first hit and lives ``window`` seconds; a hit whose new
  total is ``<= limit`` is allowed. Rejected hits count too, so a client hammering a closed window
  does not get a fresh budget earlier.
* ``take(key, capacity, per_second, cost)`` takes ``cost`` tokens from the bucket of ``key`` in one
  step (atomic per key): a bucket starts full at ``capacity`` tokens and refills continuously at
  ``per_second`` tokens a second up to ``capacity``; a take is allowed when the bucket holds at least
  ``cost`` tokens, and a refused take takes nothing (a client over the limit gets the refill rate).
  ``remaining`` is the whole tokens left; ``reset_seconds`` is, for a refusal, the whole seconds
  until ``cost`` tokens are back (``Retry-After``), else until the bucket is full again.
  A driver without its own buckets gets the fallback below: a fixed window of ``capacity`` per
  ``capacity / per_second`` seconds (same long-run rate, burstier at window edges).
* ``reset_seconds`` is the whole seconds until the window ends (at least 1), which is what
  ``Retry-After`` and ``X-RateLimit-Reset`` carry.
* A backend that cannot answer raises ``RateLimiterUnavailable``; callers fail closed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class RateLimiterUnavailable(Exception):
    """The counter store did not answer; the request must be refused, not waved through."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    reset_seconds: int
    limit: int = 0

    @classmethod
    def of(cls, count: int, limit: int, ttl_seconds: float) -> Decision:
        """The decision for a counter at ``count`` with ``ttl_seconds`` left in its window."""
        return cls(
            allowed=count <= limit,
            remaining=max(0, limit - count),
            reset_seconds=max(1, math.ceil(ttl_seconds)),
            limit=limit,
        )

    @classmethod
    def of_bucket(cls, allowed: bool, tokens: float, capacity: int, per_second: float, cost: int) -> Decision:
        """The decision of a take that left ``tokens`` in a bucket of ``capacity``."""
        missing = (cost - tokens) if not allowed else (capacity - tokens)
        return cls(
            allowed=allowed,
            remaining=max(0, int(tokens)),
            reset_seconds=max(1, math.ceil(max(0.0, missing) / per_second)),
            limit=capacity,
        )

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers, plus ``Retry-After`` when the hit was refused."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimiter(ABC):
    """A store of fixed-window counters and token buckets. ``hit`` may block (call it off the event loop, e.g. from
    a DRF view's worker thread); ``ahit`` never blocks the loop."""

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> RateLimiter:
        """Build the driver from the server settings (``realtime.conf``); override to read options."""
        return cls()

    @abstractmethod
    def hit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        """Count ``cost`` against ``key`` (blocking)."""

    async def ahit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        """Count ``cost`` against ``key`` on the event loop without blocking it."""
        return self.hit(key, limit, window, cost)

    def hit_nowait(self, key: str, limit: int, window: float, cost: int = 1) -> Decision | None:
        """The decision at once when the driver needs no I/O, else ``None`` (then use ``ahit``).

        Lets the connect fast path skip creating a task per WebSocket upgrade with the memory driver.
        """
        return None

    def take(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from the bucket of ``key`` (blocking). The fallback for drivers
        without buckets: a fixed window of ``capacity`` per ``capacity / per_second`` seconds."""
        return self.hit(key, capacity, capacity / per_second, cost)

    async def atake(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision:
        """``take`` on the event loop without blocking it."""
        return await self.ahit(key, capacity, capacity / per_second, cost)

    def take_nowait(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision | None:
        """``take``'s answer at once when the driver needs no I/O, else ``None`` (use ``atake``)."""
        return self.hit_nowait(key, capacity, capacity / per_second, cost)

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing to release
        """Release connections (tests and shutdown)."""
