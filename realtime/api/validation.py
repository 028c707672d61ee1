"""Turning HTTP API request bodies into validated ``Publication``s (in the documented order)."""

from __future__ import annotations

import re
from typing import Any

from realtime.api import errors
from realtime.node.broadcast import Publication
from realtime.protocol import frames
from realtime.protocol.channels import validate_name

SOCKET_ID = re.compile(r"^\d+\.\d+$")
INFO_ATTRIBUTES = frozenset({"user_count", "subscription_count"})


def parse_json(body: bytes, content_type: str) -> Any:
    if "json" not in content_type.lower():  # a missing Content-Type is not JSON either (415)
        raise errors.APIError(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        # frames.loads: strict UTF-8, bounded nesting, no lone surrogates (all would fail later)
        return frames.loads(body or b"null")
    except ValueError as exc:  # includes UnicodeDecodeError
        raise errors.APIError(400, "invalid_json", f"Malformed JSON body: {exc}") from None


def parse_info(raw: Any) -> frozenset[str]:
    if raw is None or raw == "":
        return frozenset()
    if not isinstance(raw, str):
        raise errors.invalid_input("info must be a comma-separated string")
    return frozenset(part.strip() for part in raw.split(",") if part.strip()) & INFO_ATTRIBUTES


def publication(app, item: Any) -> Publication:
    """Validate one event object of ``/events`` or of a ``/batch_events`` batch."""
    if not isinstance(item, dict):
        raise errors.APIError(422, "invalid_input", "Event must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise errors.invalid_input("Event name is required")
    if len(name.encode()) > app.effective_max_event_name_length:
        raise errors.limit_exceeded(f"Event name is longer than {app.effective_max_event_name_length} bytes")
    data = item.get("data")
    if not isinstance(data, str):
        data = frames.dumps(data)
    limit = app.effective_max_http_payload_bytes
    if len(data.encode()) > limit:
        raise errors.payload_too_large(f"Event payload is larger than {limit // 1024} KiB")
    channels = _channels(app, item)
    socket_id = item.get("socket_id")
    if socket_id is not None and (not isinstance(socket_id, str) or not SOCKET_ID.match(socket_id)):
        raise errors.invalid_input("socket_id must look like 123.456")
    extras = _extras(item.get("extras"))
    return Publication(
        name,
        data,
        channels,
        socket_id,
        parse_info(item.get("info")),
        tags=_tags(item.get("tags")),
        extras=extras,
        message_id=_message_id(item.get("message_id")),
        idempotency_key=_idempotency_key(item, extras),
        ephemeral=bool(extras and extras.get("ephemeral") is True),
    )


MAX_KEY_LENGTH = 128


def _tags(raw: Any) -> dict[str, str] | None:
    """Protocol V2 tags: a flat map of strings (the input of tag filters)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise errors.invalid_input("tags must be an object of string values")
    return raw or None


def _extras(raw: Any) -> dict[str, Any] | None:
    """Protocol V2 extras; ``headers`` must be flat (strings, numbers, booleans)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise errors.invalid_input("extras must be an object")
    headers = raw.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
            isinstance(v, (str, int, float, bool)) and v is not None for v in headers.values()
        ):
            raise errors.invalid_input("extras.headers must be a flat object of strings, numbers or booleans")
        if any(k.startswith("sockudo_") for k in headers):
            raise errors.invalid_input("extras.headers keys starting with sockudo_ are reserved")
    return raw


def _message_id(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw or len(raw.encode()) > MAX_KEY_LENGTH:
        raise errors.invalid_input(f"message_id must be a non-empty string of at most {MAX_KEY_LENGTH} bytes")
    return raw


def _idempotency_key(item: dict, extras: dict | None) -> str | None:
    """The per-event key: body ``idempotency_key``, else ``extras.idempotencyKey``/``idempotency_key``."""
    raw = item.get("idempotency_key")
    if raw is None and extras:
        raw = extras.get("idempotencyKey", extras.get("idempotency_key"))
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw or len(raw.encode()) > MAX_KEY_LENGTH:
        raise errors.invalid_input(
            f"idempotency key must be a non-empty string of at most {MAX_KEY_LENGTH} bytes"
        )
    return raw


def _channels(app, item: dict) -> list[str]:
    raw = item.get("channels")
    if raw is not None:
        if not isinstance(raw, list):
            raise errors.invalid_input("channels must be a list of strings")
        if not raw:
            raise errors.missing_channel_info()
        channels = raw
    else:
        single = item.get("channel")
        if single is None or single == "":
            raise errors.missing_channel_info()
        channels = [single]
    limit = app.effective_max_event_channels_at_once
    if len(channels) > limit:
        raise errors.limit_exceeded(f"Too many channels ({len(channels)}); the limit is {limit}")
    for channel in channels:
        reason = validate_name(channel, app.effective_max_channel_name_length, app.channel_namespaces)
        if reason:
            raise errors.invalid_input(reason)
    return list(dict.fromkeys(channels))
