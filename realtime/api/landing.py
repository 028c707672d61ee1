"""Plain pages: the landing page a browser sees at ``/``.

App ids and keys are listed only to staff signed in to the admin: a key is what a client needs to
open sockets on an app (and count against its limits), so anonymous visitors see how to connect,
not which apps exist.
"""

from django.conf import settings
from django.shortcuts import render

from apps_admin.managers import get_app_manager


def landing(request):
    staff = bool(request.user.is_active and request.user.is_staff)
    apps = []
    if staff:
        try:
            apps = get_app_manager().all_apps()
        except Exception:  # database not migrated yet: still answer
            apps = []
    host = request.get_host()
    return render(
        request,
        "realtime/landing.html",
        {
            "apps": apps,
            "staff": staff,
            "ws_url": f"ws://{host}/app/",
            "http_url": f"http://{host}",
            "debug": settings.DEBUG,
        },
    )
