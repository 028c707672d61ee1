"""A lean Django request handler for the trusted-backend HTTP API.

The admin needs sessions, CSRF, authentication and messages middleware; the Pusher-signed API needs
none of them. Django runs every such middleware hook of an async request in a worker thread, and
those hops cost about 2 ms per publish (measured with py-spy), so ``/apps/...`` and ``/users/...``
go through this handler, which loads only the middleware listed in ``API_MIDDLEWARE``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_PATH_PREFIXES = ("/apps/", "/users/")
API_MIDDLEWARE = (
    "realtime.ratelimit.http.APIRateLimitMiddleware",
    "realtime.api.metrics_middleware.PrometheusBeforeMiddleware",
    "realtime.api.metrics_middleware.http_api_metrics",
    "realtime.api.metrics_middleware.PrometheusAfterMiddleware",
)


class APIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        """Django's loader over the API subset of ``settings.MIDDLEWARE`` (same order)."""
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path in API_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def is_api_path(path: str) -> bool:
    return path.startswith(API_PATH_PREFIXES)
