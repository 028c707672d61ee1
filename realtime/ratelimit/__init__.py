"""Rate limiting: per-IP limits on API requests that fail the signature check and on WebSocket
upgrades (a token bucket), per-app limits on publishes and reads (``max_backend_events_per_second``,
``max_read_requests_per_second``, with server-wide defaults). Every refusal is logged and counted
(``realtime.ratelimit.refusals``).

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
    "Bucket",
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
    """One per-IP fixed-window limit: ``max_requests`` per ``window`` seconds, counted under
    ``{name}:{ip}``. ``Limit.api`` is the budget of API requests that fail the signature check."""

    name: str
    max_requests: int
    window: int
    trust_hops: int

    @classmethod
    def api(cls, settings: dict[str, Any]) -> Limit:
        return cls(
            "api_auth_failures",
            settings.RATE_LIMITER_API_MAX_REQUESTS,
            settings.RATE_LIMITER_API_WINDOW_SECONDS,
            settings.RATE_LIMITER_TRUST_HOPS,
        )

    def client(self, peer: str | None, forwarded_for: str | None, real_ip: str | None) -> str:
        return client_ip(peer, forwarded_for, real_ip, self.trust_hops)

    def key(self, peer: str | None, forwarded_for: str | None, real_ip: str | None) -> str:
        return f"{self.name}:{self.client(peer, forwarded_for, real_ip)}"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One per-IP token bucket: ``capacity`` at once, refilled at ``per_second``, under ``{name}:{ip}``.

    ``Bucket.websocket`` reads the old window settings as a rate: ``RATE_LIMITER_WS_MAX_REQUESTS``
    upgrades at once, refilled at that many per ``RATE_LIMITER_WS_WINDOW_SECONDS``.
    """

    name: str
    capacity: int
    per_second: float
    trust_hops: int

    @classmethod
    def websocket(cls, settings: dict[str, Any]) -> Bucket:
        capacity = max(1, settings.RATE_LIMITER_WS_MAX_REQUESTS)
        return cls(
            "websocket_connect",
            capacity,
            capacity / max(1, settings.RATE_LIMITER_WS_WINDOW_SECONDS),
            settings.RATE_LIMITER_TRUST_HOPS,
        )

    def client(self, peer: str | None, forwarded_for: str | None, real_ip: str | None) -> str:
        return client_ip(peer, forwarded_for, real_ip, self.trust_hops)

    def key(self, peer: str | None, forwarded_for: str | None, real_ip: str | None) -> str:
        return f"{self.name}:{self.client(peer, forwarded_for, real_ip)}"
