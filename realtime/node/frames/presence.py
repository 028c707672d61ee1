"""Presence channels: joining and leaving (membership decided by the cluster adapter), the member
list, and V2 ``presence_update``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from realtime.cluster.base import AdapterUnavailable
from realtime.node.frames import history as v2_history
from realtime.node.frames.joining import after_join, attach_then, presence_payload, reject
from realtime.protocol import errors, frames
from realtime.protocol.channels import kind_of
from realtime.protocol.outframe import OutFrame

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine


async def join_presence(
    engine: Engine, conn: Connection, channel: str, user_id: str, user_info: Any, rewind: Any = None
) -> None:
    """Join a presence channel: the adapter decides membership for the whole cluster.

    Joins and leaves of one user in one channel run in the order the node saw them (a leave queued
    by an unsubscribe just before this subscribe ends first), so the adapter never sees the join
    overtake the leave."""
    key = (conn.app.id, channel, user_id)
    await engine.presence_order.run(key, _join(engine, conn, channel, user_id, user_info, rewind))


async def _join(
    engine: Engine, conn: Connection, channel: str, user_id: str, user_info: Any, rewind: Any
) -> None:
    app = conn.app
    try:
        joined = await engine.adapter.presence_join(
            app.id, channel, conn.socket_id, user_id, user_info, app.effective_max_presence_members
        )
    except AdapterUnavailable:
        reject(engine, conn, channel, errors.broadcast_error("cluster unavailable, try again"), 503)
        return
    if joined.full:
        reject(engine, conn, channel, errors.presence_full(), 403)
        return
    if conn.closed:  # the socket went away while the cluster answered: undo
        await engine.adapter.presence_leave(app.id, channel, conn.socket_id, user_id)
        return
    attaching = conn.protocol == 2 and engine.identity_enabled(app, channel)
    if attaching:
        v2_history.hold(conn, channel)
    engine.registry.join(conn, channel)
    engine.registry.add_member(conn, channel, user_id, user_info)
    conn.channels[channel] = user_id
    conn.auth_deadline = 0.0
    if conn.presence_user_id is None:
        conn.presence_user_id = user_id
    if joined.is_new:
        if not engine.adapter.announces_presence:
            added = OutFrame(frames.member_added(channel, user_id, user_info))
            engine.adapter.broadcast(app.id, channel, added, conn.socket_id)
        engine.member_joined(app.id, channel, user_id)
    if attaching:
        await attach_then(
            engine, conn, channel, rewind, kind_of(channel).cache, presence_payload(joined.members)
        )
        return
    engine.send(conn, frames.subscription_succeeded(channel, presence_payload(joined.members)))
    after_join(engine, conn, channel, kind_of(channel).cache)


async def confirm_presence(engine: Engine, conn: Connection, channel: str) -> None:
    try:
        members = await engine.adapter.members(conn.app.id, channel)
    except AdapterUnavailable:
        members = {uid: m.info for uid, m in engine.registry.members(conn.app.id, channel).items()}
    engine.send(conn, frames.subscription_succeeded(channel, presence_payload(members)))


def presence_identity(app: Any, channel_data: str | None) -> tuple[str, Any]:
    if channel_data is None:
        raise errors.invalid_format("presence channels require channel_data")
    try:
        parsed = frames.loads(channel_data)
    except ValueError:
        raise errors.channel_error("channel_data must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise errors.channel_error("channel_data must be a JSON object")
    user_id = parsed.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
        raise errors.channel_error("Missing user_id in channel_data")
    user_id = str(user_id)  # older PHP/Ruby backends send integers
    user_info = parsed.get("user_info")
    limit = app.effective_max_presence_member_size_kb * 1024
    if user_info is not None and len(frames.dumps(user_info).encode()) > limit:
        raise errors.channel_error(f"Presence member data is larger than {limit // 1024} KiB")
    return user_id, user_info


def schedule_leave(
    engine: Engine, conn: Connection, app_id: str, channel: str, user_id: str, lease: float = 0.0
) -> None:
    """Queue the presence leave of ``conn`` now (in order with the user's later joins on this
    node); ``lease`` > 0 queues it that many seconds later instead."""
    if lease > 0:
        engine.spawn(_leave_after(engine, conn, app_id, channel, user_id, lease))
        return
    key = (app_id, channel, user_id)
    engine.spawn(engine.presence_order.queue(key, leave_presence(engine, conn, app_id, channel, user_id)))


async def _leave_after(
    engine: Engine, conn: Connection, app_id: str, channel: str, user_id: str, lease: float
) -> None:
    await asyncio.sleep(lease)
    key = (app_id, channel, user_id)
    await engine.presence_order.queue(key, leave_presence(engine, conn, app_id, channel, user_id))


async def leave_presence(engine: Engine, conn: Connection, app_id: str, channel: str, user_id: str) -> None:
    """Runs in the user's turn (see ``schedule_leave``)."""
    engine.registry.remove_member(conn, channel, user_id)
    if await engine.adapter.presence_leave(app_id, channel, conn.socket_id, user_id) is not None:
        if not engine.adapter.announces_presence:
            engine.adapter.broadcast(app_id, channel, OutFrame(frames.member_removed(channel, user_id)))
        engine.member_left_cluster(app_id, channel, user_id)


# -- Protocol V2 presence updates --------------------------------------------------------------
PRESENCE_UPDATE_MAX_BYTES = 1024

PRESENCE_UPDATES_PER_SECOND = 10


def presence_update(engine: Engine, conn: Connection, frame: frames.Frame) -> Awaitable[None] | None:
    """Replace this member's user_info and tell every V2 subscriber (the sender included)."""
    if conn.protocol != 2:
        raise errors.invalid_format("presence_update is only supported on protocol V2")
    data = frames.data_object(frame.data)
    channel = data.get("channel") if data else None
    if not isinstance(channel, str) or not kind_of(channel).presence:
        raise errors.invalid_format("presence_update needs a presence channel")
    user_id = conn.channels.get(channel)
    if user_id is None:
        raise errors.invalid_format(f"Not a member of {channel}")
    info = data.get("data")
    if not isinstance(info, dict) or len(frames.dumps(info).encode()) > PRESENCE_UPDATE_MAX_BYTES:
        raise errors.invalid_format(
            f"presence data must be an object of at most {PRESENCE_UPDATE_MAX_BYTES} bytes"
        )
    now = time.monotonic()
    window, count = conn.presence_rate.get(channel, (0.0, 0)) if conn.presence_rate else (0.0, 0)
    if now - window >= 1.0:
        window, count = now, 0
    if count >= PRESENCE_UPDATES_PER_SECOND:
        raise errors.client_event_error("Presence update rate limit exceeded")
    if conn.presence_rate is None:
        conn.presence_rate = {}
    conn.presence_rate[channel] = (window, count + 1)
    member = engine.registry.members(conn.app.id, channel).get(user_id)
    if member is not None:
        member.info = info
    return _publish_presence_update(engine, conn.app.id, channel, user_id, info)


async def _publish_presence_update(
    engine: Engine, app_id: str, channel: str, user_id: str, info: Any
) -> None:
    try:
        await engine.adapter.presence_update(app_id, channel, user_id, info)
    except AdapterUnavailable:
        raise errors.broadcast_error("cluster unavailable, try again") from None
    engine.meta_event(app_id, channel, "presence_update", {"channel": channel, "user_id": user_id})
    payload = frames.dumps({"user_id": user_id, "user_info": info})
    engine.adapter.broadcast(
        app_id,
        channel,
        OutFrame.v2_only(frames.to_v2(frames.encode("pusher_internal:presence_update", payload, channel))),
    )
    engine.events.emit(
        app_id, {"name": "member_updated", "channel": channel, "user_id": user_id, "user_info": info}
    )
