"""Lifecycle events of channels and members (the raw material of webhooks).

The engine reports what happened cluster-wide (``channel_occupied``, ``member_added``, ...) to one
sink; the sink decides what to do with it (the webhook dispatcher queues deliveries). Reporting never
blocks the caller.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from realtime.conf import server_settings

if TYPE_CHECKING:
    from realtime.node.engine import Engine

log = logging.getLogger(__name__)


class EventSink:
    def wants(self, app_id: str, name: str) -> bool:
        """Cheap pre-check (no I/O): False when an event ``name`` of ``app_id`` would surely be
        dropped, so the caller can skip building it. True means "maybe"."""
        return True

    def emit(self, app_id: str, event: dict[str, Any]) -> None:
        """Record one event ``{"name": ..., "channel": ..., ...}`` of app ``app_id``."""

    async def close(self) -> None:
        """Graceful shutdown: hand on what is still pending (called before the adapter stops)."""


class NullSink(EventSink):
    """Drops everything (no webhook backend configured)."""

    def wants(self, app_id: str, name: str) -> bool:
        return False

    def emit(self, app_id: str, event: dict[str, Any]) -> None:
        return None


def make_sink(engine: Engine) -> EventSink:
    """The sink ``WEBHOOK_SINK`` names (a dotted path, called with the engine); empty = NullSink.
    A sink that cannot be built disables webhooks for this process, with a warning."""
    from django.utils.module_loading import import_string

    path = server_settings().get("WEBHOOK_SINK") or ""
    if not path:
        return NullSink()
    try:
        return import_string(path)(engine)
    except Exception:
        log.warning(
            "event sink %s could not be set up: webhooks are off in this process", path, exc_info=True
        )
        return NullSink()
