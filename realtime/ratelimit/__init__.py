"""Rate limiting: per-IP limits on the HTTP API and on WebSocket upgrades, per-app limits on
publishes and reads (``max_backend_events_per_second``, ``max_read_requests_per_second``).

The counter store is pluggable (``RATE_LIMITER_DRIVER``: ``memory``, ``redis`` or a dotted path to a
``RateLimiter`` subclass); unset, it follows the adapter, so a Redis cluster shares its counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from realtime.conf import server_settings
from realtime.conf.drivers import Driver, resolve
from realtime.ratelimit.base import Decision, RateLimiter, RateLimiterUnavailable

__all__ = [
    "Decision",
    "Limit",
    "RateLimiter",
    "RateLimiterUnavailable",
    "client_ip",
    "driver_path",
    "get_limiter",
]

DRIVERS = {
    "memory": "realtime.ratelimit.memory.MemoryRateLimiter",
    "redis": "realtime.ratelimit.redis.RedisRateLimiter",
}
# With RATE_LIMITER_DRIVER unset the counters live where the adapter shares state.
DEFAULT_FOR_ADAPTER = {"redis": "redis"}


def driver_path(settings: Any) -> str:
    driver = settings.RATE_LIMITER_DRIVER or DEFAULT_FOR_ADAPTER.get(settings.ADAPTER_DRIVER, "memory")
    return resolve(DRIVERS, driver)


_limiter: Driver[RateLimiter] = Driver(
    DRIVERS,
    choose=lambda: driver_path(server_settings()),
    build=lambda cls: cls.from_settings(server_settings()),
)
get_limiter = _limiter.get  # views and the event loop share it
set_limiter = _limiter.set  # for tests


def client_ip(peer: str | None, forwarded_for: str | None, real_ip: str | None, trust_hops: int) -> str:
    """The address a limit is keyed by.

    With ``trust_hops`` = N > 0 proxies in front of the server, each appending the address it was
    connected from to ``X-Forwarded-For``, the client is the N-th entry from the right (entries to
    its left were written by the client and can be forged); with fewer entries than N, the leftmost.
    Without X-Forwarded-For a trusted proxy's ``X-Real-IP`` is used. With ``trust_hops`` = 0 both
    headers are ignored and the TCP peer is the client: upstream trusts ``X-Real-IP`` even then,
    which lets any client choose its own bucket.
    """
    if trust_hops > 0:
        hops = [part.strip() for part in (forwarded_for or "").split(",") if part.strip()]
        if hops:
            return hops[-trust_hops] if len(hops) >= trust_hops else hops[0]
        if real_ip and real_ip.strip():
            return real_ip.strip()
    return peer or "unknown"


@dataclass(frozen=True, slots=True)
class Limit:
    """One per-IP limit: ``max_requests`` per ``window`` seconds, counted under ``{name}:{ip}``."""

    name: str
    max_requests: int
    window: int
    trust_hops: int

    @classmethod
    def api(cls, settings: dict[str, Any]) -> Limit:
        return cls(
            "api",
            settings.RATE_LIMITER_API_MAX_REQUESTS,
            settings.RATE_LIMITER_API_WINDOW_SECONDS,
            settings.RATE_LIMITER_TRUST_HOPS,
        )

    @classmethod
    def websocket(cls, settings: dict[str, Any]) -> Limit:
        return cls(
            "websocket_connect",
            settings.RATE_LIMITER_WS_MAX_REQUESTS,
            settings.RATE_LIMITER_WS_WINDOW_SECONDS,
            settings.RATE_LIMITER_TRUST_HOPS,
        )

    def key(self, peer: str | None, forwarded_for: str | None, real_ip: str | None) -> str:
        return f"{self.name}:{client_ip(peer, forwarded_for, real_ip, self.trust_hops)}"
