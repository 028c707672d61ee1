"""Inbound frame handlers, one module per concern.

Each handler is a function of (engine, connection, frame). It raises ``ProtocolError`` for the
client's mistakes (the engine turns that into the protocol's error frame or close) and returns an
awaitable when the frame needs the cluster or the history store; the engine awaits it before the
connection's next frame. A new system event (``pusher:x`` / ``sockudo:x``) is a function in the
module of its concern, listed in ``SYSTEM_FRAMES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from realtime.node.frames.client_events import check_message_rate, client_event
from realtime.node.frames.heartbeat import ping, pong
from realtime.node.frames.history import channel_history
from realtime.node.frames.presence import presence_update
from realtime.node.frames.recovery import resume
from realtime.node.frames.signin import forget_user, signin
from realtime.node.frames.subscribe import leave_channel, subscribe, unsubscribe

FrameHandler = Callable[[Any, Any, Any], Awaitable[None] | None]

# System event name (without its ``pusher:`` / ``sockudo:`` prefix) -> handler.
SYSTEM_FRAMES: dict[str, FrameHandler] = {
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "ping": ping,
    "pong": pong,
    "signin": signin,
    "presence_update": presence_update,
    "resume": resume,
    "channel_history": channel_history,
}

__all__ = [
    "SYSTEM_FRAMES",
    "channel_history",
    "check_message_rate",
    "client_event",
    "forget_user",
    "leave_channel",
]
