"""In-process sequencer: one process is the whole cluster (``ADAPTER_DRIVER=local``).

State is a dict guarded by a lock, so it may be called from any thread or event loop (the HTTP
reset view runs on a worker thread's loop in tests). Entries live as long as the process.
"""

from __future__ import annotations

import threading

from history.sequencer.base import HeadLoader, Position, Sequencer, new_stream_id


class _Stream:
    __slots__ = ("stream_id", "serial")

    def __init__(self, stream_id: str, serial: int) -> None:
        self.stream_id = stream_id
        self.serial = serial


class LocalSequencer(Sequencer):
    def __init__(self, head_loader: HeadLoader | None = None) -> None:
        super().__init__(head_loader)
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str], _Stream] = {}

    async def _ensure(self, key: tuple[str, str]) -> None:
        if key in self._streams:
            return
        start = await self._initial(*key)
        with self._lock:
            # A concurrent first use (or a reset) may have won meanwhile: keep what is there.
            self._streams.setdefault(key, _Stream(start.stream_id, start.serial))

    async def next(self, app_id: str, channel: str) -> Position:
        key = (app_id, channel)
        await self._ensure(key)
        with self._lock:
            stream = self._streams[key]
            stream.serial += 1
            return Position(stream.stream_id, stream.serial)

    async def current(self, app_id: str, channel: str) -> Position:
        key = (app_id, channel)
        await self._ensure(key)
        with self._lock:
            stream = self._streams[key]
            return Position(stream.stream_id, stream.serial)

    async def release(self, app_id: str, channel: str, position: Position) -> bool:
        with self._lock:
            stream = self._streams.get((app_id, channel))
            if stream is None or stream.stream_id != position.stream_id or stream.serial != position.serial:
                return False
            stream.serial -= 1
            return True

    async def reset(self, app_id: str, channel: str) -> str:
        stream_id = new_stream_id()
        with self._lock:
            self._streams[(app_id, channel)] = _Stream(stream_id, 0)
        return stream_id
