"""App managers: where apps live. One small interface, one module per driver, chosen in settings."""

from __future__ import annotations

from functools import lru_cache

from django.utils.module_loading import import_string

from apps_admin.managers.base import AppManager
from realtime.conf import server_settings

DRIVERS = {
    "database": "apps_admin.managers.database.DatabaseAppManager",
    "static": "apps_admin.managers.static.StaticAppManager",
}


@lru_cache(maxsize=1)
def get_app_manager() -> AppManager:
    """The process-wide app manager (drivers hold the in-process cache)."""
    driver = server_settings().APP_MANAGER_DRIVER
    cls = import_string(DRIVERS.get(driver, driver))
    return cls(ttl=server_settings().APP_MANAGER_CACHE_TTL)


__all__ = ["AppManager", "get_app_manager"]
