"""Node-local registry: app -> channel -> connections, presence members, signed-in users, watchers.

Plain dictionaries touched only from the event loop thread. Subscriber sets are dicts (ordered,
O(1) add/remove) so a fan-out iterates them in join order.
"""

from __future__ import annotations

from typing import Any

from realtime.node.connection import Connection


class PresenceMember:
    __slots__ = ("info", "connections")

    def __init__(self, info: Any) -> None:
        self.info = info
        self.connections = 0


class AppState:
    __slots__ = ("connections", "channels", "presence", "users", "watchers", "patterns")

    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}
        self.channels: dict[str, dict[Connection, None]] = {}
        self.presence: dict[str, dict[str, PresenceMember]] = {}
        self.users: dict[str, dict[Connection, None]] = {}
        self.watchers: dict[str, dict[Connection, None]] = {}
        self.patterns: dict[str, dict[Connection, None]] = {}  # V2 wildcard subscriptions


class Registry:
    def __init__(self) -> None:
        self.apps: dict[str, AppState] = {}
        self.connection_count = 0

    def app(self, app_id: str) -> AppState:
        state = self.apps.get(app_id)
        if state is None:
            state = self.apps[app_id] = AppState()
        return state

    # -- connections ---------------------------------------------------------------------------
    def add_connection(self, conn: Connection) -> None:
        self.app(conn.app.id).connections[conn.socket_id] = conn
        self.connection_count += 1

    def remove_connection(self, conn: Connection) -> None:
        state = self.apps.get(conn.app.id)
        if state is not None and state.connections.pop(conn.socket_id, None) is not None:
            self.connection_count -= 1
            if not state.connections and not state.channels:
                del self.apps[conn.app.id]

    def app_connection_count(self, app_id: str) -> int:
        state = self.apps.get(app_id)
        return len(state.connections) if state else 0

    # -- channels ------------------------------------------------------------------------------
    def subscribers(self, app_id: str, channel: str) -> dict[Connection, None] | None:
        state = self.apps.get(app_id)
        return state.channels.get(channel) if state else None

    def join(self, conn: Connection, channel: str) -> None:
        subs = self.app(conn.app.id).channels.setdefault(channel, {})
        subs[conn] = None

    def leave(self, conn: Connection, channel: str) -> int:
        """Remove ``conn``; return how many subscribers remain."""
        state = self.apps.get(conn.app.id)
        if state is None:
            return 0
        subs = state.channels.get(channel)
        if subs is None:
            return 0
        subs.pop(conn, None)
        if not subs:
            del state.channels[channel]
            return 0
        return len(subs)

    def add_pattern(self, conn: Connection, pattern: str) -> None:
        self.app(conn.app.id).patterns.setdefault(pattern, {})[conn] = None

    def remove_pattern(self, conn: Connection, pattern: str) -> None:
        state = self.apps.get(conn.app.id)
        conns = state.patterns.get(pattern) if state else None
        if conns is not None:
            conns.pop(conn, None)
            if not conns:
                del state.patterns[pattern]

    # -- presence ------------------------------------------------------------------------------
    def members(self, app_id: str, channel: str) -> dict[str, PresenceMember]:
        state = self.apps.get(app_id)
        if state is None:
            return {}
        return state.presence.get(channel) or {}

    def add_member(self, conn: Connection, channel: str, user_id: str, info: Any) -> bool:
        """Count one more connection of ``user_id``; True when the user is new to the channel."""
        members = self.app(conn.app.id).presence.setdefault(channel, {})
        member = members.get(user_id)
        is_new = member is None
        if is_new:
            member = members[user_id] = PresenceMember(info)
        member.connections += 1
        return is_new

    def remove_member(self, conn: Connection, channel: str, user_id: str) -> bool:
        """Count one connection less; True when the user left the channel entirely."""
        state = self.apps.get(conn.app.id)
        members = state.presence.get(channel) if state else None
        member = members.get(user_id) if members else None
        if member is None:
            return False
        member.connections -= 1
        if member.connections > 0:
            return False
        del members[user_id]
        if not members:
            del state.presence[channel]
        return True

    # -- users ---------------------------------------------------------------------------------
    def add_user(self, conn: Connection, user_id: str) -> bool:
        """Index a signed-in connection; True when it is the user's first on this node."""
        conns = self.app(conn.app.id).users.setdefault(user_id, {})
        first = not conns
        conns[conn] = None
        return first

    def remove_user(self, conn: Connection, user_id: str) -> bool:
        """True when the user has no signed-in connection left on this node."""
        state = self.apps.get(conn.app.id)
        conns = state.users.get(user_id) if state else None
        if conns is None:
            return False
        conns.pop(conn, None)
        if conns:
            return False
        del state.users[user_id]
        return True

    def user_connections(self, app_id: str, user_id: str) -> list[Connection]:
        state = self.apps.get(app_id)
        conns = state.users.get(user_id) if state else None
        return list(conns) if conns else []

    def watch(self, conn: Connection, user_ids: tuple[str, ...]) -> None:
        watchers = self.app(conn.app.id).watchers
        for user_id in user_ids:
            watchers.setdefault(user_id, {})[conn] = None

    def unwatch(self, conn: Connection, user_ids: tuple[str, ...]) -> None:
        state = self.apps.get(conn.app.id)
        if state is None:
            return
        for user_id in user_ids:
            conns = state.watchers.get(user_id)
            if conns is not None:
                conns.pop(conn, None)
                if not conns:
                    del state.watchers[user_id]

    def watchers_of(self, app_id: str, user_id: str) -> list[Connection]:
        state = self.apps.get(app_id)
        conns = state.watchers.get(user_id) if state else None
        return list(conns) if conns else []
