"""Retention: every ``HISTORY_PURGE_INTERVAL_SECONDS`` the rows past each channel's age window or
count cap (``history.policy``) are deleted. Each node may run it; purges are idempotent."""

from __future__ import annotations

import asyncio
import logging
import time

from apps_admin.managers import get_app_manager
from history import db
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
    """Run retention passes until cancelled (start it as a background task of the server).

    Each pass is one unit of work on a worker thread (``HistoryStore.run_unit``): a connection the
    database dropped is discarded, so passes resume as soon as the database is back. A failing pass
    is logged once (then once a minute) and when passes succeed again; both are counted
    (``sockudo_history_retention_passes_total``)."""
    interval = float(interval or server_settings().HISTORY_PURGE_INTERVAL_SECONDS)
    failing = 0
    last_logged = 0.0
    while True:
        await asyncio.sleep(interval)
        target = store or get_store()
        try:
            purged = await target.apurge_expired(retention_for)
        except Exception as exc:
            db.count("retention_failed")
            failing += 1
            now = time.monotonic()
            if failing == 1:
                log.warning("history retention pass failed: reason=%s", _reason(exc), exc_info=exc)
                last_logged = now
            elif now - last_logged >= 60:
                log.warning("history retention still failing (%d passes): reason=%s", failing, _reason(exc))
                last_logged = now
            continue
        db.count("retention_ok")
        if failing:
            log.warning("history retention passes work again after %d failed", failing)
            failing = 0
        if purged:
            log.info("history retention removed %d messages", purged)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"
