"""Origin checks for WebSocket upgrades (an app's ``allowed_origins``)."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """True when ``origin`` matches an entry: ``*``/``any``, an exact origin or host, or a
    ``*.example.com`` / ``https://*.example.com`` wildcard. A missing Origin is not allowed."""
    patterns = [a.strip().lower() for a in allowed if a and a.strip()]
    if not patterns:
        return True
    if any(p in ("*", "any") for p in patterns):
        return True
    if not origin:
        return False
    origin = origin.strip().lower().rstrip("/")
    host = origin.split("://", 1)[-1]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        target = origin if "://" in pattern else host
        if pattern == target or ("*" in pattern and fnmatchcase(target, pattern)):
            return True
    return False
