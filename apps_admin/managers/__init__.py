"""App managers: where apps live. One small interface, one module per driver, chosen in settings."""

from __future__ import annotations

from apps_admin.managers.base import AppManager
from realtime.conf import server_settings
from realtime.conf.drivers import Driver

DRIVERS = {
    "database": "apps_admin.managers.database.DatabaseAppManager",
    "static": "apps_admin.managers.static.StaticAppManager",
}


_manager: Driver[AppManager] = Driver(
    DRIVERS,
    choose=lambda: server_settings().APP_MANAGER_DRIVER,
    build=lambda cls: cls(ttl=server_settings().APP_MANAGER_CACHE_TTL),
)
get_app_manager = _manager.get  # the process-wide app manager (drivers hold the in-process cache)


__all__ = ["AppManager", "get_app_manager"]
