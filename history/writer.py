"""Group commit for history writes (ARCHITECTURE.md rule 4).

Publishers ``await writer.write(record)``. Records queue up; one batch at a time is written by a
dedicated thread with a single ``store.append`` (one transaction, one bulk insert). A batch closes
when it holds ``max_batch`` records or its oldest record has waited ``max_delay_ms``; while a batch
is being committed the next one fills, so under load batches grow instead of round trips queueing
up. Batches commit one after the other, in order, so rows land in publish order.

Guarantees: ``write`` returns only after the record's batch committed; if the batch fails, every
caller of that batch gets ``HistoryWriteFailed``. (The serials of a failed batch are then missing
from the stream: readers see the hole and ``range_after`` refuses to recover across it. The stream
is not marked degraded for it, so one database blip does not need an operator's reset.) More than
``capacity`` waiting records refuse new writes at once (``HistoryBackpressure``) instead of
queueing without bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from history.records import HistoryRecord
from history.store import get_store
from realtime.conf import server_settings

log = logging.getLogger(__name__)


class HistoryWriteFailed(Exception):
    """The batch holding this record was not committed."""


class HistoryBackpressure(HistoryWriteFailed):
    """Too many records are already waiting for the database."""


class GroupCommitWriter:
    def __init__(
        self, store: Any, max_batch: int = 256, max_delay_ms: float = 5.0, capacity: int = 4096
    ) -> None:
        self.store = store
        self.max_batch = max(1, int(max_batch))
        self.max_delay = max(0.0, float(max_delay_ms)) / 1000
        self.capacity = max(self.max_batch, int(capacity))
        self._pending: list[tuple[HistoryRecord, asyncio.Future]] = []
        self._first_at = 0.0  # loop time at which the oldest pending record started waiting
        self._full = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="history-writer"
        )
        self._stats_lock = threading.Lock()
        self._batches = 0
        self._records = 0
        self._max_size = 0
        self._failed = 0

    # -- public API ----------------------------------------------------------------------------
    async def write(self, record: HistoryRecord) -> None:
        """Persist ``record``; returns once it is durable, raises ``HistoryWriteFailed`` if not."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        if len(self._pending) >= self.capacity:
            raise HistoryBackpressure(f"{len(self._pending)} history writes are already waiting")
        future = loop.create_future()
        if not self._pending:
            self._first_at = loop.time()
        self._pending.append((record, future))
        if len(self._pending) >= self.max_batch:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        await future

    async def write_many(self, records: Sequence[HistoryRecord]) -> None:
        """Persist several records (e.g. one publish to several channels)."""
        await asyncio.gather(*(self.write(r) for r in records))

    def stats(self) -> dict[str, float]:
        """Committed batches and records, mean/max batch size, failed batches, records waiting."""
        with self._stats_lock:
            return {
                "batches": self._batches,
                "records": self._records,
                "mean_batch_size": self._records / self._batches if self._batches else 0.0,
                "max_batch_size": self._max_size,
                "failed_batches": self._failed,
                "queue_depth": len(self._pending),
            }

    async def flush(self) -> None:
        """Wait until every record queued so far is committed (or failed), without waiting out the
        batch delay (used on shutdown)."""
        waiting = [f for _r, f in self._pending]
        if waiting:
            self._full.set()
            await asyncio.gather(*waiting, return_exceptions=True)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- internals -----------------------------------------------------------------------------
    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use, or use from a new event loop (tests): start with fresh loop-bound state."""
        if self._pending and self._loop is not None and not self._loop.is_closed():
            raise RuntimeError("GroupCommitWriter is in use by another event loop")
        self._loop = loop
        self._pending = []
        self._full = asyncio.Event()
        self._worker = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._first_at + self.max_delay - loop.time()
            if len(self._pending) < self.max_batch and wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), wait)
            self._full.clear()
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            if self._pending:
                self._first_at = loop.time()
                if len(self._pending) >= self.max_batch:
                    self._full.set()
            records = [r for r, _f in batch]
            try:
                await loop.run_in_executor(self._executor, self._commit, records)
            except Exception as exc:  # every caller of the batch learns that it failed
                log.warning("history batch of %d records failed: %s", len(records), exc)
                for _r, future in batch:
                    if not future.done():
                        error = HistoryWriteFailed(f"history write failed: {exc}")
                        error.__cause__ = exc
                        future.set_exception(error)
            else:
                for _r, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _commit(self, records: list[HistoryRecord]) -> None:
        """In the writer thread: one atomic append of the whole batch. The thread keeps its database
        connection between batches; when that connection broke (server restart, idle timeout) the
        batch is retried once on a fresh one. (Had the lost transaction committed after all, the retry
        fails on the unique positions and the callers get the error: never a duplicate row.)"""
        try:
            try:
                self.store.append(records)
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                _close_connections()
                self.store.append(records)
        except Exception:
            with self._stats_lock:
                self._failed += 1
            _close_connections()
            raise
        with self._stats_lock:
            self._batches += 1
            self._records += len(records)
            self._max_size = max(self._max_size, len(records))


def _is_connection_error(exc: Exception) -> bool:
    try:
        from django.db import InterfaceError, OperationalError
    except ImportError:  # pragma: no cover - stores without Django
        return False
    return isinstance(exc, InterfaceError | OperationalError)


def _close_connections() -> None:
    """After a failure, drop the writer thread's database connection so a broken one does not fail
    the next batch too (Django reconnects on the next query)."""
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: S110 - best effort only
        pass


_singleton_lock = threading.Lock()
_writer: GroupCommitWriter | None = None


def get_writer() -> GroupCommitWriter:
    """The process-wide writer over ``history.store.get_store()``."""
    global _writer
    if _writer is None:
        s = server_settings()
        with _singleton_lock:
            if _writer is None:
                _writer = GroupCommitWriter(
                    get_store(),
                    max_batch=s.HISTORY_WRITER_MAX_BATCH,
                    max_delay_ms=s.HISTORY_WRITER_MAX_DELAY_MS,
                    capacity=s.HISTORY_WRITER_QUEUE_CAPACITY,
                )
    return _writer
