"""System checks for dangerous app set-ups (``manage.py check``; also run before ``serve``).

IDs: ``apps_admin.E001`` unknown app manager driver, ``apps_admin.E002`` apps cannot be loaded,
``apps_admin.W001`` wildcard origin with client events, ``apps_admin.W002`` client events without
a rate limit. The app checks read the configured app manager (database rows or static apps) and
stay silent when the database is missing or not migrated yet, so ``migrate`` itself still runs.
"""

from __future__ import annotations

from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError
from django.utils.module_loading import import_string

from apps_admin.managers import DRIVERS, get_app_manager
from realtime.conf import server_settings

# Origin values that let every site open a socket (matching is case-insensitive).
WILDCARD_ORIGINS = {"*", "any"}


def _driver_path(driver: str) -> str:

    return DRIVERS.get(driver, driver)


@register(Tags.compatibility)
def check_app_manager_driver(app_configs=None, **kwargs) -> list:
    driver = server_settings().APP_MANAGER_DRIVER

    try:
        import_string(_driver_path(driver))
    except ImportError:
        return [
            Error(
                f"Unknown APP_MANAGER_DRIVER {driver!r}.",
                hint=f"Use one of {', '.join(sorted(DRIVERS))}, or the dotted path of an AppManager subclass.",
                id="apps_admin.E001",
            )
        ]
    return []


@register(Tags.security)
def check_apps(app_configs=None, **kwargs) -> list:

    try:
        import_string(_driver_path(server_settings().APP_MANAGER_DRIVER))
    except ImportError:
        return []  # reported by check_app_manager_driver
    try:
        apps = get_app_manager().all_apps()
    except DatabaseError:
        return []  # no database or not migrated: nothing to inspect yet
    except (ValueError, TypeError) as exc:  # e.g. SOCKUDO_APPS is not valid JSON
        return [Error(f"Apps cannot be loaded: {exc}", id="apps_admin.E002")]
    messages: list = []
    for app in apps:
        messages.extend(app_warnings(app))
    return messages


def app_warnings(app) -> list:
    """The warnings about one app (also printed by ``create_app``)."""
    if not app.enable_client_messages:
        return []
    found = []
    origins = [str(o).strip().lower() for o in (app.allowed_origins or [])]
    if WILDCARD_ORIGINS.intersection(origins):
        found.append(
            Warning(
                f'App {app.id} allows client events and accepts WebSocket connections from any origin ("*").',
                hint="Any web page can then open sockets with this key and send client-* events through an "
                "authorized user's browser; list the app's real origins in allowed_origins.",
                obj=f"app {app.id}",
                id="apps_admin.W001",
            )
        )
    if app.effective_max_client_events_per_second == 0:
        source = (
            "the app's"
            if app.max_client_events_per_second == 0
            else "the server default (CLIENT_EVENT_MAX_PER_SECOND)"
        )
        found.append(
            Warning(
                f"App {app.id} allows client events without a rate limit ({source} max_client_events_per_second is 0).",
                hint="One socket can then flood every subscriber of a channel; set max_client_events_per_second "
                "(Pusher allows 10 per second).",
                obj=f"app {app.id}",
                id="apps_admin.W002",
            )
        )
    return found
