"""``pusher:signin``: user authentication, the user's own connections, and watchlist events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtime.protocol import errors, frames
from realtime.protocol.outframe import OutFrame
from realtime.protocol.signatures import user_string, verify_auth

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine


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
