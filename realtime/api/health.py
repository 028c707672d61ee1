"""Liveness and readiness probes (no signature): ``/live`` and ``/up[/{app_id}]``."""

from __future__ import annotations

from django.http import HttpResponse

from apps_admin.managers import get_app_manager


def _plain(status: int, body: str) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="text/plain")
    response["X-Health-Check"] = body or "OK"
    return response


def live(request) -> HttpResponse:
    return _plain(200, "")


def up(request, app_id: str | None = None) -> HttpResponse:
    manager = get_app_manager()
    try:
        if app_id is not None:
            app = manager.load_by_id(app_id)
            if app is None:
                return _plain(404, "NOT_FOUND")
            if not app.enabled:
                return _plain(503, "ERROR")
        elif not manager.all_apps():
            return _plain(503, "ERROR")
    except Exception:
        return _plain(503, "ERROR")
    return _plain(200, "OK")
