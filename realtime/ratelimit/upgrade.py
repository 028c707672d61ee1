"""The per-IP limit of WebSocket upgrades: one decision, applied once per upgrade by the first layer
that sees it (protocol-v1.md §1.1). A token bucket keyed ``websocket_connect:{ip}``: by default 1,000
upgrades at once, refilled at 1,000 per 60 s (``RATE_LIMITER_WS_MAX_REQUESTS`` per
``RATE_LIMITER_WS_WINDOW_SECONDS``), so an office behind one address opens the app at once while a
flood gets about 17 upgrades a second. Each refusal is logged and counted (``refusals``).

* The tuned transport's listener (``realtime.server.upgrade_limit``) applies it to the raw request
  head and answers a refusal with a plain ``HTTP 429`` (``503`` when the store is down) before any
  handshake. It says so at start (``applied_by_listener``), so the upgrade is not counted again.
* Otherwise (the stock transport) the WebSocket entry (``realtime.websocket.admission``) applies it
  to the ASGI scope before accepting, and refuses by closing before accept: stock daphne answers
  that with ``HTTP 403``, the only refusal it can send before the handshake.

The decision never blocks the event loop: the memory driver answers at once (``take_nowait``), other
drivers through an awaitable (``atake``). A store that does not answer refuses (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

from realtime.conf import server_settings
from realtime.ratelimit import Bucket, get_limiter, refusals
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
def websocket_limit() -> Bucket | None:
    """The upgrade bucket, or ``None`` when ``RATE_LIMITER_ENABLED`` is off."""
    settings = server_settings()
    return Bucket.websocket(settings) if settings.RATE_LIMITER_ENABLED else None


def client_for(limit: Bucket, peer: str | None, header: HeaderLookup) -> str:
    """The client address of an upgrade from its TCP peer and its forwarding headers (read only
    when ``RATE_LIMITER_TRUST_HOPS`` trusts them)."""
    if limit.trust_hops <= 0:
        return limit.client(peer, None, None)
    return limit.client(peer, header(b"x-forwarded-for"), header(b"x-real-ip"))


def key_for(limit: Bucket, peer: str | None, header: HeaderLookup) -> str:
    """The counter key of an upgrade."""
    return f"{limit.name}:{client_for(limit, peer, header)}"


def app_id_of(path: str | None) -> str | None:
    """The id of the app an upgrade path (``/app/{key}...``) names, from the app cache only (a
    refusal must cost no query); ``None`` when it is not cached."""
    if not path:
        return None
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) < 2 or parts[0] != "app":
        return None
    from apps_admin.managers import get_app_manager

    try:
        _, app = get_app_manager().cached_by_key(parts[1])
    except Exception:  # noqa: BLE001 - the label is best effort, the refusal stands
        return None
    return app.id if app is not None else None


def check(peer: str | None, header: HeaderLookup, path: str | None = None) -> Verdict | Awaitable[Verdict]:
    """Take one upgrade from the bucket and decide: ``None`` to go ahead, a ``Refusal``, or (when
    the driver needs I/O) an awaitable resolving to one of those two. ``path`` (the request target)
    names the app in the refusal's log line and count."""
    limit = websocket_limit()
    if limit is None:
        return None
    client = client_for(limit, peer, header)
    key = f"{limit.name}:{client}"
    limiter = get_limiter()
    try:
        decision = limiter.take_nowait(key, limit.capacity, limit.per_second)
    except RateLimiterUnavailable:
        return _store_down(client, path)
    if decision is None:
        return _check_later(limiter, limit, key, client, path)
    return _verdict(decision, client, path)


def _verdict(decision: Decision, client: str, path: str | None) -> Verdict:
    if decision.allowed:
        return None
    refusals.refused("upgrade_ip", app_id_of(path), client)
    return Refusal(429, decision)


def _store_down(client: str, path: str | None) -> Refusal:
    refusals.refused(
        "store_down", app_id_of(path), client, "counter store unavailable on a WebSocket upgrade"
    )
    return STORE_DOWN


async def _check_later(
    limiter: RateLimiter, limit: Bucket, key: str, client: str, path: str | None
) -> Verdict:
    try:
        decision = await limiter.atake(key, limit.capacity, limit.per_second)
    except RateLimiterUnavailable:
        return _store_down(client, path)
    except Exception:
        log.exception("rate limiter failed on a WebSocket upgrade")
        return _store_down(client, path)
    return _verdict(decision, client, path)
