"""The in-process adapter: one node, so every broadcast is a local fan-out (the embedded default)."""

from __future__ import annotations

from ..outlets import OutFrame
from .base import Adapter


class LocalAdapter(Adapter):
    def broadcast(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> None:
        self.engine.deliver_local(app_id, channel, frame, except_socket_id)

    def send_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        self.engine.deliver_to_user(app_id, user_id, frame)

    def terminate_user(self, app_id: str, user_id: str, code: int, reason: str) -> None:
        self.engine.close_user(app_id, user_id, code, reason)

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
