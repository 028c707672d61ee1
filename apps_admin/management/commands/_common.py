"""Helpers shared by the app management commands (Django skips modules starting with ``_``)."""

from __future__ import annotations

from django.core.management.base import CommandError, OutputWrapper

from realtime.conf import server_settings


def warn_if_not_database(stderr: OutputWrapper) -> None:
    """Commands that write App rows are useless when the server reads apps from elsewhere."""
    driver = server_settings().APP_MANAGER_DRIVER
    if driver != "database":
        stderr.write(
            f"Warning: APP_MANAGER_DRIVER is {driver!r}; the server does not read apps from the database."
        )


def parse_assignments(items: list[str], option: str) -> list[tuple[str, str]]:
    """``["k=v", ...]`` to pairs; the value may itself contain ``=``."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CommandError(f"{option} expects NAME=VALUE, got {item!r}")
        pairs.append((name, value))
    return pairs
