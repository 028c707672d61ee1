"""WebSocket routes: ``/app/{key}`` (optionally under a path prefix a client sets as ``wsPath``)."""

from channels.routing import URLRouter
from django.urls import re_path

from .consumers import RealtimeConsumer

websocket_urlpatterns = [
    re_path(r"^(?:.*/)?app/(?P<key>[^/]+)/?$", RealtimeConsumer.as_asgi()),
]

websocket_application = URLRouter(websocket_urlpatterns)
