"""The adapter interface.

Guarantees every driver gives:
* ``broadcast`` delivers a frame to the channel's subscribers on every node, at most once per socket,
  in the order one process published; it sends one message per broadcast per node, never one per
  subscriber, and it never waits for a socket.
* The ``*_count`` / ``members`` queries answer for the whole cluster (the local driver: this process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine import Engine
    from ..outlets import OutFrame


class Adapter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def start(self) -> None:
        """Connect to shared infrastructure, if any."""

    async def stop(self) -> None:
        """Release shared infrastructure."""

    # -- delivery ------------------------------------------------------------------------------
    def broadcast(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> None:
        raise NotImplementedError

    def send_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        raise NotImplementedError

    def terminate_user(self, app_id: str, user_id: str, code: int, reason: str) -> None:
        raise NotImplementedError

    # -- cluster-wide queries ------------------------------------------------------------------
    async def subscription_count(self, app_id: str, channel: str) -> int:
        raise NotImplementedError

    async def channels(self, app_id: str) -> dict[str, int]:
        """Occupied channels and their subscription counts."""
        raise NotImplementedError

    async def members(self, app_id: str, channel: str) -> dict[str, object]:
        """Presence members: user id -> user_info."""
        raise NotImplementedError

    async def connection_count(self, app_id: str) -> int:
        raise NotImplementedError
