"""Group commit for history writes (ARCHITECTURE.md rule 4).

Publishers ``await writer.write(record)``. Records queue up; one batch at a time is written by a
dedicated thread with a single ``store.append`` (one transaction, one bulk insert). A batch closes
when it holds ``max_batch`` records or its oldest record has waited ``max_delay_ms``; while a batch
is being committed the next one fills, so under load batches grow instead of round trips queueing
up. Batches commit one after the other, in order, so rows land in publish order.

Guarantees: ``write`` returns only after the record's batch committed; if the batch fails, every
caller of that batch gets ``HistoryWriteFailed``. More than ``capacity`` waiting records refuse new
writes at once (``HistoryBackpressure``) instead of queueing without bound.

Failed writes and serials: a publish whose write failed is answered with an error and delivered to
nobody, so its serial can be given back to the sequencer (``Sequencer.release``, done by the publish
pipeline) as long as no later serial of the channel was taken. To make that hold within a node, a
batch that failed on a connection error also fails the records of the same channels queued behind
it (the database is down: they would fail too, and one of them committing would fix the hole in
place), and callers learn of failures newest serial first, so each give-back finds its serial at the
head. ``HistoryWriteFailed.may_be_stored`` is set when the failure does not prove the rows absent
(a unique-position conflict): those serials are never given back. (Holes that remain, e.g. when
another node of a cluster took a later serial meanwhile, are visible to readers: ``complete`` is
false and ``range_after`` refuses to recover across them. The stream is not marked degraded for it,
so one database blip does not need an operator's reset.)

The writer thread gives each batch Django's request-cycle connection hygiene (``history.db``): an
unusable or expired connection is closed before the batch, a broken one after a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from history import db
from history.records import HistoryRecord
from history.store import get_store
from realtime.conf import server_settings

log = logging.getLogger(__name__)


class HistoryWriteFailed(Exception):
    """The batch holding this record was not committed."""

    #: True when the rows might exist after all (a position conflict): keep the serial used.
    may_be_stored = False


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
        self._failed_records = 0

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
                "failed_records": self._failed_records,
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
                behind = self._fail_behind(batch) if db.is_connection_error(exc) else []
                log.warning(
                    "history batch of %d records failed (%d queued records of its channels failed with it): %s",
                    len(records),
                    len(behind),
                    exc,
                )
                stored = _maybe_stored(exc)
                # Newest serial first, so each caller's give-back finds its serial at the head.
                for _r, future in sorted([*batch, *behind], key=lambda item: -item[0].serial):
                    if not future.done():
                        error = HistoryWriteFailed(f"history write failed: {exc}")
                        error.__cause__ = exc
                        error.may_be_stored = stored
                        future.set_exception(error)
            else:
                for _r, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _fail_behind(self, batch: list[tuple[HistoryRecord, asyncio.Future]]) -> list:
        """Take the queued records of the failed batch's channels out of the queue (they fail too)."""
        channels = {(r.app_id, r.channel) for r, _f in batch}
        behind = [item for item in self._pending if (item[0].app_id, item[0].channel) in channels]
        if behind:
            self._pending = [
                item for item in self._pending if (item[0].app_id, item[0].channel) not in channels
            ]
            with self._stats_lock:
                self._failed_records += len(behind)
        return behind

    def _commit(self, records: list[HistoryRecord]) -> None:
        """In the writer thread: one atomic append of the whole batch. The thread keeps its database
        connection between batches; when that connection broke (server restart, idle timeout) the
        batch is retried once on a fresh one. (Had the lost transaction committed after all, the retry
        fails on the unique positions and the callers get the error: never a duplicate row.)"""
        _discard_unusable()
        try:
            try:
                self.store.append(records)
            except Exception as exc:
                if not db.is_connection_error(exc):
                    raise
                _close_connections()
                self.store.append(records)
        except Exception:
            with self._stats_lock:
                self._failed += 1
                self._failed_records += len(records)
            _close_connections()
            raise
        with self._stats_lock:
            self._batches += 1
            self._records += len(records)
            self._max_size = max(self._max_size, len(records))


def _maybe_stored(exc: BaseException) -> bool:
    """A unique-position conflict: the rows (or others at those positions) exist."""
    try:
        from django.db import IntegrityError
    except ImportError:  # pragma: no cover - stores without Django
        return False
    return isinstance(exc, IntegrityError)


def _discard_unusable() -> None:
    """Before a batch, as Django does before a request: close the writer thread's connections that
    broke (an error occurred) or outlived ``CONN_MAX_AGE``."""
    try:
        from django.db import connections
    except ImportError:  # pragma: no cover - stores without Django
        return
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(Exception):
            db.discard_if_unusable(conn.alias)


def _close_connections() -> None:
    """After a failure, drop the writer thread's database connection so a broken one does not fail
    the next batch too (Django reconnects on the next query)."""
    try:
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            db.discard(conn.alias)
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
