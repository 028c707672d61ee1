"""History page queries: parameter parsing shared by HTTP (http-api.md §7.1) and WebSocket
(protocol-v2.md §8), and the opaque, tamper-safe cursor.

A cursor is ``base64url(json).base64url(hmac)``: it carries the app, channel, stream, direction and
bounds it was minted for plus the last serial returned; it is refused (``InvalidQuery``) when it was
altered, minted for another app/channel, reused with another query shape, or is over 16 KiB.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

NEWEST_FIRST = "newest_first"
OLDEST_FIRST = "oldest_first"
DIRECTIONS = {
    "newest_first": NEWEST_FIRST,
    "backwards": NEWEST_FIRST,
    "reverse": NEWEST_FIRST,
    "oldest_first": OLDEST_FIRST,
    "forwards": OLDEST_FIRST,
    "forward": OLDEST_FIRST,
}
MAX_CURSOR_BYTES = 16 * 1024
MAX_INT = 2**63 - 1  # serials and times are BIGINT columns
CURSOR_VERSION = 1

# The two surfaces disagree on what ``start``/``end`` mean: serials on the socket, times over HTTP.
ALIASES = {
    "ws": {"start_serial": ("start",), "end_serial": ("end",), "start_time_ms": (), "end_time_ms": ()},
    "http": {"start_serial": (), "end_serial": (), "start_time_ms": ("start",), "end_time_ms": ("end",)},
}


class InvalidQuery(ValueError):
    """A bad parameter or cursor: HTTP 400 ``invalid_input``, WebSocket error 4000."""


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    app_id: str
    channel: str
    direction: str = NEWEST_FIRST
    limit: int = 100
    start_serial: int | None = None
    end_serial: int | None = None  # already bounded by attach_serial when until_attach
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    until_attach: bool = False
    attach_serial: int | None = None
    # From the cursor: continue after this position.
    after_stream_id: str | None = None
    after_serial: int | None = None

    @property
    def descending(self) -> bool:
        return self.direction == NEWEST_FIRST

    def bounds(self) -> dict[str, Any]:
        return {
            "start_serial": self.start_serial,
            "end_serial": self.end_serial,
            "start_time_ms": self.start_time_ms,
            "end_time_ms": self.end_time_ms,
            "until_attach": self.until_attach,
            "attach_serial": self.attach_serial,
        }

    # -- parsing -------------------------------------------------------------------------------
    @classmethod
    def parse(
        cls,
        params: Mapping[str, Any],
        *,
        app_id: str,
        channel: str,
        max_page_size: int,
        default_limit: int | None = None,
        attach_serial: int | None = None,
        surface: str = "http",
    ) -> HistoryQuery:
        """Validate request parameters (strings from a query string, or JSON values).

        ``max_page_size`` caps ``limit`` (which defaults to ``default_limit``, else to the cap);
        ``attach_serial`` is the connection's attach serial for the channel (WebSocket) or the
        ``attach_serial`` parameter (HTTP); ``until_attach`` without one is invalid.
        """
        nested = params.get("params")
        if isinstance(nested, Mapping):
            params = {**params, **nested}
        aliases = ALIASES[surface]

        def pick(name: str) -> Any:
            for key in (name, *aliases.get(name, ())):
                if params.get(key) is not None:
                    return params[key]
            return None

        cap = max(1, int(max_page_size))
        limit = parse_int(params.get("limit"), "limit")
        if limit is None:
            limit = min(default_limit or cap, cap)
        elif limit <= 0:
            raise InvalidQuery("limit must be a positive integer")
        limit = min(limit, cap)

        raw_direction = params.get("direction")
        if raw_direction is None or raw_direction == "":
            direction = NEWEST_FIRST
        else:
            direction = (
                DIRECTIONS.get(str(raw_direction).strip().lower()) if isinstance(raw_direction, str) else None
            )
            if direction is None:
                raise InvalidQuery("direction must be newest_first or oldest_first")

        start_serial = parse_int(pick("start_serial"), "start_serial")
        end_serial = parse_int(pick("end_serial"), "end_serial")
        start_time = parse_int(pick("start_time_ms"), "start_time_ms")
        end_time = parse_int(pick("end_time_ms"), "end_time_ms")
        if start_serial is not None and end_serial is not None and start_serial > end_serial:
            raise InvalidQuery("start_serial must not be greater than end_serial")
        if start_time is not None and end_time is not None and start_time > end_time:
            raise InvalidQuery("start_time_ms must not be greater than end_time_ms")

        until_attach = _bool(params.get("until_attach", params.get("untilAttach")), "until_attach")
        if until_attach:
            if attach_serial is None:
                raise InvalidQuery(
                    "until_attach needs an attach serial, and none is recorded for this channel"
                )
            end_serial = attach_serial if end_serial is None else min(end_serial, attach_serial)

        query = cls(
            app_id=app_id,
            channel=channel,
            direction=direction,
            limit=limit,
            start_serial=start_serial,
            end_serial=end_serial,
            start_time_ms=start_time,
            end_time_ms=end_time,
            until_attach=until_attach,
            attach_serial=attach_serial,
        )
        cursor = params.get("cursor")
        if cursor is None or cursor == "":
            return query
        stream_id, serial = decode_cursor(cursor, query)
        return replace(query, after_stream_id=stream_id, after_serial=serial)


def parse_int(raw: Any, name: str) -> int | None:
    """A non-negative integer parameter (JSON int or decimal string), None when absent."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise InvalidQuery(f"{name} must be a non-negative integer")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit() and raw.strip().isascii():
        value = int(raw.strip())
    else:
        raise InvalidQuery(f"{name} must be a non-negative integer")
    if not 0 <= value <= MAX_INT:
        raise InvalidQuery(f"{name} must be a non-negative integer")
    return value


def _bool(raw: Any, name: str) -> bool:
    if raw is None or raw is False or raw == "":
        return False
    if raw is True:
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("false", "0", "no"):
        return False
    raise InvalidQuery(f"{name} must be a boolean")


# -- cursors -------------------------------------------------------------------------------------
def _key() -> bytes:
    try:
        from django.conf import settings

        secret = settings.SECRET_KEY
    except Exception:  # Django not configured (pure unit use): cursors are still tamper-evident
        secret = "sockudo-history-cursor"
    return hashlib.sha256(b"sockudo.history.cursor:" + secret.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(query: HistoryQuery, stream_id: str, serial: int) -> str:
    body = {
        "version": CURSOR_VERSION,
        "app_id": query.app_id,
        "channel": query.channel,
        "stream_id": stream_id,
        "serial": serial,
        "direction": query.direction,
        "bounds": query.bounds(),
    }
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(_key(), raw, hashlib.sha256).digest()[:16]
    return f"{_b64(raw)}.{_b64(mac)}"


def decode_cursor(cursor: Any, query: HistoryQuery) -> tuple[str, int]:
    """(stream_id, serial) of a cursor minted for exactly this query shape."""
    if not isinstance(cursor, str):
        raise InvalidQuery("cursor must be a string")
    if len(cursor.encode()) > MAX_CURSOR_BYTES:
        raise InvalidQuery("cursor is larger than 16 KiB")
    try:
        raw_part, mac_part = cursor.split(".")
        raw, mac = _unb64(raw_part), _unb64(mac_part)
    except ValueError:
        raise InvalidQuery("cursor is not valid") from None
    if not hmac.compare_digest(mac, hmac.new(_key(), raw, hashlib.sha256).digest()[:16]):
        raise InvalidQuery("cursor is not valid")
    body = json.loads(raw)
    if body.get("version") != CURSOR_VERSION:
        raise InvalidQuery("cursor version is not supported")
    if body.get("app_id") != query.app_id or body.get("channel") != query.channel:
        raise InvalidQuery("cursor was issued for another app or channel")
    if body.get("direction") != query.direction or body.get("bounds") != query.bounds():
        raise InvalidQuery("cursor must be reused with the same direction and bounds")
    stream_id, serial = body.get("stream_id"), body.get("serial")
    if not isinstance(stream_id, str) or not isinstance(serial, int):
        raise InvalidQuery("cursor is not valid")
    return stream_id, serial
