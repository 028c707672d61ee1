"""Server-wide settings: the table (``table.SETTINGS``), read from the environment at start-up.

``settings.SOCKUDO`` is built from the table by ``from_environ`` (in the project's settings module);
code reads the effective values through ``server_settings()``, by attribute
(``server_settings().ACTIVITY_TIMEOUT``). Overriding ``SOCKUDO`` (tests' ``override_settings``)
reloads them through Django's ``setting_changed`` signal. Imports nothing else of the project.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from realtime.conf.env import env_bool, env_int, env_str
from realtime.conf.table import SETTINGS, Setting

__all__ = ["SETTINGS", "ServerSettings", "Setting", "adapter_path", "from_environ", "server_settings"]

_ADAPTERS = {
    "local": "realtime.cluster.local.LocalAdapter",
    "redis": "realtime.cluster.redis.RedisAdapter",
}
_NAMES = frozenset(s.env for s in SETTINGS)


class ServerSettings(dict):
    """The effective settings; a misspelt name fails loudly instead of reading a default."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no server setting {name!r}") from None


def from_environ() -> dict[str, Any]:
    """Build ``settings.SOCKUDO`` from the environment."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.kind is bool:
            values[setting.env] = env_bool(setting.env, setting.default)
        elif setting.kind is int:
            values[setting.env] = env_int(setting.env, setting.default)
        else:
            values[setting.env] = env_str(setting.env, setting.default)
    return values


@lru_cache(maxsize=1)
def server_settings() -> ServerSettings:
    """The effective settings (defaults overlaid with ``settings.SOCKUDO``), read once."""
    from django.conf import settings

    values = ServerSettings((s.env, s.default) for s in SETTINGS)
    values.update(getattr(settings, "SOCKUDO", {}))
    return values


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "SOCKUDO":
        server_settings.cache_clear()


def connect_setting_changed() -> None:
    """Re-read ``server_settings()`` when ``settings.SOCKUDO`` changes (called by the app config)."""
    from django.core.signals import setting_changed

    setting_changed.connect(_reload, dispatch_uid="realtime.conf.reload")


def adapter_path(driver: str) -> str:
    """Dotted path of the adapter class for a driver name (or a dotted path itself)."""
    return _ADAPTERS.get(driver, driver)
