"""Idempotent HTTP publishes: a request retried with the same key is published once.

The first request claims the key (set-if-absent with a TTL); when it succeeds its response replaces
the claim and every retry within the TTL gets that response without a second publish. A request that
fails releases its claim, so a corrected retry with the same key works. Several nodes share claims
through Redis (the in-process driver serves one process only).

Guarantee: at most one publish per (app, key) within the TTL, as long as the cache is reachable;
when it is not, the publish is refused (503) rather than risk a duplicate.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from realtime.conf import server_settings
from realtime.conf.drivers import Driver

PROCESSING = "__processing__"
DRIVERS = {
    "memory": "realtime.api.idempotency.MemoryIdempotencyCache",
    "redis": "realtime.api.idempotency.RedisIdempotencyCache",
}


class CacheUnavailable(Exception):
    """The shared idempotency cache cannot be reached."""


class IdempotencyCache:
    def claim(self, key: str, ttl: int) -> str | None:
        """None when this caller now owns ``key``; else the stored value (or ``PROCESSING``)."""
        raise NotImplementedError

    def store(self, key: str, value: str, ttl: int) -> None:
        raise NotImplementedError

    def release(self, key: str) -> None:
        raise NotImplementedError

    def get(self, key: str) -> str | None:
        raise NotImplementedError


class MemoryIdempotencyCache(IdempotencyCache):
    """One process (the embedded default). Views run in worker threads, hence the lock."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] < now:
            del self._entries[key]
            return None
        return entry[0]

    def claim(self, key: str, ttl: int) -> str | None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) > 100_000:  # bound memory: drop expired entries
                for k in [k for k, (_v, exp) in self._entries.items() if exp < now]:
                    del self._entries[k]
            existing = self._live(key, now)
            if existing is not None:
                return existing
            self._entries[key] = (PROCESSING, now + ttl)
            return None

    def store(self, key: str, value: str, ttl: int) -> None:
        with self._lock:
            self._entries[key] = (value, time.monotonic() + ttl)

    def release(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key, time.monotonic())


class RedisIdempotencyCache(IdempotencyCache):
    """Shared by every node: ``SET NX EX`` claims, plain ``SET EX`` results."""

    def __init__(self) -> None:
        import redis

        s = server_settings()
        self.prefix = s.REDIS_PREFIX + "idem:"
        self.client = redis.Redis.from_url(s.REDIS_URL, decode_responses=True, socket_timeout=2)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return fn(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    def claim(self, key: str, ttl: int) -> str | None:
        if self._call(self.client.set, self.prefix + key, PROCESSING, nx=True, ex=ttl):
            return None
        return self._call(self.client.get, self.prefix + key) or PROCESSING

    def store(self, key: str, value: str, ttl: int) -> None:
        self._call(self.client.set, self.prefix + key, value, ex=ttl)

    def release(self, key: str) -> None:
        self._call(self.client.delete, self.prefix + key)

    def get(self, key: str) -> str | None:
        return self._call(self.client.get, self.prefix + key)


# The redis driver whenever the cluster adapter is on (claims must be shared), else memory.
_cache: Driver[IdempotencyCache] = Driver(
    DRIVERS, choose=lambda: "redis" if server_settings().ADAPTER_DRIVER == "redis" else "memory"
)
get_cache = _cache.get


def settings_for(app: Any) -> tuple[bool, int]:
    """(enabled, ttl seconds): the app's ``idempotency`` override, else the server default."""
    s = server_settings()
    override = getattr(app, "idempotency", None) or {}
    enabled = bool(override.get("enabled", s.IDEMPOTENCY_ENABLED))
    ttl = int(override.get("ttl_seconds") or s.IDEMPOTENCY_TTL_SECONDS)
    return enabled, ttl
