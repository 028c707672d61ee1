"""The app-manager interface and its in-process cache.

Guarantee: ``cached_by_key`` / ``cached_by_id`` never touch the database, so the socket path can call
them per frame; a miss is filled by ``load_*`` (blocking, call it off the event loop). Entries expire
after ``ttl`` seconds; unknown keys are remembered for a few seconds so a flood of bad keys costs no
queries; ``invalidate()`` (called on every App save/delete) empties the cache at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from apps_admin.models import App

NEGATIVE_TTL = 5.0
_MISSING = None


class AppManager:
    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._by_key: dict[str, tuple[App | None, float]] = {}
        self._by_id: dict[str, tuple[App | None, float]] = {}

    # -- driver hooks --------------------------------------------------------------------------
    def fetch_by_key(self, key: str) -> App | None:
        raise NotImplementedError

    def fetch_by_id(self, app_id: str) -> App | None:
        raise NotImplementedError

    def all_apps(self) -> list[App]:
        raise NotImplementedError

    # -- cached lookups ------------------------------------------------------------------------
    def cached_by_key(self, key: str) -> tuple[bool, App | None]:
        """(hit, app): a hit may be a remembered miss (app None)."""
        return self._cached(self._by_key, key)

    def cached_by_id(self, app_id: str) -> tuple[bool, App | None]:
        return self._cached(self._by_id, app_id)

    def load_by_key(self, key: str) -> App | None:
        hit, app = self.cached_by_key(key)
        if hit:
            return app
        app = self.fetch_by_key(key)
        self._remember(app, key=key)
        return app

    def load_by_id(self, app_id: str) -> App | None:
        hit, app = self.cached_by_id(app_id)
        if hit:
            return app
        app = self.fetch_by_id(app_id)
        self._remember(app, app_id=app_id)
        return app

    async def aget_by_key(self, key: str) -> App | None:
        hit, app = self.cached_by_key(key)
        if hit:
            return app
        return await sync_to_async(self.load_by_key, thread_sensitive=False)(key)

    def invalidate(self) -> None:
        self._by_key.clear()
        self._by_id.clear()

    # -- internals -----------------------------------------------------------------------------
    @staticmethod
    def _cached(cache: dict, name: str) -> tuple[bool, App | None]:
        entry = cache.get(name)
        if entry is None:
            return False, None
        app, expires = entry
        if expires < time.monotonic():
            cache.pop(name, None)
            return False, None
        return True, app

    def _remember(self, app: App | None, key: str | None = None, app_id: str | None = None) -> None:
        now = time.monotonic()
        if app is None:
            if key is not None:
                self._by_key[key] = (None, now + min(NEGATIVE_TTL, self.ttl))
            if app_id is not None:
                self._by_id[app_id] = (None, now + min(NEGATIVE_TTL, self.ttl))
            return
        expires = now + self.ttl
        self._by_key[app.key] = (app, expires)
        self._by_id[app.id] = (app, expires)
