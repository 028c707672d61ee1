"""Operational endpoints, no signature (http-api.md §12, operations.md §3-4).

``/live`` (liveness), ``/up`` and ``/up/{app_id}`` (readiness), ``/usage`` and ``/stats`` (this
node), ``/metrics`` (Prometheus). The readiness, stats and metrics views are async: they run on the
event loop that owns the engine, so they read its registry directly and never block it (database
and file work goes to a thread, every dependency check is bounded by HEALTH_CHECK_TIMEOUT_MS).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.http import HttpResponse, JsonResponse

from apps_admin.managers import get_app_manager
from history.writer import get_writer
from realtime.conf import server_settings
from realtime.node import drain as shutdown
from realtime.node import metrics
from realtime.node.engine import current_engine, get_engine
from realtime.node.health import CHECKS, HealthCheck

if TYPE_CHECKING:
    from realtime.node.engine import Engine
    from realtime.node.registry import AppState

log = logging.getLogger(__name__)


def _plain(status: int, body: str) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="text/plain")
    response["X-Health-Check"] = body or "OK"
    return response


def _not_found() -> HttpResponse:
    return HttpResponse("404 NOT FOUND", status=404, content_type="text/plain")


async def _passes(check: HealthCheck, engine: Engine, timeout: float) -> bool:
    try:
        return bool(await asyncio.wait_for(check.run(engine), timeout))
    except Exception as exc:  # a timeout or a broken backend both mean "not ready"
        log.warning("health check %s failed: %r", check.name, exc)
        return False


def live(request) -> HttpResponse:
    return _plain(200, "")


async def up(request, app_id: str | None = None) -> HttpResponse:
    if shutdown.draining:
        return _plain(503, "DRAINING")
    timeout = server_settings().HEALTH_CHECK_TIMEOUT_MS / 1000
    manager = get_app_manager()
    try:
        if app_id is not None:
            load = sync_to_async(manager.load_by_id, thread_sensitive=False)
            app = await asyncio.wait_for(load(app_id), timeout)
            if app is None:
                return _plain(404, "NOT_FOUND")
            if not app.enabled:
                return _plain(503, "ERROR")
        elif not await asyncio.wait_for(sync_to_async(manager.all_apps, thread_sensitive=False)(), timeout):
            return _plain(503, "ERROR")
    except Exception as exc:
        log.warning("health check app_manager failed: %r", exc)
        return _plain(503, "ERROR")
    engine = await get_engine()
    checks = list(CHECKS)
    results = await asyncio.gather(*(_passes(check, engine, timeout) for check in checks))
    if any(not ok and check.critical for check, ok in zip(checks, results, strict=True)):
        return _plain(503, "ERROR")
    return _plain(200, "OK" if all(results) else "DEGRADED")


# -- usage and stats -------------------------------------------------------------------------------
def host_memory() -> dict[str, float]:
    """Host memory in bytes (``MemAvailable`` counts as free, as ``free`` and upstream do)."""
    try:
        fields = {}
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                name, _, rest = line.partition(":")
                fields[name] = int(rest.split()[0]) * 1024
        total = fields["MemTotal"]
        free = fields.get("MemAvailable", fields.get("MemFree", 0))
    except (OSError, KeyError, ValueError, IndexError):
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        free = os.sysconf("SC_AVPHYS_PAGES") * page
    used = total - free
    return {
        "free": free,
        "used": used,
        "total": total,
        "percent": round(used * 100 / total, 2) if total else 0.0,
    }


def _store_section() -> dict[str, Any]:
    # History and presence history are Protocol V2 stores; until one registers its own section
    # (``STATS_SECTIONS``) they are reported as off.
    return {
        "enabled": False,
        "backend": None,
        "state_authority": None,
        "degraded_channels": 0,
        "reset_required_channels": 0,
        "queue_depth": 0,
    }


def _history_section() -> dict[str, Any]:
    """Durable history: on or off by default, and the group-commit writer's batch figures."""

    settings = server_settings()
    writer = get_writer().stats()
    return {
        **_store_section(),
        "enabled": bool(settings.HISTORY_ENABLED),
        "backend": settings.HISTORY_STORE_DRIVER,
        "queue_depth": writer["queue_depth"],
        "writer": writer,
    }


# Sections of /stats other subsystems provide: name -> function returning the section's JSON.
STATS_SECTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "history": _history_section,
    "presence_history": _store_section,
}


def app_figures(state: AppState) -> dict[str, Any]:
    channels = state.channels
    presence = [subs for name, subs in channels.items() if name.startswith("presence-")]
    return {
        "connections": len(state.connections),
        "authenticated_connections": sum(len(conns) for conns in state.users.values()),
        "users": len(state.users),
        # Sockets that carry a user identity: signed in, or joined a presence channel as a member.
        "connections_with_meta": sum(
            1 for conn in state.connections.values() if conn.user_id is not None or conn.presence_user_id
        ),
        "occupancy": {
            "channels": len(channels),
            "subscriptions": sum(len(subs) for subs in channels.values()),
            "presence_channels": len(presence),
            "presence_subscriptions": sum(len(subs) for subs in presence),
            "presence_members": sum(len(members) for members in state.presence.values()),
        },
    }


def node_stats(engine: Engine) -> dict[str, Any]:
    """This node's figures (http-api.md §12); read on the event loop thread."""
    apps = [
        {"app_id": app_id, **app_figures(engine.registry.apps[app_id])}
        for app_id in sorted(engine.registry.apps)
    ]
    totals: dict[str, Any] = {
        "apps": len(apps),
        "connections": 0,
        "authenticated_connections": 0,
        "users": 0,
        "connections_with_meta": 0,
        "occupancy": dict.fromkeys(
            ("channels", "subscriptions", "presence_channels", "presence_subscriptions", "presence_members"),
            0,
        ),
    }
    for entry in apps:
        for key in ("connections", "authenticated_connections", "users", "connections_with_meta"):
            totals[key] += entry[key]
        for key, value in entry["occupancy"].items():
            totals["occupancy"][key] += value
    return {
        "memory": host_memory(),
        **{name: section() for name, section in STATS_SECTIONS.items()},
        "totals": totals,
        "apps": apps,
        # Not in upstream's shape: which process answered (several workers share one port) and on
        # which transport (SERVER_FAST_PATHS: the tuned daphne, or stock daphne and Django).
        "node": {
            "id": getattr(engine.adapter, "node_id", None),
            "pid": os.getpid(),
            "transport": "tuned" if server_settings().SERVER_FAST_PATHS else "stock",
        },
    }


async def usage(request) -> HttpResponse:
    if not server_settings().HTTP_API_USAGE_ENABLED:
        return _not_found()
    return JsonResponse({"memory": host_memory()})


async def stats(request) -> HttpResponse:
    if not server_settings().HTTP_API_USAGE_ENABLED:
        return _not_found()
    return JsonResponse(node_stats(await get_engine()))


# -- Prometheus ------------------------------------------------------------------------------------
async def prometheus_metrics(request) -> HttpResponse:
    """django-prometheus's HTTP/DB series and the realtime series; with ``serve --workers`` every
    worker's (prometheus_client multiprocess mode)."""
    if not server_settings().METRICS_ENABLED:
        return HttpResponse(metrics.DISABLED_BODY, content_type=metrics.CONTENT_TYPE)
    metrics.flush(current_engine())
    body = await sync_to_async(metrics.render, thread_sensitive=False)()
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE)
