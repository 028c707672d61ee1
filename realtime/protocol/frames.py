"""Decoding inbound frames and encoding outbound ones (V1 / Pusher protocol 7).

Outbound frames are compact JSON with Pusher's key order (event, channel, data, user_id) and are
encoded once per broadcast, never per subscriber.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from realtime.protocol import errors

_SYSTEM_PREFIXES = ("pusher:", "pusher_internal:", "sockudo:", "sockudo_internal:")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads
MAX_NESTING = 128  # deepest JSON accepted from a client (arrays/objects, the frame itself included)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded inbound frame. ``system`` is the suffix of a pusher:/sockudo: event, else None."""

    event: str
    channel: Any
    data: Any
    system: str | None


def dumps(value: Any) -> str:
    """Compact JSON, as every frame and published payload uses."""
    return _dumps(value)


def loads(text: str | bytes) -> Any:
    """Parse JSON from a client (a frame, or a JSON string inside one: ``data``, ``channel_data``,
    ``user_data``). Raise ValueError for anything we could not safely echo back: malformed or
    non-UTF-8 input, nesting deeper than the parser's recursion limit, or a lone surrogate escape
    (``"\\ud800"``), which would make every outbound frame carrying that string unencodable."""
    try:
        if not isinstance(text, str):
            text = bytes(text).decode()  # strict UTF-8 (json.loads would let surrogates through)
        value = _loads(text)
    except RecursionError:
        raise ValueError("nesting too deep") from None
    # Depth is at most the number of brackets, so the walk only runs for unusual payloads. The
    # bound keeps re-encoding (relay, size checks) far from Python's recursion limit.
    if text.count("[") + text.count("{") > MAX_NESTING and _depth(value) > MAX_NESTING:
        raise ValueError(f"nesting deeper than {MAX_NESTING} levels")
    if ("\\ud" in text or "\\uD" in text) and not _encodable(value):
        raise ValueError("lone surrogate in a string")
    return value


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > deepest:
            deepest = level
            if deepest > MAX_NESTING:
                break
        stack.extend((child, level + 1) for child in children)
    return deepest


def _encodable(value: Any) -> bool:
    try:
        _dumps(value).encode()
    except UnicodeEncodeError:
        return False
    return True


def decode(raw: str | bytes) -> Frame:
    """Parse one inbound frame; raise a 4000 ProtocolError for anything malformed."""
    try:
        message = loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise errors.invalid_format(str(exc)[:200]) from None
    if not isinstance(message, dict):
        raise errors.invalid_format("frame must be a JSON object")
    event = message.get("event")
    if event is None:
        raise errors.invalid_event_name("Event name is required")
    if not isinstance(event, str) or not event:
        raise errors.invalid_event_name("Event name must be a non-empty string")
    system = None
    for prefix in _SYSTEM_PREFIXES:
        if event.startswith(prefix):
            system = event[len(prefix) :]
            break
    return Frame(event, message.get("channel"), message.get("data"), system)


def data_object(data: Any) -> dict | None:
    """Inbound ``data`` may be an object or a JSON string holding one; return the object or None."""
    if isinstance(data, dict):
        return data
    if isinstance(data, str):
        try:
            parsed = loads(data)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def encode(event: str, data: Any = None, channel: str | None = None, user_id: str | None = None) -> str:
    """Encode one outbound frame; ``data`` None means no data key (e.g. ``pusher:pong``).

    A V1 frame is a V2 envelope without the V2 fields: one encoder, one key order."""
    return encode_v2(event, channel, data, user_id=user_id)


def error_frame(error: errors.ProtocolError) -> str:
    return encode("pusher:error", {"code": error.code, "message": error.message})


def connection_established(socket_id: str, activity_timeout: int) -> str:
    payload = _dumps({"socket_id": socket_id, "activity_timeout": activity_timeout})
    return encode("pusher:connection_established", payload)


def subscription_succeeded(channel: str, presence: dict | None = None) -> str:
    payload = _dumps({"presence": presence}) if presence is not None else "{}"
    return encode("pusher_internal:subscription_succeeded", payload, channel)


def subscription_error(channel: str, message: str, status: int) -> str:
    return encode(
        "pusher:subscription_error",
        {"type": "AuthError", "error": message, "status": status},
        channel,
    )


def member_added(channel: str, user_id: str, user_info: Any) -> str:
    payload = _dumps({"user_id": user_id, "user_info": {} if user_info is None else user_info})
    return encode("pusher_internal:member_added", payload, channel)


def member_removed(channel: str, user_id: str) -> str:
    return encode("pusher_internal:member_removed", _dumps({"user_id": user_id}), channel)


def subscription_count(channel: str, count: int) -> str:
    return encode("pusher_internal:subscription_count", _dumps({"subscription_count": count}), channel)


def cache_miss(channel: str) -> str:
    return encode("pusher:cache_miss", "{}", channel)


def signin_success(user_data: str) -> str:
    return encode("pusher:signin_success", {"user_data": user_data})


def watchlist_events(entries: list[dict]) -> str:
    return encode("pusher_internal:watchlist_events", {"events": entries})


# -- Protocol V2 -------------------------------------------------------------------------------
# V2 renames pusher:/pusher_internal: to sockudo:/sockudo_internal:. Every frame this module builds
# starts with '{"event":"', so the rename is a prefix swap, done once per frame (never per subscriber).
_V1_SYSTEM = '{"event":"pusher:'
_V1_INTERNAL = '{"event":"pusher_internal:'


def to_v2(text: str) -> str:
    """The V2 spelling of a frame built for V1 (application events are unchanged)."""
    if text.startswith(_V1_SYSTEM):
        return '{"event":"sockudo:' + text[len(_V1_SYSTEM) :]
    if text.startswith(_V1_INTERNAL):
        return '{"event":"sockudo_internal:' + text[len(_V1_INTERNAL) :]
    return text


def with_message_id(text: str, message_id: str) -> str:
    """Append ``message_id`` as the last key (frames sent to one V2 connection carry one)."""
    return f'{text[:-1]},"message_id":"{message_id}"}}'


def encode_v2(
    event: str,
    channel: str | None,
    data: Any,
    *,
    name: str | None = None,
    user_id: str | None = None,
    tags: dict | None = None,
    message_id: str | None = None,
    stream_id: str | None = None,
    serial: int | None = None,
    extras: dict | None = None,
) -> str:
    """A V2 message frame with the envelope's fixed key order (delta bases depend on it)."""
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    if data is not None:
        frame["data"] = data
    if name is not None:
        frame["name"] = name
    if user_id is not None:
        frame["user_id"] = user_id
    if tags:
        frame["tags"] = tags
    if message_id is not None:
        frame["message_id"] = message_id
    if stream_id is not None:
        frame["stream_id"] = stream_id
    if serial is not None:
        frame["serial"] = serial
    if extras:
        frame["extras"] = extras
    return _dumps(frame)


# Built after both encoders exist (module constants run at import).
PONG = encode("pusher:pong")
PING = encode("pusher:ping")
