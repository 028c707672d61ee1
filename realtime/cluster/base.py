"""The adapter interface: how one node's broadcasts and facts reach the rest of the cluster.

Guarantees every driver gives:
* ``broadcast`` / ``publish`` deliver a frame to the channel's subscribers on every node, at most once
  per socket, in the order one process published; one message per broadcast per node, never one per
  subscriber, and never a wait on a socket. ``publish`` (HTTP path) raises ``AdapterUnavailable`` when
  the cluster cannot be reached, so the API answers 503 instead of a silent success.
* ``presence_join`` / ``presence_leave`` decide membership atomically for the whole cluster: one
  ``member_added`` for a user's first connection anywhere, one ``member_removed`` after its last.
* The ``*_count`` / ``channels`` / ``members`` queries answer for the whole cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from realtime.protocol.outframe import OutFrame


class AdapterUnavailable(Exception):
    """The shared backend (e.g. Redis) cannot be reached right now."""


@dataclass(frozen=True, slots=True)
class PresenceJoin:
    is_new: bool  # the user's first connection in the channel, cluster-wide
    full: bool  # refused: the channel has reached its member limit
    members: dict[str, Any]  # user id -> user_info, after the join


class LocalState(Protocol):
    """What a driver may read of the node's own sockets (to count them and re-publish them)."""

    apps: Mapping[str, Any]  # app id -> its channels, presence members and connections

    def subscribers(self, app_id: str, channel: str) -> Mapping[Any, None] | None: ...

    def members(self, app_id: str, channel: str) -> Mapping[str, Any]: ...

    def app_connection_count(self, app_id: str) -> int: ...


class Node(Protocol):
    """The callbacks a driver makes into its node (the engine implements them); a driver never
    imports the engine itself."""

    registry: LocalState

    def deliver_local(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> int: ...

    def deliver_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None: ...

    def close_user(self, app_id: str, user_id: str, code: int, reason: str) -> int: ...

    def remember_remote(self, app_id: str, channel: str, frame: OutFrame) -> None:
        """A message with identity published on another node (for this node's replay buffer)."""

    def cluster_count_changed(self, app_id: str, channel: str, before: int, after: int) -> None:
        """This node's write moved the channel's cluster-wide count (webhooks are emitted here,
        once per change, and this node's subscribers hear the count)."""

    def counts_wanted(self, app_id: str, channel: str) -> bool:
        """Whether subscribers of ``channel`` get its count events (the app enables
        subscription_count), so other nodes must learn each new count; [meta] watchers aside."""
        ...

    def count_seen(self, app_id: str, channel: str, before: int, after: int) -> None:
        """Another node's write moved the channel's cluster-wide count: tell this node's
        subscribers and [meta] watchers (no webhooks; the writing node emits those)."""

    def member_left_cluster(self, app_id: str, channel: str, user_id: str) -> None: ...

    def adapter_outage(self, reason: str) -> None:
        """The shared backend became unreachable (counted once per outage)."""

    def adapter_recovered(self, reason: str) -> None:
        """The shared backend answers again and this node's state is whole there."""


class Adapter:
    healthy = True
    # True when presence_join / presence_leave broadcast member_added / member_removed themselves
    # (atomically with the decision, so every node sees them in decision order); else the caller does.
    announces_presence = False

    def __init__(self, engine: Node) -> None:
        self.engine = engine

    async def start(self) -> None:
        """Connect to shared infrastructure, if any."""

    async def stop(self) -> None:
        """Release shared infrastructure."""

    async def check(self) -> bool:
        """Readiness: can the cluster be reached?"""
        return True

    # -- delivery ------------------------------------------------------------------------------
    def broadcast(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> None:
        raise NotImplementedError

    async def publish(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> None:
        self.broadcast(app_id, channel, frame, except_socket_id)

    def send_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        raise NotImplementedError

    async def publish_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        self.send_to_user(app_id, user_id, frame)

    def terminate_user(self, app_id: str, user_id: str, code: int, reason: str) -> None:
        raise NotImplementedError

    # -- this node's state changed (drivers that share state write it out) ----------------------
    def channel_changed(self, app_id: str, channel: str) -> None:
        """A channel's local subscriber count changed."""

    def connections_changed(self, app_id: str) -> None:
        """An app's local connection count changed."""

    # -- presence ------------------------------------------------------------------------------
    async def presence_join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, info: Any, max_members: int
    ) -> PresenceJoin:
        raise NotImplementedError

    async def presence_leave(self, app_id: str, channel: str, socket_id: str, user_id: str) -> str | None:
        """The user id when its last connection in the channel left, else None."""
        raise NotImplementedError

    async def presence_update(self, app_id: str, channel: str, user_id: str, info: Any) -> None:
        """Replace a member's user_info cluster-wide (V2 presence_update)."""

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
