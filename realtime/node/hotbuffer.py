"""The hot replay buffer of connection recovery (Protocol V2).

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
    enabled = override.get("enabled", s.CONNECTION_RECOVERY_ENABLED)
    ttl = float(override.get("buffer_ttl_seconds") or s.CONNECTION_RECOVERY_BUFFER_TTL)
    size = int(override.get("max_buffer_size") or s.CONNECTION_RECOVERY_MAX_BUFFER_SIZE)
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
