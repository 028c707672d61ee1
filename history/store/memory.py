"""In-process history store: for tests and single-process experiments (lost on restart, not shared
between processes). Same guarantees as every driver within its process."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from history.records import HistoryRecord, PurgeResult, ResetResult, Retained, StoredMessage, StreamInfo
from history.store.base import HEALTHY, HistoryStore, now_ms


class _Rows:
    """One stream's rows, sorted by serial."""

    __slots__ = ("serials", "rows")

    def __init__(self) -> None:
        self.serials: list[int] = []
        self.rows: list[StoredMessage] = []

    def has(self, serial: int) -> bool:
        at = bisect.bisect_left(self.serials, serial)
        return at < len(self.serials) and self.serials[at] == serial

    def add(self, row: StoredMessage) -> None:
        at = bisect.bisect_left(self.serials, row.serial)
        self.serials.insert(at, row.serial)
        self.rows.insert(at, row)

    def keep(self, rows: list[StoredMessage]) -> None:
        self.rows = rows
        self.serials = [r.serial for r in rows]


class _Channel:
    __slots__ = ("stream_id", "state", "reason", "purged_through", "changed_at", "streams")

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.state = HEALTHY
        self.reason: str | None = None
        self.purged_through = 0
        self.changed_at: int | None = None
        self.streams: dict[str, _Rows] = {}

    def rows(self, stream_id: str | None = None) -> _Rows:
        return self.streams.setdefault(stream_id or self.stream_id, _Rows())


class MemoryStore(HistoryStore):
    source = "memory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._channels: dict[tuple[str, str], _Channel] = {}

    async def _offload(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)  # no I/O: no thread hop

    def append(self, records: Sequence[HistoryRecord]) -> None:
        with self._lock:
            seen: set[tuple[str, str, str, int]] = set()
            for r in records:  # validate everything first: all or nothing
                position = (r.app_id, r.channel, r.stream_id, r.serial)
                channel = self._channels.get((r.app_id, r.channel))
                if position in seen or (
                    channel is not None
                    and r.stream_id in channel.streams
                    and channel.streams[r.stream_id].has(r.serial)
                ):
                    raise ValueError(f"duplicate history position {position}")
                seen.add(position)
            for r in records:
                channel = self._channels.get((r.app_id, r.channel))
                if channel is None:
                    channel = self._channels[(r.app_id, r.channel)] = _Channel(r.stream_id)
                channel.rows(r.stream_id).add(
                    StoredMessage(
                        r.stream_id,
                        r.serial,
                        r.message_id,
                        r.event_name,
                        r.published_at_ms,
                        r.payload,
                        r.payload_size_bytes,
                        r.idempotency_key,
                    )
                )

    def _current(self, app_id: str, channel: str, stream_id: str) -> list[StoredMessage]:
        c = self._channels.get((app_id, channel))
        if c is None or c.stream_id != stream_id or stream_id not in c.streams:
            return []
        return c.streams[stream_id].rows

    def stream(self, app_id: str, channel: str) -> StreamInfo | None:
        with self._lock:
            c = self._channels.get((app_id, channel))
            if c is None:
                return None
            return StreamInfo(c.stream_id, c.state, c.reason, c.purged_through, c.changed_at)

    def retained(self, app_id: str, channel: str, stream_id: str) -> Retained:
        with self._lock:
            rows = self._current(app_id, channel, stream_id)
            if not rows:
                return Retained()
            return Retained(
                len(rows),
                sum(r.payload_size_bytes for r in rows),
                rows[0].serial,
                rows[-1].serial,
                min(r.published_at_ms for r in rows),
                max(r.published_at_ms for r in rows),
            )

    def select(
        self,
        app_id: str,
        channel: str,
        stream_id: str,
        *,
        min_serial: int | None = None,
        max_serial: int | None = None,
        min_time_ms: int | None = None,
        max_time_ms: int | None = None,
        descending: bool = False,
        limit: int,
    ) -> list[StoredMessage]:
        with self._lock:
            rows = self._current(app_id, channel, stream_id)
            serials = [r.serial for r in rows]
            lo = 0 if min_serial is None else bisect.bisect_left(serials, min_serial)
            hi = len(serials) if max_serial is None else bisect.bisect_right(serials, max_serial)
            window = rows[lo:hi]
            if descending:
                window = window[::-1]
            out = []
            for r in window:
                if min_time_ms is not None and r.published_at_ms < min_time_ms:
                    continue
                if max_time_ms is not None and r.published_at_ms > max_time_ms:
                    continue
                out.append(r)
                if len(out) >= limit:
                    break
            return out

    def purge(
        self,
        app_id: str,
        channel: str,
        *,
        before_serial: int | None = None,
        before_time_ms: int | None = None,
    ) -> PurgeResult:
        with self._lock:
            c = self._channels.get((app_id, channel))
            if c is None:
                return PurgeResult(None, 0, 0)
            current = c.rows()
            keep, gone = [], []
            for r in current.rows:
                hit = (before_serial is None or r.serial < before_serial) and (
                    before_time_ms is None or r.published_at_ms < before_time_ms
                )
                (gone if hit else keep).append(r)
            current.keep(keep)
            c.streams = {c.stream_id: current}  # stale streams' rows go too
            if gone:
                c.purged_through = max(c.purged_through, max(r.serial for r in gone))
            return PurgeResult(c.stream_id, len(gone), sum(r.payload_size_bytes for r in gone))

    def reset(self, app_id: str, channel: str, new_stream_id: str) -> ResetResult:
        with self._lock:
            old = self._channels.get((app_id, channel))
            fresh = self._channels[(app_id, channel)] = _Channel(new_stream_id)
            fresh.changed_at = now_ms()
            if old is None:
                return ResetResult(None, new_stream_id, 0, 0)
            if new_stream_id in old.streams:  # published on the new stream before this reset
                fresh.streams[new_stream_id] = old.streams[new_stream_id]
            gone = old.streams.get(old.stream_id, _Rows()).rows if old.stream_id != new_stream_id else []
            return ResetResult(
                old.stream_id, new_stream_id, len(gone), sum(r.payload_size_bytes for r in gone)
            )

    def set_state(self, app_id: str, channel: str, state: str, reason: str | None) -> None:
        with self._lock:
            c = self._channels.get((app_id, channel))
            if c is not None and (c.state, c.reason) != (state, reason):
                c.state, c.reason, c.changed_at = state, reason, now_ms()

    def find_by_key(self, app_id: str, channel: str, key: str) -> StoredMessage | None:
        with self._lock:
            c = self._channels.get((app_id, channel))
            if c is None:
                return None
            return next((r for r in reversed(c.rows().rows) if r.idempotency_key == key), None)

    def channels(self) -> Iterable[tuple[str, str]]:
        with self._lock:
            return list(self._channels)
