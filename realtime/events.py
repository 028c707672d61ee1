"""Lifecycle events of channels and members (the raw material of webhooks).

The engine reports what happened cluster-wide (``channel_occupied``, ``member_added``, ...) to one
sink; the sink decides what to do with it (the webhook dispatcher queues deliveries). Reporting never
blocks the caller.
"""

from __future__ import annotations

from typing import Any


class EventSink:
    def emit(self, app_id: str, event: dict[str, Any]) -> None:
        """Record one event ``{"name": ..., "channel": ..., ...}`` of app ``app_id``."""


class NullSink(EventSink):
    """Drops everything (no webhook backend configured)."""

    def emit(self, app_id: str, event: dict[str, Any]) -> None:
        return None
