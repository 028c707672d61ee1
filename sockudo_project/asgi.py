"""ASGI entry point: HTTP goes to Django (admin, HTTP API), WebSocket ``/app/{key}`` to the realtime
consumer. Run it with ``python manage.py serve`` (daphne with production listen options)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sockudo_project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from realtime import server  # noqa: E402
from realtime.api.urls import is_api_path  # noqa: E402
from realtime.websocket.routing import websocket_application  # noqa: E402

server.install_transport()
api_asgi_app = server.api_application(django_asgi_app)


def application(scope, receive, send):
    """Route by protocol and path; returns the handler's coroutine directly (no extra frame)."""
    if scope["type"] == "websocket":
        return websocket_application(scope, receive, send)
    if scope["type"] == "http" and is_api_path(scope.get("path", "")):
        return api_asgi_app(scope, receive, send)
    return django_asgi_app(scope, receive, send)
