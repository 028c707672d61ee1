"""Plain pages: the landing page a browser sees at ``/``."""

from django.conf import settings
from django.shortcuts import render

from apps_admin.managers import get_app_manager


def landing(request):
    manager = get_app_manager()
    try:
        apps = manager.all_apps()
    except Exception:  # database not migrated yet: still answer
        apps = []
    host = request.get_host()
    return render(
        request,
        "realtime/landing.html",
        {"apps": apps, "ws_url": f"ws://{host}/app/", "http_url": f"http://{host}", "debug": settings.DEBUG},
    )
