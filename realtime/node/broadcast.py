"""The publish pipeline shared by the HTTP API (and later server-side callers).

``Publication`` is a validated event; ``publish`` runs on the event loop: encode once per channel,
remember it for cache channels, hand it to the adapter (one message per broadcast per node), then
collect the ``info`` the caller asked for.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from history.policy import history_enabled as enabled
from history.records import HistoryRecord, Position
from history.writer import get_writer
from realtime.cluster.base import AdapterUnavailable
from realtime.protocol import frames
from realtime.protocol.channels import SERVER_TO_USER_PREFIX, kind_of
from realtime.protocol.outframe import OutFrame

if TYPE_CHECKING:
    from apps_admin.models import App
    from realtime.node.engine import Engine


@dataclass(slots=True)
class Publication:
    name: str
    data: str
    channels: list[str]
    socket_id: str | None = None
    info: frozenset[str] = field(default_factory=frozenset)
    # Protocol V2 metadata (never delivered to V1 subscribers).
    tags: dict[str, str] | None = None
    extras: dict[str, Any] | None = None
    message_id: str | None = None
    idempotency_key: str | None = None
    ephemeral: bool = False

    @property
    def shown_extras(self) -> dict[str, Any] | None:
        if not self.extras:
            return None
        shown = {k: v for k, v in self.extras.items() if k not in ("idempotencyKey", "idempotency_key")}
        return shown or None


async def publish(engine: Engine, app: App, pub: Publication) -> dict[str, dict[str, Any]]:
    """Deliver ``pub`` to every channel; return per-channel info when ``pub.info`` asks for it."""
    adapter = engine.adapter
    receipts: dict[str, dict[str, Any]] = {}
    for channel in pub.channels:
        text = frames.encode(pub.name, pub.data, channel)
        extras = pub.shown_extras
        identity = None if pub.ephemeral else await _identity(engine, app, channel, pub.message_id)
        if identity is not None:
            message_id, stream_id, serial = identity
            v2 = frames.encode_v2(
                pub.name,
                channel,
                pub.data,
                tags=pub.tags,
                message_id=message_id,
                stream_id=stream_id,
                serial=serial,
                extras=extras,
            )
            frame = OutFrame(text, v2, position=identity)
            if history_enabled(app, channel):
                # Acknowledged only once durable: the writer commits concurrent publishes together.
                await write_history(engine, app, channel, pub, frame, identity)
            engine.remember(app, channel, frame)
            receipts[channel] = {"acknowledgement_id": message_id}
        elif pub.tags or extras or pub.message_id:
            v2 = frames.encode_v2(
                pub.name, channel, pub.data, tags=pub.tags, message_id=pub.message_id, extras=extras
            )
            frame = OutFrame(text, v2)
            if pub.message_id:
                receipts[channel] = {"acknowledgement_id": pub.message_id}
        else:
            frame = OutFrame(text)
        kind = kind_of(channel)
        if kind.server_to_user:
            await adapter.publish_to_user(app.id, channel[len(SERVER_TO_USER_PREFIX) :], frame)
            continue
        if kind.cache:
            engine.cache_put(app.id, channel, text)
        await adapter.publish(app.id, channel, frame, pub.socket_id)
    if not pub.info and not pub.message_id:
        return {}
    result: dict[str, dict[str, Any]] = {}
    for channel in pub.channels:
        result[channel] = {**receipts.get(channel, {}), **await channel_info(engine, app, channel, pub.info)}
    return result


def history_enabled(app: App, channel: str) -> bool:

    return enabled(app, channel)


async def _identity(engine: Engine, app: App, channel: str, message_id: str | None) -> tuple | None:
    """The message's identity; a sequencer that cannot answer (its first use of a channel reads the
    durable head) refuses the publish like an unreachable backend: 503, nothing published."""
    try:
        return await engine.identity(app, channel, message_id)
    except Exception as exc:
        raise AdapterUnavailable(f"stream position unavailable: {exc}") from exc


async def write_history(
    engine: Engine, app: App, channel: str, pub: Publication, frame: OutFrame, identity: tuple
) -> None:

    message_id, stream_id, serial = identity
    record = HistoryRecord(
        app_id=app.id,
        channel=channel,
        stream_id=stream_id,
        serial=serial,
        message_id=message_id,
        event_name=pub.name,
        published_at_ms=int(time.time() * 1000),
        payload=frame.v2_text,
        idempotency_key=pub.idempotency_key,
    )
    try:
        await get_writer().write(record)
    except Exception as exc:  # HistoryWriteFailed / HistoryBackpressure: never a silent success
        # Nothing was stored or delivered: give the serial back so the stream stays gapless (the
        # writer fails a channel's records newest first). Skipped when the rows may exist after
        # all, and a no-op when a later serial was taken meanwhile (another node; then the hole is
        # visible to readers as continuity.complete = false).
        if not getattr(exc, "may_be_stored", False):
            with contextlib.suppress(Exception):
                await engine.sequencer.release(app.id, channel, Position(stream_id, serial))
        raise AdapterUnavailable(f"history write failed: {exc}") from exc


async def channel_info(engine: Engine, app: App, channel: str, info: frozenset[str]) -> dict[str, Any]:
    """``user_count`` (presence channels) and ``subscription_count``, cluster-wide."""
    entry: dict[str, Any] = {}
    if "user_count" in info and kind_of(channel).presence:
        entry["user_count"] = len(await engine.adapter.members(app.id, channel))
    if "subscription_count" in info:
        entry["subscription_count"] = await engine.adapter.subscription_count(app.id, channel)
    return entry
