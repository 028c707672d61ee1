"""Per-IP limit of WebSocket upgrades, applied by ``daphne_tuning.UpgradeSniffer`` to the raw
request head, so a refused client gets a plain ``HTTP/1.1 429`` before any handshake or frame
(protocol-v1.md §1.1). Keyed ``websocket_connect:{ip}``, default 20 upgrades per 60 s.

The decision must not block the event loop. The memory driver answers at once (``hit_nowait``);
with Redis the sniffer defers the upgrade: it keeps buffering the socket's bytes while ``ahit``
runs on the loop and hands the connection on (or refuses it) when the answer arrives, within the
driver's timeout. A store that does not answer gets ``503`` (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from functools import lru_cache

from realtime.api.limits import TOO_MANY, Limit, compact_json
from realtime.conf import server_settings
from realtime.ratelimit import get_limiter
from realtime.ratelimit.base import Decision, RateLimiter, RateLimiterUnavailable

log = logging.getLogger(__name__)

SERVICE_UNAVAILABLE = {"error": "Service Unavailable", "message": "Rate limiter backend unavailable."}
_REASONS = {429: "Too Many Requests", 503: "Service Unavailable"}


@lru_cache(maxsize=1)
def websocket_limit() -> Limit | None:
    """The upgrade limit, or ``None`` when ``RATE_LIMITER_ENABLED`` is off."""
    settings = server_settings()
    return Limit.websocket(settings) if settings.RATE_LIMITER_ENABLED else None


def key_for(limit: Limit, head: bytes, peer: str | None) -> str:
    """The counter key of an upgrade from its lower-cased request head and TCP peer address."""
    if limit.trust_hops <= 0:
        return limit.key(peer, None, None)  # forwarding headers are ignored: skip parsing them
    return limit.key(peer, header(head, b"x-forwarded-for"), header(head, b"x-real-ip"))


def header(head: bytes, name: bytes) -> str | None:
    """Every value of header ``name`` in a lower-cased request head, joined by commas (as Django
    joins repeated headers); ``None`` when absent."""
    values = []
    for line in head.split(b"\r\n")[1:]:
        field, sep, value = line.partition(b":")
        if sep and field.strip() == name:
            values.append(value.strip().decode("latin-1"))
    return ",".join(values) if values else None


def too_many(decision: Decision) -> bytes:
    return _response(429, compact_json(TOO_MANY), decision.headers())


def unavailable() -> bytes:
    return _response(503, compact_json(SERVICE_UNAVAILABLE), {"Retry-After": "1"})


def _response(status: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def check(head: bytes, peer: str | None) -> bytes | None | Awaitable[bytes | None]:
    """The verdict on one upgrade: ``None`` to go ahead, the bytes of a refusal to write before
    closing, or (when the driver needs I/O) an awaitable that resolves to one of those two."""
    limit = websocket_limit()
    if limit is None:
        return None
    key = key_for(limit, head, peer)
    limiter = get_limiter()
    try:
        decision = limiter.hit_nowait(key, limit.max_requests, limit.window)
    except RateLimiterUnavailable:
        return unavailable()
    if decision is None:
        return _check_later(limiter, limit, key)
    return None if decision.allowed else too_many(decision)


async def _check_later(limiter: RateLimiter, limit: Limit, key: str) -> bytes | None:
    try:
        decision = await limiter.ahit(key, limit.max_requests, limit.window)
    except RateLimiterUnavailable:
        return unavailable()
    except Exception:
        log.exception("rate limiter failed on a WebSocket upgrade")
        return unavailable()
    return None if decision.allowed else too_many(decision)
