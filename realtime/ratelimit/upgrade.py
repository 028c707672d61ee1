"""The per-IP limit of WebSocket upgrades: one decision, applied once per upgrade by the first layer
that sees it (protocol-v1.md §1.1). Keyed ``websocket_connect:{ip}``, default 20 upgrades per 60 s.

* The tuned transport's listener (``realtime.server.upgrade_limit``) applies it to the raw request
  head and answers a refusal with a plain ``HTTP 429`` (``503`` when the store is down) before any
  handshake. It says so at start (``applied_by_listener``), so the upgrade is not counted again.
* Otherwise (the stock transport) the WebSocket entry (``realtime.websocket.admission``) applies it
  to the ASGI scope before accepting, and refuses by closing before accept: stock daphne answers
  that with ``HTTP 403``, the only refusal it can send before the handshake.

The decision never blocks the event loop: the memory driver answers at once (``hit_nowait``), other
drivers through an awaitable (``ahit``). A store that does not answer refuses (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

from realtime.conf import server_settings
from realtime.ratelimit import Limit, get_limiter
from realtime.ratelimit.base import Decision, RateLimiter, RateLimiterUnavailable

log = logging.getLogger(__name__)

# The value of a request header by its lower-case name (repeated headers joined by commas), or None.
HeaderLookup = Callable[[bytes], "str | None"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an upgrade is refused: ``429`` over the limit (with the limiter's ``decision``, for the
    ``X-RateLimit-*`` headers) or ``503`` when the counter store did not answer."""

    status: int
    decision: Decision | None = None


STORE_DOWN = Refusal(503)

Verdict = Refusal | None  # None: the upgrade goes ahead

_applied_by_listener = False


def applied_by_listener() -> None:
    """Called once at start by a listener that applies the limit before the handshake."""
    global _applied_by_listener
    _applied_by_listener = True


def listener_applies() -> bool:
    return _applied_by_listener


@lru_cache(maxsize=1)
def websocket_limit() -> Limit | None:
    """The upgrade limit, or ``None`` when ``RATE_LIMITER_ENABLED`` is off."""
    settings = server_settings()
    return Limit.websocket(settings) if settings.RATE_LIMITER_ENABLED else None


def key_for(limit: Limit, peer: str | None, header: HeaderLookup) -> str:
    """The counter key of an upgrade from its TCP peer and its forwarding headers (read only when
    ``RATE_LIMITER_TRUST_HOPS`` trusts them)."""
    if limit.trust_hops <= 0:
        return limit.key(peer, None, None)
    return limit.key(peer, header(b"x-forwarded-for"), header(b"x-real-ip"))


def check(peer: str | None, header: HeaderLookup) -> Verdict | Awaitable[Verdict]:
    """Count one upgrade and decide: ``None`` to go ahead, a ``Refusal``, or (when the driver needs
    I/O) an awaitable resolving to one of those two."""
    limit = websocket_limit()
    if limit is None:
        return None
    key = key_for(limit, peer, header)
    limiter = get_limiter()
    try:
        decision = limiter.hit_nowait(key, limit.max_requests, limit.window)
    except RateLimiterUnavailable:
        return STORE_DOWN
    if decision is None:
        return _check_later(limiter, limit, key)
    return None if decision.allowed else Refusal(429, decision)


async def _check_later(limiter: RateLimiter, limit: Limit, key: str) -> Verdict:
    try:
        decision = await limiter.ahit(key, limit.max_requests, limit.window)
    except RateLimiterUnavailable:
        return STORE_DOWN
    except Exception:
        log.exception("rate limiter failed on a WebSocket upgrade")
        return STORE_DOWN
    return None if decision.allowed else Refusal(429, decision)
