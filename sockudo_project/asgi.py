"""ASGI entry point: HTTP goes to Django (admin, HTTP API), WebSocket ``/app/{key}`` to the realtime
consumer. Run it with ``python manage.py serve`` (daphne with production listen options)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sockudo_project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from realtime.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application})
