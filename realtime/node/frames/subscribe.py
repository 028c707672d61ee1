"""``pusher:subscribe`` / ``pusher:unsubscribe``: channel rules, signatures, V2 filters, wildcards
and metachannels, then the join (presence joins go through ``presence``).

Functions of (engine, connection, frame); they raise ``ProtocolError`` for the client's mistakes and
the engine turns that into the protocol's error frame (or close)."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from realtime.conf import server_settings
from realtime.node.frames import history as v2_history
from realtime.node.frames.joining import after_join, attach_then, reject
from realtime.node.frames.presence import confirm_presence, join_presence, presence_identity, schedule_leave
from realtime.protocol import errors, filters, frames
from realtime.protocol.channels import META_PREFIX, SERVER_TO_USER_PREFIX, kind_of, validate_name
from realtime.protocol.errors import ProtocolError
from realtime.protocol.signatures import channel_string, verify_auth

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
            return confirm_presence(engine, conn, channel)
        engine.send(conn, frames.subscription_succeeded(channel))
        return None
    if kind.server_to_user:
        if conn.user_id is None or channel != SERVER_TO_USER_PREFIX + conn.user_id:
            reject(
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
            reject(
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
            reject(
                engine,
                conn,
                channel,
                errors.auth_error("Invalid signature: channel requires authentication"),
                401,
            )
            return
        if kind.presence:
            try:
                user_id, user_info = presence_identity(app, channel_data)
            except ProtocolError as error:
                reject(engine, conn, channel, error, 401)
                return None
            return join_presence(engine, conn, channel, user_id, user_info, rewind)
    attaching = conn.protocol == 2 and engine.identity_enabled(app, channel)
    if attaching:
        v2_history.hold(conn, channel)
    engine.registry.join(conn, channel)
    conn.channels[channel] = None
    if kind.requires_auth:
        conn.auth_deadline = 0.0
    if attaching:
        return attach_then(engine, conn, channel, rewind, kind.cache, None)
    engine.send(conn, frames.subscription_succeeded(channel))
    after_join(engine, conn, channel, kind.cache)
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
            reject(
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
    # Counted like any channel, so a node whose write moves the watched channel's count knows
    # that [meta] watchers somewhere want to hear it.
    engine.adapter.channel_changed(conn.app.id, channel)


def _set_filter(conn: Connection, channel: str, data: dict) -> None:
    """Compile the V2 subscription's ``filter`` / ``tags_filter`` (4000 when invalid)."""
    s = server_settings()
    try:
        rule = filters.parse(
            data.get("filter"),
            data.get("tags_filter"),
            tags_enabled=s.TAG_FILTERING_ENABLED,
            events_enabled=s.EVENT_NAME_FILTERING_ENABLED,
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
        schedule_leave(engine, conn, app_id, channel, user_id, lease)
