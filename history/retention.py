"""Retention: every ``HISTORY_PURGE_INTERVAL_SECONDS`` the rows past each channel's age window or
count cap (``history.policy``) are deleted. Each node may run it; purges are idempotent."""

from __future__ import annotations

import asyncio
import logging

from apps_admin.managers import get_app_manager
from history.policy import retention
from history.records import Retention
from history.store import get_store
from realtime.conf import server_settings

log = logging.getLogger(__name__)


def retention_for(app_id: str, channel: str) -> Retention | None:
    """The channel's retention, from its app (None for an app that no longer exists: kept as is)."""

    app = get_app_manager().load_by_id(app_id)
    return None if app is None else retention(app, channel)


def purge_once(store=None) -> int:
    """One retention pass (blocking); returns the number of rows deleted."""

    return (store or get_store()).purge_expired(retention_for)


async def purge_forever(interval: float | None = None, store=None) -> None:
    """Run retention passes until cancelled (start it as a background task of the server)."""
    from asgiref.sync import sync_to_async

    interval = float(interval or server_settings().HISTORY_PURGE_INTERVAL_SECONDS)
    while True:
        await asyncio.sleep(interval)
        try:
            purged = await sync_to_async(purge_once, thread_sensitive=False)(store)
            if purged:
                log.info("history retention removed %d messages", purged)
        except Exception:
            log.exception("history retention pass failed")
