"""Apps stored in the database through the App model (the default driver)."""

from __future__ import annotations

from django.db import close_old_connections

from apps_admin.managers.base import AppManager
from apps_admin.models import App


class DatabaseAppManager(AppManager):
    def fetch_by_key(self, key: str) -> App | None:
        close_old_connections()
        return App.objects.filter(key=key).first()

    def fetch_by_id(self, app_id: str) -> App | None:
        close_old_connections()
        return App.objects.filter(id=app_id).first()

    def all_apps(self) -> list[App]:
        return list(App.objects.all())
