"""The in-process adapter: one node, so every broadcast is a local fan-out (the embedded default)."""

from __future__ import annotations

from typing import Any

from realtime.cluster.base import Adapter, Node, PresenceJoin
from realtime.protocol.outframe import OutFrame


class LocalAdapter(Adapter):
    def broadcast(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> None:
        self.engine.deliver_local(app_id, channel, frame, except_socket_id)

    def send_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        self.engine.deliver_to_user(app_id, user_id, frame)

    def terminate_user(self, app_id: str, user_id: str, code: int, reason: str) -> None:
        self.engine.close_user(app_id, user_id, code, reason)

    def __init__(self, engine: Node) -> None:
        super().__init__(engine)
        self._counts: dict[tuple[str, str], int] = {}

    def channel_changed(self, app_id: str, channel: str) -> None:
        subs = self.engine.registry.subscribers(app_id, channel)
        after = len(subs) if subs else 0
        before = self._counts.pop((app_id, channel), 0)
        if after:
            self._counts[(app_id, channel)] = after
        self.engine.cluster_count_changed(app_id, channel, before, after)

    async def presence_join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, info: Any, max_members: int
    ) -> PresenceJoin:
        # Decided on the registry as it is before the handler records this connection.
        current = self.engine.registry.members(app_id, channel)
        is_new = user_id not in current
        if is_new and max_members and len(current) >= max_members:
            return PresenceJoin(False, True, {})
        members = {uid: m.info for uid, m in current.items()}
        if is_new:
            members[user_id] = info
        return PresenceJoin(is_new, False, members)

    async def presence_leave(self, app_id: str, channel: str, socket_id: str, user_id: str) -> str | None:
        # The handler already removed this connection from the registry.
        return None if user_id in self.engine.registry.members(app_id, channel) else user_id

    async def subscription_count(self, app_id: str, channel: str) -> int:
        subs = self.engine.registry.subscribers(app_id, channel)
        return len(subs) if subs else 0

    async def channels(self, app_id: str) -> dict[str, int]:
        state = self.engine.registry.apps.get(app_id)
        if state is None:
            return {}
        return {name: len(subs) for name, subs in state.channels.items()}

    async def members(self, app_id: str, channel: str) -> dict[str, object]:
        return {uid: m.info for uid, m in self.engine.registry.members(app_id, channel).items()}

    async def connection_count(self, app_id: str) -> int:
        return self.engine.registry.app_connection_count(app_id)
