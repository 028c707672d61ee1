"""The delivery retry policy (spec/webhooks.md §6): which outcomes retry, and when.

Backoff doubles from ``initial_backoff_ms`` up to ``max_backoff_ms``, without jitter; retrying stops
when ``max_attempts`` attempts were made or when the time since the first attempt plus the next wait
would pass ``max_elapsed_time_ms``. With the defaults attempts run at about 0, 1, 3, 7, 15, 31, 63,
123, 183 and 243 s: 10 attempts within the 5 minutes after which the ``pusher`` SDKs reject a body's
``time_ms`` anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUCCESS, RETRY, FAILED = "success", "retry", "failed"
# Besides connection errors, timeouts and every 5xx.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def classify(status: int) -> str:
    """``success`` for 2xx, ``retry`` for statuses worth another attempt, else ``failed``."""
    if 200 <= status < 300:
        return SUCCESS
    if status >= 500 or status in RETRYABLE_STATUSES:
        return RETRY
    return FAILED


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    enabled: bool = True
    max_attempts: int | None = None  # None: no cap, only the time budget
    max_elapsed_ms: int = 300_000
    initial_backoff_ms: int = 1_000
    max_backoff_ms: int = 60_000

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> RetryPolicy:
        """The server's policy with a webhook's ``retry`` fields overriding it one by one."""
        o = overrides or {}
        max_attempts = o.get("max_attempts", settings["WEBHOOK_RETRY_MAX_ATTEMPTS"] or None)
        return cls(
            enabled=bool(o.get("enabled", settings["WEBHOOK_RETRY_ENABLED"])),
            max_attempts=int(max_attempts) if max_attempts else None,
            max_elapsed_ms=int(o.get("max_elapsed_time_ms", settings["WEBHOOK_RETRY_MAX_ELAPSED_MS"])),
            initial_backoff_ms=int(o.get("initial_backoff_ms", settings["WEBHOOK_RETRY_INITIAL_BACKOFF_MS"])),
            max_backoff_ms=int(o.get("max_backoff_ms", settings["WEBHOOK_RETRY_MAX_BACKOFF_MS"])),
        )

    def backoff_ms(self, retries_done: int) -> int:
        """The wait before retry number ``retries_done + 1``."""
        return min(self.initial_backoff_ms * (2 ** min(retries_done, 40)), self.max_backoff_ms)

    def next_delay_ms(self, attempts_made: int, elapsed_ms: float) -> int | None:
        """The wait before the next attempt, or None when the policy is exhausted."""
        if not self.enabled or (self.max_attempts is not None and attempts_made >= self.max_attempts):
            return None
        delay = self.backoff_ms(attempts_made - 1)
        if elapsed_ms + delay > self.max_elapsed_ms:
            return None
        return delay

    def schedule_ms(self) -> list[int]:
        """When each attempt starts (ms after the first) if every attempt failed at once."""
        at, times = 0, [0]
        while (delay := self.next_delay_ms(len(times), at)) is not None:
            at += delay
            times.append(at)
        return times
