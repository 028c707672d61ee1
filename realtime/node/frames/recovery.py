"""Connection recovery (Protocol V2): the hot replay buffer and the ``sockudo:resume`` answer.

Every node keeps, per channel, the last ``max_buffer_size`` V2 frames with their serials for
``buffer_ttl`` seconds. Every node sees every broadcast (the adapter delivers them all), so each
node's buffer can serve a client that reconnects to it. A resume either replays exactly the missed
frames, in serial order, or fails the channel with a code the client acts on; never a partial gap and
never frames of another stream.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

from realtime.conf import server_settings


def recovery_settings(app: Any) -> tuple[bool, float, int]:
    """(enabled, buffer ttl seconds, max buffer size) for an app: app override, else server default."""
    s = server_settings()
    override = getattr(app, "connection_recovery", None) or {}
    enabled = override.get("enabled", s["CONNECTION_RECOVERY_ENABLED"])
    ttl = float(override.get("buffer_ttl_seconds") or s["CONNECTION_RECOVERY_BUFFER_TTL"])
    size = int(override.get("max_buffer_size") or s["CONNECTION_RECOVERY_MAX_BUFFER_SIZE"])
    return bool(enabled), ttl, size


@dataclass(slots=True)
class Buffered:
    serial: int
    message_id: str
    text: str  # the V2 frame, exactly as delivered live
    at: float


class ChannelBuffer:
    __slots__ = ("stream_id", "items", "head")

    def __init__(self, stream_id: str, size: int) -> None:
        self.stream_id = stream_id
        self.items: collections.deque[Buffered] = collections.deque(maxlen=size)
        self.head = 0  # newest serial seen on this stream


class Replay:
    """The outcome of looking a position up in the hot buffer."""

    __slots__ = ("frames", "failure", "stream_id", "oldest", "newest")

    def __init__(self, frames=None, failure=None, stream_id=None, oldest=None, newest=None) -> None:
        self.frames: list[Buffered] | None = frames
        self.failure: tuple[str, str] | None = failure
        self.stream_id: str | None = stream_id
        self.oldest: int | None = oldest
        self.newest: int | None = newest


class HotBuffer:
    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], ChannelBuffer] = {}

    def append(self, app: Any, channel: str, stream_id: str, serial: int, message_id: str, text: str) -> None:
        enabled, _ttl, size = recovery_settings(app)
        if not enabled:
            return
        key = (app.id, channel)
        buffer = self._channels.get(key)
        if buffer is None or buffer.stream_id != stream_id:
            buffer = self._channels[key] = ChannelBuffer(stream_id, size)
        if serial <= buffer.head:
            return  # already have it (e.g. our own broadcast echoed by the cluster)
        buffer.items.append(Buffered(serial, message_id, text, time.monotonic()))
        buffer.head = serial

    def head(self, app_id: str, channel: str) -> tuple[str, int] | None:
        buffer = self._channels.get((app_id, channel))
        return (buffer.stream_id, buffer.head) if buffer else None

    def after(self, app: Any, channel: str, stream_id: str | None, serial: int) -> Replay:
        """Frames with serials after ``serial`` on ``stream_id``, if the buffer proves continuity."""
        _enabled, ttl, _size = recovery_settings(app)
        buffer = self._channels.get((app.id, channel))
        if buffer is None:
            return Replay(failure=("position_expired", "hot_replay_expired"))
        cutoff = time.monotonic() - ttl
        while buffer.items and buffer.items[0].at < cutoff:
            buffer.items.popleft()
        oldest = buffer.items[0].serial if buffer.items else None
        if stream_id is not None and stream_id != buffer.stream_id:
            return Replay(
                failure=("stream_reset", "stream_id_mismatch"),
                stream_id=buffer.stream_id,
                oldest=oldest,
                newest=buffer.head,
            )
        if serial > buffer.head:
            return Replay(
                failure=("continuity_unverifiable", "position_ahead_of_stream"),
                stream_id=buffer.stream_id,
                oldest=oldest,
                newest=buffer.head,
            )
        if serial == buffer.head:
            return Replay(frames=[], stream_id=buffer.stream_id, oldest=oldest, newest=buffer.head)
        missed = [item for item in buffer.items if item.serial > serial]
        if not missed or missed[0].serial != serial + 1:
            return Replay(
                failure=("position_expired", "recovery_window_exceeded"),
                stream_id=buffer.stream_id,
                oldest=oldest,
                newest=buffer.head,
            )
        return Replay(frames=missed, stream_id=buffer.stream_id, oldest=oldest, newest=buffer.head)


# -- sockudo:resume ------------------------------------------------------------------------------
def resume(engine: Any, conn: Any, frame: Any) -> Any:
    """Validate a ``sockudo:resume``; the replay itself may read durable history, so it is async."""
    from realtime.protocol import errors, frames

    app = conn.app
    if not recovery_settings(app)[0]:
        raise errors.client_event_error("Connection recovery is not enabled")
    data = frames.data_object(frame.data)
    if data is None:
        raise errors.invalid_format("resume data must be an object")
    positions = data.get("channel_positions")
    if positions is None and isinstance(data.get("channel_serials"), dict):  # legacy: serials only
        positions = {ch: {"serial": serial} for ch, serial in data["channel_serials"].items()}
    if not isinstance(positions, dict) or not positions:
        raise errors.ProtocolError(errors.WATCHLIST_LIMIT, "No channel recovery positions provided")
    parsed = []
    for channel, position in positions.items():
        if not isinstance(channel, str) or not isinstance(position, dict):
            raise errors.invalid_format("channel_positions must map channel names to positions")
        try:
            serial = int(position.get("serial"))
        except (TypeError, ValueError):
            raise errors.invalid_format(f"Invalid serial for channel {channel}") from None
        parsed.append((channel, position.get("stream_id"), serial, position.get("last_message_id")))
    from realtime.node.frames import history as v2_history

    for channel, *_ in parsed:  # live frames wait until the channel's replay is done
        if channel in conn.channels:
            v2_history.hold(conn, channel)
    return _resume(engine, conn, parsed)


async def _resume(engine: Any, conn: Any, parsed: list) -> None:
    from realtime.node.frames import history as v2_history

    try:
        await _replay_all(engine, conn, parsed)
    finally:
        # Whatever happened (a failed history read included), never leave live frames held.
        for channel, *_ in parsed:
            if conn.hold and channel in conn.hold:
                v2_history.release(engine, conn, channel, 0, set())


async def _replay_all(engine: Any, conn: Any, parsed: list) -> None:
    from realtime.node.engine import passes
    from realtime.node.frames import history as v2_history
    from realtime.protocol import frames
    from realtime.server.outlets import OutFrame

    app = conn.app
    _enabled, _ttl, max_size = recovery_settings(app)
    recovered, failed = [], []
    for channel, stream_id, serial, last_message_id in parsed:
        replay = engine.hot.after(app, channel, stream_id, serial)
        items, source, failure = replay.frames, "hot", None
        if items is None:
            failure = {
                "channel": channel,
                "code": replay.failure[0],
                "reason": replay.failure[1],
                "expected_stream_id": stream_id,
                "current_stream_id": replay.stream_id,
                "oldest_available_serial": replay.oldest,
                "newest_available_serial": replay.newest,
            }
            if stream_id is None:
                failure["code"] = "continuity_unverifiable"
                failure["reason"] = "legacy_serial_only_position_cannot_use_cold_recovery"
            elif replay.failure[0] == "position_expired" and v2_history.history_policy(app, channel).enabled:
                try:
                    cold = await v2_history.cold_replay(engine, conn, channel, stream_id, serial, max_size)
                except Exception:  # the durable store is unreachable: say so, never crash the socket
                    failure["code"], failure["reason"] = (
                        "persistence_unavailable",
                        "durable_history_read_failed",
                    )
                else:
                    if cold.failure is None:
                        items, source, failure = [_Stored(i) for i in cold.items], "cold", None
                    else:
                        failure = cold.failure_data(channel)
        if failure is not None:
            failed.append(failure)
            engine.send(conn, frames.encode("pusher:resume_failed", frames.dumps(failure), channel))
            v2_history.release(engine, conn, channel, 0, set())
            continue
        replayed, last = 0, None
        seen = set()
        for item in items:
            last = item
            seen.add(item.message_id)
            if item.message_id == last_message_id:
                continue
            frame = OutFrame(None, item.text)
            if not passes(conn, channel, frame):  # filtered subscriptions replay filtered
                continue
            engine.send_frame(conn, frame)
            replayed += 1
        recovered.append(
            {
                "channel": channel,
                "source": source,
                "replayed": replayed,
                "position": None
                if last is None
                else {"stream_id": stream_id, "serial": last.serial, "last_message_id": last.message_id},
            }
        )
        v2_history.release(engine, conn, channel, last.serial if last else serial, seen)
    engine.send(
        conn, frames.encode("pusher:resume_success", frames.dumps({"recovered": recovered, "failed": failed}))
    )


class _Stored:
    """A durable history row seen as a replay item."""

    __slots__ = ("serial", "message_id", "text")

    def __init__(self, stored: Any) -> None:
        self.serial = stored.serial
        self.message_id = stored.message_id
        self.text = stored.payload
