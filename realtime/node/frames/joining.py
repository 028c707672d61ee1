"""What every successful or failed subscribe ends with, whatever the channel kind: the V2 attach,
the cache channel's last event, the channel's count, and the channel-scoped error pusher-js needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from realtime.node.frames import history as v2_history
from realtime.protocol import frames
from realtime.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine


async def attach_then(
    engine: Engine, conn: Connection, channel: str, rewind: Any, cache: bool, presence: dict | None
) -> None:
    await v2_history.attach(engine, conn, channel, rewind, presence)
    if not conn.closed:
        after_join(engine, conn, channel, cache)


def after_join(engine: Engine, conn: Connection, channel: str, cache: bool) -> None:
    app_id = conn.app.id
    if cache:
        cached = engine.cache_get(app_id, channel)
        if cached:
            engine.send(conn, cached[0])
        else:
            engine.send(conn, frames.cache_miss(channel))
            engine.events.emit(app_id, {"name": "cache_miss", "channel": channel, "data": "{}"})
    engine.adapter.channel_changed(app_id, channel)


def presence_payload(members: dict[str, Any]) -> dict[str, Any]:
    return {
        "ids": list(members),
        "hash": {uid: ({} if info is None else info) for uid, info in members.items()},
        "count": len(members),
    }


def reject(engine: Engine, conn: Connection, channel: str, error: ProtocolError, status: int) -> None:
    """A failed subscribe: the global ``pusher:error`` plus a channel-scoped subscription_error so
    pusher-js / Laravel Echo fire the channel's error callback instead of waiting forever."""
    engine.send(conn, frames.error_frame(error))
    engine.send(conn, frames.subscription_error(channel, error.message, status))
