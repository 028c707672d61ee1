"""Client events (``client-*``) and the per-socket inbound message rate."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from realtime.protocol import errors, frames
from realtime.protocol.channels import META_PREFIX, kind_of, validate_name
from realtime.protocol.outframe import OutFrame

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine


# -- client events -----------------------------------------------------------------------------
def check_message_rate(engine: Engine, conn: Connection) -> None:
    """The optional limit on all inbound frames of one socket (app ``message_rate_limit``)."""
    rule = conn.app.message_rate_limit
    if not rule or not rule.get("enabled"):
        return
    now = time.monotonic()
    window = float(rule.get("decay_seconds") or 60)
    if now - conn.msg_window >= window:
        conn.msg_window = now
        conn.msg_count = 0
    conn.msg_count += 1
    if conn.msg_count > int(rule.get("max_attempts") or 60):
        if rule.get("terminate_on_limit"):
            raise errors.client_event_rate_limit_close()
        raise errors.client_event_rate_limited()


def client_event(engine: Engine, conn: Connection, frame: frames.Frame) -> None:
    app = conn.app
    limit = app.effective_max_client_events_per_second
    if limit:
        now = time.monotonic()
        if now - conn.rate_window >= app.effective_decay_seconds:
            conn.rate_window = now
            conn.rate_count = 0
        conn.rate_count += 1
        if conn.rate_count > limit * app.effective_decay_seconds:
            if app.terminate_on_limit:
                raise errors.client_event_rate_limit_close()
            raise errors.client_event_rate_limited()
    if not app.enable_client_messages:
        raise errors.client_event_error("Client events are not enabled for this app")
    event = frame.event
    if len(event.encode()) > app.effective_max_event_name_length:
        raise errors.invalid_event_name(
            f"Event name is longer than {app.effective_max_event_name_length} bytes"
        )
    channel = frame.channel
    if channel is None:
        raise errors.invalid_format("client events require a channel")
    if isinstance(channel, str) and (channel.startswith(META_PREFIX) or "*" in channel):
        raise errors.client_event_error(
            "Client events cannot be sent to metachannels or wildcard subscriptions"
        )
    reason = validate_name(channel, app.effective_max_channel_name_length, app.channel_namespaces)
    if reason:
        raise errors.channel_error(reason)
    kind = kind_of(channel)
    if kind.encrypted:
        raise errors.client_event_error("Client events are not supported on encrypted channels")
    if not kind.allows_client_events:
        raise errors.client_event_error("Client events are only allowed on private and presence channels")
    data = frame.data
    size = len(data.encode()) if isinstance(data, str) else len(frames.dumps(data).encode())
    if size > app.effective_max_client_payload_bytes:
        raise errors.client_event_error(
            f"Payload is larger than {app.effective_max_client_payload_bytes // 1024} KiB"
        )
    if channel not in conn.channels:
        raise errors.client_event_error(f"Socket {conn.socket_id} is not subscribed to channel {channel}")
    user_id = conn.channels[channel] if kind.presence else None
    out = OutFrame(frames.encode(event, data, channel, user_id))
    # V1 senders never get their own event; V2 senders do unless they connected with echo off.
    except_id = None if conn.protocol == 2 and conn.echo else conn.socket_id
    engine.adapter.broadcast(app.id, channel, out, except_id)
    if engine.events.wants(app.id, "client_event"):
        engine.events.emit(app.id, _client_event_hook(conn, channel, event, data, user_id))


def _client_event_hook(conn: Connection, channel: str, event: str, data: Any, user_id: str | None) -> dict:
    """The ``client_event`` webhook: V1 data as the string the client sent (objects serialised),
    V2 data as its JSON value; ``user_id`` only on presence channels."""
    if conn.protocol != 2 and not isinstance(data, str):
        data = frames.dumps(data)
    hook = {
        "name": "client_event",
        "channel": channel,
        "event": event,
        "data": data,
        "socket_id": conn.socket_id,
    }
    if user_id is not None:
        hook["user_id"] = user_id
    return hook
