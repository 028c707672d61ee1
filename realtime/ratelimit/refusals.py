"""What operators see of a refusal: one log line and one count per refused request.

``refused(limit, app_id, client, detail)`` is called by every layer that refuses on a limit:

=================  ===========================================================================
``limit``          refused by
=================  ===========================================================================
``auth_failures``  the per-IP budget of API requests that failed the signature check (the
                   request is refused before its signature is verified)
``upgrade_ip``     the per-IP bucket of WebSocket upgrades (429 tuned, 403 stock)
``app_publish``    the app's backend events per second (429 ``rate_limited``)
``app_read``       the app's read requests per second (429 ``rate_limited``)
``store_down``     the counter store did not answer (503, or 403 on the stock transport)
=================  ===========================================================================

Counts are plain numbers per ``(app_id, limit)`` (any thread adds to them under a lock);
``realtime.node.metrics`` exports them as ``sockudo_rate_limit_refusals_total`` at each scrape.

The log is rate-limited so a flood does not flood it: the first refusal of a ``(limit, app,
client)`` is logged at once, later ones of that key are counted and reported in its next line, at
most one every ``LOG_INTERVAL`` seconds; and no more than ``MAX_LINES_PER_SECOND`` lines a second
are written in all (a flood from many addresses), the rest counted in the next line written.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("realtime.ratelimit")

LIMITS = ("auth_failures", "upgrade_ip", "app_publish", "app_read", "store_down")
LOG_INTERVAL = 60.0  # seconds between two lines about one key
MAX_LINES_PER_SECOND = 20
MAX_KEYS = 10_000  # keys remembered for the log's rate limit

_lock = threading.Lock()
_counts: dict[tuple[str, str], int] = {}  # (app_id, limit) -> refusals since start
# (limit, app_id, client) -> [monotonic time of its last line, refusals since that line]
_last_line: dict[tuple[str, str, str], list[float]] = {}
_second = 0
_lines_this_second = 0
_dropped = 0  # refusals left out of the log by the global cap since the last line written


def refused(limit: str, app_id: str | None, client: str | None, detail: str = "") -> None:
    """Count one refusal by ``limit`` and log it (rate-limited)."""
    global _second, _lines_this_second, _dropped
    app = app_id or "unknown"
    who = client or "unknown"
    now = time.monotonic()
    with _lock:
        _counts[(app, limit)] = _counts.get((app, limit), 0) + 1
        key = (limit, app, who)
        entry = _last_line.get(key)
        if entry is not None and now - entry[0] < LOG_INTERVAL:
            entry[1] += 1
            return
        second = int(now)
        if second != _second:
            _second, _lines_this_second = second, 0
        if _lines_this_second >= MAX_LINES_PER_SECOND:
            _dropped += 1
            return
        _lines_this_second += 1
        earlier = int(entry[1]) if entry is not None else 0
        if entry is None and len(_last_line) >= MAX_KEYS:
            _forget_old(now)
        _last_line[key] = [now, 0]
        dropped, _dropped = _dropped, 0
    more = f"; {earlier} more refused since the last line" if earlier else ""
    if dropped:
        more += f"; {dropped} refusals of other clients not logged (log cap)"
    log.warning(
        "rate limit refusal: limit=%s app=%s client=%s reason=%s%s",
        limit,
        app,
        who,
        detail or _REASONS[limit],
        more,
    )


_REASONS = {
    "auth_failures": "too many API requests failing the signature check from this address",
    "upgrade_ip": "too many WebSocket upgrades from this address",
    "app_publish": "backend events per second of the app exceeded",
    "app_read": "read requests per second of the app exceeded",
    "store_down": "rate limiter counter store unavailable",
}


def _forget_old(now: float) -> None:
    """Drop keys not logged for an interval; if none, the oldest half (lock held)."""
    stale = [key for key, (at, _) in _last_line.items() if now - at >= LOG_INTERVAL]
    if not stale:
        stale = list(_last_line)[: len(_last_line) // 2]
    for key in stale:
        del _last_line[key]


def snapshot() -> dict[tuple[str, str], int]:
    """Refusals since start per ``(app_id, limit)``."""
    with _lock:
        return dict(_counts)


def reset_log() -> None:
    """Forget which keys were logged (tests); counts only grow."""
    global _dropped
    with _lock:
        _last_line.clear()
        _dropped = 0
