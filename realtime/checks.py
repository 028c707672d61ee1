"""System checks for the realtime server's process model (``manage.py check``; also run by ``serve``).

``realtime.E001``: the in-process adapter with more than one worker process. Each worker is a node
with its own sockets; with ``ADAPTER_DRIVER=local`` a publish would reach only the subscribers of
the worker that received it, and presence and counts would differ per worker.

``realtime.E002``: ``DEBUG`` off with the built-in development ``SECRET_KEY``. That key is public; it
signs admin sessions, password resets and history cursors, so a production server must not start
with it. ``make run`` keeps a random key for the checkout in ``.secret_key`` instead.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.utils.module_loading import import_string

from realtime.cluster.local import LocalAdapter
from realtime.conf import adapter_path, server_settings
from realtime.conf.env import DEVELOPMENT_SECRET_KEY

# ``serve --workers N`` sets this before the checks run, so the flag counts like SOCKUDO_WORKERS.
workers_override: int | None = None


def configured_workers() -> int:
    if workers_override is not None:
        return workers_override
    return int(server_settings().SOCKUDO_WORKERS)


def _in_process(driver: str) -> bool:

    try:
        cls = import_string(adapter_path(driver))
    except ImportError:
        return False  # an unknown driver fails at start with its own error
    return isinstance(cls, type) and issubclass(cls, LocalAdapter)


@register(Tags.compatibility)
def check_adapter_and_workers(app_configs=None, **kwargs) -> list:
    workers = configured_workers()
    driver = server_settings().ADAPTER_DRIVER
    if workers > 1 and _in_process(driver):
        return [
            Error(
                f"ADAPTER_DRIVER={driver} keeps each process's sockets to itself, but {workers} worker "
                "processes are configured (SOCKUDO_WORKERS / serve --workers).",
                hint="Set ADAPTER_DRIVER=redis and REDIS_URL so the workers form one cluster, or run one worker.",
                id="realtime.E001",
            )
        ]
    return []


@register(Tags.security)
def check_secret_key(app_configs=None, **kwargs) -> list:
    if settings.DEBUG or settings.SECRET_KEY != DEVELOPMENT_SECRET_KEY:
        return []
    return [
        Error(
            "DEBUG is off and SECRET_KEY is the built-in development key, which is public: it signs admin "
            "sessions and history cursors.",
            hint="Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) to a long random value, the same on every "
            "node, e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(50))'`. `make run` "
            "keeps one for the checkout in .secret_key; DEBUG=true also lifts this check.",
            id="realtime.E002",
        )
    ]
