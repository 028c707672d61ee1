"""What each inbound event does: subscribe, unsubscribe, client events, sign-in, ping.

Functions of (engine, connection, frame); they raise ``ProtocolError`` for the client's mistakes and
the engine turns that into the protocol's error frame (or close).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from realtime.cluster.base import AdapterUnavailable
from realtime.conf import server_settings
from realtime.node.frames import history as v2_history
from realtime.protocol import errors, filters, frames
from realtime.protocol.channels import META_PREFIX, SERVER_TO_USER_PREFIX, kind_of, validate_name
from realtime.protocol.errors import ProtocolError
from realtime.protocol.signatures import channel_string, user_string, verify_auth
from realtime.server.outlets import OutFrame

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine


# -- subscribe / unsubscribe -------------------------------------------------------------------
def subscribe(engine: Engine, conn: Connection, frame: frames.Frame) -> Awaitable[None] | None:
    data = frames.data_object(frame.data)
    if data is None:
        raise errors.invalid_format("subscribe data must be an object with a channel")
    channel = data.get("channel")
    if channel is None:
        raise errors.invalid_format("subscribe requires a channel")
    app = conn.app
    if not app.enabled:
        raise errors.app_disabled()
    if isinstance(channel, str) and "*" in channel and not channel.startswith(SERVER_TO_USER_PREFIX):
        return _subscribe_pattern(engine, conn, channel, data)
    # A metachannel is valid when the channel it watches is.
    watched = (
        channel[len(META_PREFIX) :]
        if isinstance(channel, str) and channel.startswith(META_PREFIX)
        else channel
    )
    reason = validate_name(watched, app.effective_max_channel_name_length, app.channel_namespaces)
    if reason:
        raise errors.channel_error(reason)
    kind = kind_of(channel)
    if watched is not channel:
        return _subscribe_meta(engine, conn, channel, data)
    rewind = _rewind_option(conn, channel, data.get("rewind"))
    if conn.protocol == 2:
        _set_filter(conn, channel, data)
    if channel in conn.channels:  # idempotent: confirm again, no second member_added
        if kind.presence:
            return _confirm_presence(engine, conn, channel)
        engine.send(conn, frames.subscription_succeeded(channel))
        return None
    if kind.server_to_user:
        if conn.user_id is None or channel != SERVER_TO_USER_PREFIX + conn.user_id:
            _reject(
                engine,
                conn,
                channel,
                errors.auth_error("Sign in as this user to subscribe to its channel"),
                403,
            )
            return
        conn.channels[channel] = None  # delivery goes through the user index, not the channel
        engine.send(conn, frames.subscription_succeeded(channel))
        return
    user_id = None
    user_info: Any = None
    if kind.requires_auth:
        auth = data.get("auth")
        if not auth:
            _reject(
                engine,
                conn,
                channel,
                errors.auth_error("Authentication signature required for this channel"),
                401,
            )
            return
        channel_data = data.get("channel_data") if kind.presence else None
        if channel_data is not None and not isinstance(channel_data, str):
            channel_data = frames.dumps(channel_data)
        signed = channel_string(conn.socket_id, channel, channel_data)
        if not verify_auth(auth, app.key, app.secret, signed):
            _reject(
                engine,
                conn,
                channel,
                errors.auth_error("Invalid signature: channel requires authentication"),
                401,
            )
            return
        if kind.presence:
            try:
                user_id, user_info = _presence_identity(app, channel_data)
            except ProtocolError as error:
                _reject(engine, conn, channel, error, 401)
                return None
            return _join_presence(engine, conn, channel, user_id, user_info, rewind)
    attaching = conn.protocol == 2 and engine.identity_enabled(app, channel)
    if attaching:
        v2_history.hold(conn, channel)
    engine.registry.join(conn, channel)
    conn.channels[channel] = None
    if kind.requires_auth:
        conn.auth_deadline = 0.0
    if attaching:
        return _attach_then(engine, conn, channel, rewind, kind.cache, None)
    engine.send(conn, frames.subscription_succeeded(channel))
    _after_join(engine, conn, channel, kind.cache)
    return None


_PATTERN = re.compile(r"^[A-Za-z0-9\-_=@.:*]+$")


def _subscribe_pattern(engine: Engine, conn: Connection, pattern: str, data: dict) -> None:
    """A V2 wildcard subscription (``prefix*``, ``*suffix``, ``pre*suf``) on public channels."""
    if conn.protocol != 2:
        raise errors.channel_error("Wildcard subscriptions are only supported on protocol V2")
    if (
        pattern.count("*") != 1
        or not _PATTERN.match(pattern)
        or pattern.startswith(("private-", "presence-"))
        or len(pattern.encode()) > conn.app.effective_max_channel_name_length
    ):
        raise errors.channel_error(f"Invalid wildcard subscription '{pattern[:200]}'")
    _set_filter(conn, pattern, data)
    engine.registry.add_pattern(conn, pattern)
    conn.channels[pattern] = None
    engine.send(conn, frames.subscription_succeeded(pattern))


def _subscribe_meta(engine: Engine, conn: Connection, channel: str, data: dict) -> None:
    """``[meta]<channel>`` (V2): the watched channel's lifecycle events, with its authorization."""
    if conn.protocol != 2:
        raise errors.channel_error("Metachannels are only supported on protocol V2")
    watched = channel[len(META_PREFIX) :]
    if kind_of(watched).requires_auth and channel not in conn.channels:
        signed = channel_string(conn.socket_id, watched)
        if not verify_auth(data.get("auth"), conn.app.key, conn.app.secret, signed):
            _reject(
                engine,
                conn,
                channel,
                errors.auth_error("Metachannels of private channels need that channel's auth"),
                401,
            )
            return
    engine.registry.join(conn, channel)
    conn.channels[channel] = None
    engine.send(conn, frames.subscription_succeeded(channel))


def _set_filter(conn: Connection, channel: str, data: dict) -> None:
    """Compile the V2 subscription's ``filter`` / ``tags_filter`` (4000 when invalid)."""
    s = server_settings()
    try:
        rule = filters.parse(
            data.get("filter"),
            data.get("tags_filter"),
            tags_enabled=s["TAG_FILTERING_ENABLED"],
            events_enabled=s["EVENT_NAME_FILTERING_ENABLED"],
        )
    except filters.FilterError as exc:
        raise errors.invalid_format(str(exc)) from None
    if rule is None:
        if conn.filters:
            conn.filters.pop(channel, None)
        return
    if conn.filters is None:
        conn.filters = {}
    conn.filters[channel] = rule


def _rewind_option(conn: Connection, channel: str, raw: Any) -> tuple[str, int] | None:
    """Validate ``rewind`` (V2, history and rewind enabled for the channel); 4300 otherwise."""
    if raw is None:
        return None
    if conn.protocol != 2:
        raise errors.channel_error("Channel rewind is only supported on protocol V2")
    rewind = v2_history.parse_rewind(raw)
    policy = v2_history.history_policy(conn.app, channel)
    if not (policy.enabled and policy.rewind_enabled):
        raise errors.channel_error(f"Rewind is not enabled for {channel}")
    return rewind


async def _attach_then(
    engine: Engine, conn: Connection, channel: str, rewind: Any, cache: bool, presence: dict | None
) -> None:
    await v2_history.attach(engine, conn, channel, rewind, presence)
    if not conn.closed:
        _after_join(engine, conn, channel, cache)


async def _join_presence(
    engine: Engine, conn: Connection, channel: str, user_id: str, user_info: Any, rewind: Any = None
) -> None:
    """Join a presence channel: the adapter decides membership for the whole cluster."""
    app = conn.app
    try:
        joined = await engine.adapter.presence_join(
            app.id, channel, conn.socket_id, user_id, user_info, app.effective_max_presence_members
        )
    except AdapterUnavailable:
        _reject(engine, conn, channel, errors.broadcast_error("cluster unavailable, try again"), 503)
        return
    if joined.full:
        _reject(engine, conn, channel, errors.presence_full(), 403)
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
        added = OutFrame(frames.member_added(channel, user_id, user_info))
        engine.adapter.broadcast(app.id, channel, added, conn.socket_id)
        engine.member_joined(app.id, channel, user_id)
    if attaching:
        await _attach_then(
            engine, conn, channel, rewind, kind_of(channel).cache, _presence_payload(joined.members)
        )
        return
    engine.send(conn, frames.subscription_succeeded(channel, _presence_payload(joined.members)))
    _after_join(engine, conn, channel, kind_of(channel).cache)


def _after_join(engine: Engine, conn: Connection, channel: str, cache: bool) -> None:
    app_id = conn.app.id
    if cache:
        cached = engine.cache_get(app_id, channel)
        if cached:
            engine.send(conn, cached[0])
        else:
            engine.send(conn, frames.cache_miss(channel))
            engine.events.emit(app_id, {"name": "cache_miss", "channel": channel, "data": "{}"})
    engine.adapter.channel_changed(app_id, channel)


async def _confirm_presence(engine: Engine, conn: Connection, channel: str) -> None:
    try:
        members = await engine.adapter.members(conn.app.id, channel)
    except AdapterUnavailable:
        members = {uid: m.info for uid, m in engine.registry.members(conn.app.id, channel).items()}
    engine.send(conn, frames.subscription_succeeded(channel, _presence_payload(members)))


def _presence_payload(members: dict[str, Any]) -> dict[str, Any]:
    return {
        "ids": list(members),
        "hash": {uid: ({} if info is None else info) for uid, info in members.items()},
        "count": len(members),
    }


def _reject(engine: Engine, conn: Connection, channel: str, error: ProtocolError, status: int) -> None:
    """A failed subscribe: the global ``pusher:error`` plus a channel-scoped subscription_error so
    pusher-js / Laravel Echo fire the channel's error callback instead of waiting forever."""
    engine.send(conn, frames.error_frame(error))
    engine.send(conn, frames.subscription_error(channel, error.message, status))


def _presence_identity(app: Any, channel_data: str | None) -> tuple[str, Any]:
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


def unsubscribe(engine: Engine, conn: Connection, frame: frames.Frame) -> None:
    data = frame.data
    if isinstance(data, str):
        parsed = frames.data_object(data)
        channel = parsed.get("channel") if parsed is not None else data
    elif isinstance(data, dict):
        channel = data.get("channel")
    else:
        channel = None
    if isinstance(channel, str) and channel in conn.channels:
        leave_channel(engine, conn, channel)


def leave_channel(engine: Engine, conn: Connection, channel: str, lease: float = 0.0) -> None:
    """Leave a channel. ``lease`` > 0 (a V2 socket that dropped) keeps its presence membership
    that long, so a quick reconnect of the same user causes no member_removed/member_added pair."""
    user_id = conn.channels.pop(channel, None)
    if conn.filters:
        conn.filters.pop(channel, None)
    if "*" in channel and not channel.startswith(SERVER_TO_USER_PREFIX):
        engine.registry.remove_pattern(conn, channel)
        return
    if kind_of(channel).server_to_user:
        return  # never joined the registry (delivery goes through the user index)
    app_id = conn.app.id
    engine.registry.leave(conn, channel)
    engine.adapter.channel_changed(app_id, channel)
    if user_id is not None:
        engine.spawn(_leave_presence(engine, conn, app_id, channel, user_id, lease))


async def _leave_presence(
    engine: Engine, conn: Connection, app_id: str, channel: str, user_id: str, lease: float
) -> None:
    if lease > 0:
        await asyncio.sleep(lease)
    engine.registry.remove_member(conn, channel, user_id)
    if await engine.adapter.presence_leave(app_id, channel, conn.socket_id, user_id) is not None:
        engine.adapter.broadcast(app_id, channel, OutFrame(frames.member_removed(channel, user_id)))
        engine.member_left_cluster(app_id, channel, user_id)


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


# -- ping / pong -------------------------------------------------------------------------------
_PONG = OutFrame(frames.PONG)


def ping(engine: Engine, conn: Connection, frame: frames.Frame) -> None:
    engine.send_frame(conn, _PONG)


def pong(engine: Engine, conn: Connection, frame: frames.Frame) -> None:
    """Activity was already recorded by the engine; nothing else to do."""


# -- users -------------------------------------------------------------------------------------
def signin(engine: Engine, conn: Connection, frame: frames.Frame) -> None:
    app = conn.app
    if not app.enable_user_authentication:
        raise errors.auth_error("User authentication is disabled for this app")
    data = frames.data_object(frame.data)
    if data is None:
        raise errors.auth_error("signin data must be an object with auth and user_data")
    user_data = data.get("user_data")
    if not isinstance(user_data, str):
        raise errors.auth_error("user_data must be a JSON string")
    try:
        parsed = frames.loads(user_data)
    except ValueError:
        raise errors.auth_error("user_data is not valid JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str) or not parsed["id"]:
        raise errors.auth_error("user_data must contain a string id")
    if not verify_auth(data.get("auth"), app.key, app.secret, user_string(conn.socket_id, user_data)):
        raise errors.auth_error("Invalid signature for user authentication")
    watchlist: tuple[str, ...] = ()
    if app.enable_watchlist_events:
        raw = parsed.get("watchlist") or []
        if not isinstance(raw, list) or not all(isinstance(u, str) for u in raw):
            raise errors.auth_error("watchlist must be a list of user ids")
        if len(raw) > engine.watchlist_max:
            raise errors.watchlist_too_large(engine.watchlist_max)
        watchlist = tuple(dict.fromkeys(raw))
    if conn.user_id is not None:
        forget_user(engine, conn)
    user_id = parsed["id"]
    conn.user_id = user_id
    conn.user_data = parsed
    conn.auth_deadline = 0.0
    first = engine.registry.add_user(conn, user_id)
    engine.send(conn, frames.signin_success(user_data))
    if app.enable_watchlist_events:
        conn.watchlist = watchlist
        engine.registry.watch(conn, watchlist)
        online = [u for u in watchlist if engine.registry.user_connections(app.id, u)]
        offline = [u for u in watchlist if u not in online]
        entries = [
            e
            for e in ({"name": "online", "user_ids": online}, {"name": "offline", "user_ids": offline})
            if e["user_ids"]
        ]
        if entries:
            engine.send(conn, frames.watchlist_events(entries))
        if first:
            _notify_watchers(engine, app.id, user_id, "online")


def forget_user(engine: Engine, conn: Connection) -> None:
    """Drop a connection's sign-in (on close or re-sign-in); watchers learn when a user goes offline."""
    user_id = conn.user_id
    if user_id is None:
        return
    conn.user_id = None
    engine.registry.unwatch(conn, conn.watchlist)
    conn.watchlist = ()
    if engine.registry.remove_user(conn, user_id) and conn.app.enable_watchlist_events:
        _notify_watchers(engine, conn.app.id, user_id, "offline")


def _notify_watchers(engine: Engine, app_id: str, user_id: str, name: str) -> None:
    watchers = engine.registry.watchers_of(app_id, user_id)
    if watchers:
        out = OutFrame(frames.watchlist_events([{"name": name, "user_ids": [user_id]}]))
        for watcher in watchers:
            engine.send_frame(watcher, out)


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
