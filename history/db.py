"""Database hygiene for history work done outside Django's request cycle.

Django discards a broken or expired connection only at ``request_started`` / ``request_finished``
(``close_old_connections``). History also queries from threads that never see a request: the
worker threads of the store's ``a*`` coroutines (``sync_to_async(thread_sensitive=False)`` runs them
on the event loop's long-lived default executor, one connection per thread), the group-commit writer
thread and the retention loop. Without the same hygiene there, a connection broken by a database
restart or a network blip stays in its thread for good and every later query on it fails.

``unit_of_work`` gives each unit the request cycle's treatment: before it, an unusable or expired
connection (``CONN_MAX_AGE``) of the thread is closed; after an error, a connection that no longer
works is closed so the next unit reconnects. A read that failed on a connection which broke while
idle in the pool is run once more on a fresh one (reads and retention passes are idempotent), so a
recovered database is used from the first call on, not after one failure per pooled thread.

The counters here are plain numbers (thread-safe); ``realtime.node.metrics`` exports them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
COUNTS: dict[str, int] = {
    "discarded_connections": 0,  # broken connections closed by history work
    "retention_ok": 0,
    "retention_failed": 0,
}


def count(name: str, amount: int = 1) -> None:
    with _lock:
        COUNTS[name] = COUNTS.get(name, 0) + amount


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(COUNTS)


def is_connection_error(exc: BaseException) -> bool:
    """A failure of the connection itself (not of the query): the database went away."""
    try:
        from django.db import InterfaceError, OperationalError
    except ImportError:  # pragma: no cover - stores without Django
        return False
    return isinstance(exc, InterfaceError | OperationalError)


def _connection(using: str) -> Any:
    from django.db import connections

    return connections[using]


def discard_if_unusable(using: str = "default") -> None:
    """What Django does around a request, for this thread's connection: close it when it is broken
    (an error occurred and it does not answer) or older than ``CONN_MAX_AGE``."""
    conn = _connection(using)
    if conn.connection is None:
        return
    suspect = conn.errors_occurred
    try:
        conn.close_if_unusable_or_obsolete()
    except Exception:  # the check itself failed: the connection is no good
        _close(conn)
        return
    if suspect and conn.connection is None:
        count("discarded_connections")


def discard(using: str = "default") -> None:
    """Close this thread's connection (after a connection error); the next query reconnects."""
    conn = _connection(using)
    if conn.connection is not None:
        _close(conn)


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # closing a dead connection may fail; it is gone anyway
        conn.close()
    count("discarded_connections")


def unit_of_work(using: str, fn: Callable[..., T], *args: Any, retry: bool = True, **kwargs: Any) -> T:
    """Run ``fn`` (blocking, in the calling thread) with request-cycle connection hygiene."""
    discard_if_unusable(using)
    pooled = _connection(using).connection is not None
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if not is_connection_error(exc):
            discard_if_unusable(using)
            raise
        discard(using)
        if not (retry and pooled):
            raise
        # The pooled connection broke while idle (the database restarted, a proxy dropped it):
        # once more on a fresh connection. A database that is still down fails this at once.
        try:
            return fn(*args, **kwargs)
        except Exception as again:
            if is_connection_error(again):
                discard(using)
            else:
                discard_if_unusable(using)
            raise
