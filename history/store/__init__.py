"""The history store (see ``base.HistoryStore`` for the guarantees), chosen by
``HISTORY_STORE_DRIVER``: ``orm`` (the project database), ``memory`` or a dotted path."""

from __future__ import annotations

from history.store.base import ColdRange, HistoryPage, HistoryStore
from realtime.conf import server_settings
from realtime.conf.drivers import Driver, resolve

__all__ = ["ColdRange", "HistoryPage", "HistoryStore", "get_store", "store_path"]

DRIVERS = {
    "orm": "history.store.orm.OrmStore",
    "memory": "history.store.memory.MemoryStore",
}


def store_path(name: str) -> str:
    return resolve(DRIVERS, name or "orm")


_store: Driver[HistoryStore] = Driver(DRIVERS, choose=lambda: server_settings().HISTORY_STORE_DRIVER or "orm")
get_store = _store.get  # the process-wide store
