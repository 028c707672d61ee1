"""The history store interface.

A driver implements a few blocking primitives (``append``, ``stream``, ``retained``, ``select``,
``purge``, ``reset``, ``set_state``, ``find_by_key``, ``channels``); the query semantics every
surface relies on (pages with cursors and continuity, state, cold-recovery ranges, retention) are
built here once on top of them, so every driver answers alike. One conformance suite
(tests/test_history_store.py) runs over every driver.

Guarantees of every driver:

* ``append(records)`` is atomic: when it returns, every record is durable and visible to every
  reader (of every process sharing the backend); when it raises, none is. Positions are unique:
  a second record with the same (app, channel, stream, serial) fails the whole call.
* A channel has one current stream. Its stream row is created by the first append; ``reset`` swaps
  in a new stream id and drops every row; rows appended later under an older stream id are never
  returned and are removed by the next purge.
* ``purge`` deletes rows but keeps the stream id and its head: ``head`` never goes backwards within
  a stream, so the sequencer can be re-seeded from it without reusing a serial.
* Reads see only committed rows, ordered by serial.

Blocking methods must not run on the event loop; the ``a*`` coroutines run them in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from history.query import HistoryQuery, InvalidQuery, encode_cursor
from history.records import (
    HistoryRecord,
    Position,
    PurgeResult,
    ResetResult,
    Retained,
    Retention,
    StoredMessage,
    StreamInfo,
)

HEALTHY = "healthy"
DEGRADED = "degraded"
RESET_REQUIRED = "reset_required"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class HistoryPage:
    """One page of http-api.md §7.1 / the ``data`` of protocol-v2.md §8."""

    items: list[StoredMessage]
    direction: str
    limit: int
    has_more: bool
    next_cursor: str | None
    bounds: dict[str, Any]
    continuity: dict[str, Any]
    stream_state: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [item.item() for item in self.items],
            "direction": self.direction,
            "limit": self.limit,
            "has_more": self.has_more,
            "next_cursor": self.next_cursor,
            "bounds": self.bounds,
            "continuity": self.continuity,
            "stream_state": self.stream_state,
        }


@dataclass(slots=True)
class ColdRange:
    """What durable history can replay after a client's position (protocol-v2.md §7.2 "cold").

    ``failure`` is None when ``items`` are exactly the serials ``position + 1 .. head`` of the
    client's stream (possibly none); otherwise it is the (code, reason) of §7.3 to answer with.
    """

    expected_stream_id: str
    position: int
    current_stream_id: str | None
    head: int
    oldest_available_serial: int | None
    newest_available_serial: int | None
    failure: tuple[str, str] | None = None
    items: list[StoredMessage] = field(default_factory=list)

    @property
    def contiguous(self) -> bool:
        return self.failure is None

    def failure_data(self, channel: str) -> dict[str, Any]:
        """The ``data`` of ``sockudo:resume_failed`` (before JSON encoding)."""
        code, reason = self.failure or (None, None)
        return {
            "channel": channel,
            "code": code,
            "reason": reason,
            "expected_stream_id": self.expected_stream_id,
            "current_stream_id": self.current_stream_id,
            "oldest_available_serial": self.oldest_available_serial,
            "newest_available_serial": self.newest_available_serial,
        }


class HistoryStore:
    #: reported as ``authoritative_source`` / ``observed_source`` in stream states
    source = "store"

    # -- driver primitives (blocking) ---------------------------------------------------------
    def append(self, records: Sequence[HistoryRecord]) -> None:
        """Persist every record atomically (see the module docstring)."""
        raise NotImplementedError

    def stream(self, app_id: str, channel: str) -> StreamInfo | None:
        """The channel's current stream, or None before its first append or reset."""
        raise NotImplementedError

    def retained(self, app_id: str, channel: str, stream_id: str) -> Retained:
        """Counts and extremes of the rows kept for one stream."""
        raise NotImplementedError

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
        """Rows of one stream within inclusive bounds, by serial, at most ``limit``."""
        raise NotImplementedError

    def purge(
        self,
        app_id: str,
        channel: str,
        *,
        before_serial: int | None = None,
        before_time_ms: int | None = None,
    ) -> PurgeResult:
        """Delete rows of the current stream with serial < ``before_serial`` and/or published
        before ``before_time_ms`` (neither: all), plus rows of stale streams. Keeps the stream."""
        raise NotImplementedError

    def reset(self, app_id: str, channel: str, new_stream_id: str) -> ResetResult:
        """Make ``new_stream_id`` current (healthy, serials from 1) and delete every row."""
        raise NotImplementedError

    def set_state(self, app_id: str, channel: str, state: str, reason: str | None) -> None:
        """Mark an existing stream healthy / degraded / reset_required."""
        raise NotImplementedError

    def find_by_key(self, app_id: str, channel: str, key: str) -> StoredMessage | None:
        """The newest message of the current stream stored with this idempotency key."""
        raise NotImplementedError

    def channels(self) -> Iterable[tuple[str, str]]:
        """Every (app_id, channel) with a stream."""
        raise NotImplementedError

    # -- composed queries ----------------------------------------------------------------------
    def head(self, app_id: str, channel: str) -> Position | None:
        """The newest serial ever written to the current stream (kept across purges)."""
        info = self.stream(app_id, channel)
        if info is None:
            return None
        retained = self.retained(app_id, channel, info.stream_id)
        return Position(info.stream_id, max(retained.newest_serial or 0, info.purged_through_serial))

    def page(self, query: HistoryQuery) -> HistoryPage:
        """A page of http-api.md §7.1 semantics; raises ``InvalidQuery`` for a stale cursor."""
        info = self.stream(query.app_id, query.channel)
        if info is None:
            if query.after_stream_id is not None:
                raise InvalidQuery("cursor refers to a stream that no longer exists")
            return HistoryPage(
                [],
                query.direction,
                query.limit,
                False,
                None,
                query.bounds(),
                self._continuity(None, None, Retained(), query),
                self.stream_state(None),
            )
        if query.after_stream_id is not None and query.after_stream_id != info.stream_id:
            raise InvalidQuery("cursor refers to a stream that was reset")
        low, high = query.start_serial, query.end_serial
        if query.after_serial is not None:
            if query.descending:
                high = query.after_serial - 1 if high is None else min(high, query.after_serial - 1)
            else:
                low = query.after_serial + 1 if low is None else max(low, query.after_serial + 1)
        rows: list[StoredMessage] = []
        if low is None or high is None or low <= high:
            rows = self.select(
                query.app_id,
                query.channel,
                info.stream_id,
                min_serial=low,
                max_serial=high,
                min_time_ms=query.start_time_ms,
                max_time_ms=query.end_time_ms,
                descending=query.descending,
                limit=query.limit + 1,
            )
        has_more = len(rows) > query.limit
        rows = rows[: query.limit]
        cursor = encode_cursor(query, info.stream_id, rows[-1].serial) if has_more else None
        retained = self.retained(query.app_id, query.channel, info.stream_id)
        return HistoryPage(
            rows,
            query.direction,
            query.limit,
            has_more,
            cursor,
            query.bounds(),
            self._continuity(info.stream_id, info, retained, query),
            self.stream_state(info),
        )

    def state(self, app_id: str, channel: str) -> dict[str, Any]:
        """The ``stream`` object of http-api.md §7.2."""
        info = self.stream(app_id, channel)
        retained = self.retained(app_id, channel, info.stream_id) if info else Retained()
        head = max(retained.newest_serial or 0, info.purged_through_serial) if info else 0
        stream_id = info.stream_id if info else None
        return {
            "stream_id": stream_id,
            "next_serial": head + 1,
            "retained": {"stream_id": stream_id, **_retained_fields(retained)},
            "state": self.stream_state(info),
        }

    def stream_state(self, info: StreamInfo | None) -> dict[str, Any]:
        state = info.durable_state if info else HEALTHY
        return {
            "stream_id": info.stream_id if info else None,
            "durable_state": state,
            "recovery_allowed": state == HEALTHY,
            "reset_required": state == RESET_REQUIRED,
            "reason": info.reason if info else None,
            "node_id": None,
            "last_transition_at_ms": info.last_transition_at_ms if info else None,
            "authoritative_source": self.source,
            "observed_source": self.source,
        }

    def _continuity(
        self, stream_id: str | None, info: StreamInfo | None, retained: Retained, query: HistoryQuery
    ) -> dict[str, Any]:
        truncated = False
        if info is not None and info.purged_through_serial > 0:
            # Rows up to purged_through_serial were deleted: the query misses some when its serial
            # range reaches them and its time range does not start after the oldest retained row.
            low = max(query.start_serial or 1, 1)
            truncated = info.purged_through_serial >= low and (
                query.end_serial is None or low <= query.end_serial
            )
            if (
                truncated
                and query.start_time_ms is not None
                and retained.oldest_published_at_ms is not None
                and query.start_time_ms >= retained.oldest_published_at_ms
            ):
                truncated = False
        return {
            "stream_id": stream_id,
            **_retained_fields(retained),
            "complete": not truncated and retained.contiguous,
            "truncated_by_retention": truncated,
        }

    def range_after(self, app_id: str, channel: str, stream_id: str, serial: int, limit: int) -> ColdRange:
        """Messages after ``serial`` on ``stream_id`` for cold recovery, at most ``limit`` of them,
        with the proof of continuity the recovery code needs (``ColdRange.failure``)."""
        info = self.stream(app_id, channel)
        if info is None:
            return ColdRange(
                stream_id,
                serial,
                None,
                0,
                None,
                None,
                ("continuity_unverifiable", "durable_stream_head_unavailable"),
            )
        retained = self.retained(app_id, channel, info.stream_id)
        head = max(retained.newest_serial or 0, info.purged_through_serial)
        result = ColdRange(
            stream_id, serial, info.stream_id, head, retained.oldest_serial, retained.newest_serial
        )
        if info.durable_state == RESET_REQUIRED:
            result.failure = ("stream_reset", "durable_stream_reset_required")
        elif info.durable_state != HEALTHY:
            result.failure = ("persistence_unavailable", "history_stream_degraded")
        elif stream_id != info.stream_id:
            result.failure = ("stream_reset", "durable_stream_id_mismatch")
        elif serial > head:
            result.failure = ("continuity_unverifiable", "position_ahead_of_durable_stream")
        elif serial == head:
            pass  # nothing missed
        elif head - serial > limit:
            result.failure = ("position_expired", "recovery_window_exceeded")
        elif not retained.messages:
            result.failure = ("position_expired", "durable_history_empty_after_prior_writes")
        elif retained.oldest_serial > serial + 1:
            result.failure = ("position_expired", "retained_history_floor_is_ahead_of_requested_serial")
        else:
            items = self.select(
                app_id, channel, info.stream_id, min_serial=serial + 1, max_serial=head, limit=head - serial
            )
            if any(item.serial != serial + 1 + i for i, item in enumerate(items)):
                result.failure = ("continuity_unverifiable", "durable_history_is_not_contiguous")
            elif len(items) < head - serial:
                result.failure = ("continuity_unverifiable", "durable_history_ended_before_stream_head")
            else:
                result.items = items
        return result

    def purge_expired(
        self, retention_for: Callable[[str, str], Retention | None], now: int | None = None
    ) -> int:
        """Apply each channel's retention (age window, message count); returns rows deleted."""
        now = now_ms() if now is None else now
        purged = 0
        for app_id, channel in list(self.channels()):
            retention = retention_for(app_id, channel)
            if retention is None:
                continue
            if retention.window_seconds > 0:
                purged += self.purge(
                    app_id, channel, before_time_ms=now - retention.window_seconds * 1000
                ).purged_messages
            if retention.max_messages > 0:
                info = self.stream(app_id, channel)
                if info is None:
                    continue
                retained = self.retained(app_id, channel, info.stream_id)
                if retained.messages > retention.max_messages:
                    floor = retained.newest_serial - retention.max_messages + 1
                    purged += self.purge(app_id, channel, before_serial=floor).purged_messages
        return purged

    # -- units of work -------------------------------------------------------------------------
    def run_unit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one blocking unit of store work outside a request (a worker thread, the writer, the
        retention loop). Drivers with connections discard broken ones here, as Django's request
        cycle does for views (see ``history.db``); the base just calls ``fn``."""
        return fn(*args, **kwargs)

    # -- coroutine wrappers (run the blocking calls off the event loop) -------------------------
    async def _offload(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await sync_to_async(self.run_unit, thread_sensitive=False)(fn, *args, **kwargs)

    async def ahead(self, app_id: str, channel: str) -> Position | None:
        return await self._offload(self.head, app_id, channel)

    async def apage(self, query: HistoryQuery) -> HistoryPage:
        return await self._offload(self.page, query)

    async def astate(self, app_id: str, channel: str) -> dict[str, Any]:
        return await self._offload(self.state, app_id, channel)

    async def arange_after(
        self, app_id: str, channel: str, stream_id: str, serial: int, limit: int
    ) -> ColdRange:
        return await self._offload(self.range_after, app_id, channel, stream_id, serial, limit)

    async def afind_by_key(self, app_id: str, channel: str, key: str) -> StoredMessage | None:
        return await self._offload(self.find_by_key, app_id, channel, key)

    async def apurge_expired(self, retention_for: Callable[[str, str], Retention | None]) -> int:
        return await self._offload(self.purge_expired, retention_for)


def _retained_fields(retained: Retained) -> dict[str, Any]:
    return {
        "oldest_available_serial": retained.oldest_serial,
        "newest_available_serial": retained.newest_serial,
        "oldest_available_published_at_ms": retained.oldest_published_at_ms,
        "newest_available_published_at_ms": retained.newest_published_at_ms,
        "retained_messages": retained.messages,
        "retained_bytes": retained.bytes,
    }
