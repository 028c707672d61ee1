"""The history store (see ``base.HistoryStore`` for the guarantees), chosen by
``HISTORY_STORE_DRIVER``: ``orm`` (the project database), ``memory`` or a dotted path."""

from __future__ import annotations

import threading

from django.utils.module_loading import import_string

from history.store.base import ColdRange, HistoryPage, HistoryStore
from realtime.conf import server_settings

__all__ = ["ColdRange", "HistoryPage", "HistoryStore", "get_store", "store_path"]

DRIVERS = {
    "orm": "history.store.orm.OrmStore",
    "memory": "history.store.memory.MemoryStore",
}

_lock = threading.Lock()
_store: HistoryStore | None = None


def store_path(name: str) -> str:
    return DRIVERS.get(name or "orm", name)


def get_store() -> HistoryStore:
    """The process-wide store."""
    global _store
    if _store is None:
        with _lock:
            if _store is None:
                _store = import_string(store_path(server_settings().HISTORY_STORE_DRIVER))()
    return _store
