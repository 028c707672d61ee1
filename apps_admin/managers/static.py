"""Apps defined in the environment: ``SOCKUDO_APPS`` (JSON list) plus the default app from
``SOCKUDO_DEFAULT_APP_*``. No database involved; useful for containers and tests."""

from __future__ import annotations

import os

from apps_admin.fields import app_from_mapping, default_app_from_environ
from apps_admin.managers.base import AppManager
from apps_admin.models import App
from realtime.conf.env import env_json


class StaticAppManager(AppManager):
    def __init__(self, ttl: float = 300.0) -> None:
        super().__init__(ttl=float("inf"))
        self._apps: dict[str, App] = {}
        definitions = env_json("SOCKUDO_APPS", [])
        if not isinstance(definitions, list):
            raise ValueError("SOCKUDO_APPS must be a JSON list of app objects")
        for data in definitions:
            app = App(**app_from_mapping(data))
            self._apps[app.id] = app
        if "SOCKUDO_DEFAULT_APP_ID" in os.environ or not self._apps:
            app = App(**default_app_from_environ())
            self._apps[app.id] = app
        for app in self._apps.values():
            self._remember(app)

    def fetch_by_key(self, key: str) -> App | None:
        return next((a for a in self._apps.values() if a.key == key), None)

    def fetch_by_id(self, app_id: str) -> App | None:
        return self._apps.get(app_id)

    def all_apps(self) -> list[App]:
        return list(self._apps.values())

    def invalidate(self) -> None:
        """Static apps never change at run time."""
