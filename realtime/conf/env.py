"""Reading settings from environment variables (twelve-factor), with typed defaults."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote, urlparse

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return float(value)


def env_json(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return json.loads(value)
    except ValueError:
        raise ValueError(f"{name} must be JSON, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list (or a JSON array)."""
    value = os.environ.get(name)
    if value is None:
        return default
    value = value.strip()
    if value.startswith("["):
        return [str(v) for v in json.loads(value)]
    return [part.strip() for part in value.split(",") if part.strip()]


def database_from_url(url: str, base_dir: str) -> dict[str, Any]:
    """Django DATABASES entry from ``sqlite:///path`` or ``postgres://user:pw@host:port/name``."""
    parsed = urlparse(url)
    scheme = parsed.scheme
    if scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:////"):
            name = path
        elif path in ("", "/"):
            name = ":memory:"
        else:
            name = os.path.join(base_dir, path.lstrip("/"))
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
        }
    raise ValueError(f"Unsupported DATABASE_URL scheme {scheme!r}")


# The key Django uses when neither DJANGO_SECRET_KEY nor a key file gives one. It is public (it is in
# this repository), so a server with DEBUG off refuses it (system check realtime.E002).
DEVELOPMENT_SECRET_KEY = "insecure-dev-key-change-me-in-production"


def secret_key(default_file: str) -> str:
    """Django's ``SECRET_KEY``: ``DJANGO_SECRET_KEY``, else the first line of the key file
    (``DJANGO_SECRET_KEY_FILE``, default ``default_file``; ``make run`` writes one for the checkout),
    else the public development key."""
    value = os.environ.get("DJANGO_SECRET_KEY", "").strip()
    if value:
        return value
    path = os.environ.get("DJANGO_SECRET_KEY_FILE") or default_file
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.readline().strip()
    except OSError:
        value = ""
    return value or DEVELOPMENT_SECRET_KEY
