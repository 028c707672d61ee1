"""A lean Django request handler for the trusted-backend HTTP API.

The admin needs sessions, CSRF, authentication and messages middleware; the Pusher-signed API needs
none of them. Django runs every such middleware hook of an async request in a worker thread, and
those hops cost about 2 ms per publish (measured with py-spy), so ``/apps/...`` and ``/users/...``
go through this handler, which loads only the middleware listed in ``API_MIDDLEWARE``.

Django also gives every request a fresh thread for its sync code (and a second one to join it
afterwards); this handler lends each request a single-thread executor from a pool instead, so a
request still runs its sync code on one thread of its own but no thread is started per request.

Publishes (``POST /apps/{id}/events`` and ``/batch_events``) skip Django's request cycle altogether
(``realtime.server.fast_publish``): their views never use the database or a thread, so they need neither the
request signals (which close stale database connections, a thread hop each), nor an executor, nor
Django's request and response objects; the same middleware still runs around them.
"""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from realtime.server.fast_publish import PublishServer

API_MIDDLEWARE = (
    "realtime.api.limits.APIRateLimitMiddleware",
    "realtime.api.metrics_middleware.PrometheusBeforeMiddleware",
    "realtime.api.metrics_middleware.http_api_metrics",
    "realtime.api.metrics_middleware.PrometheusAfterMiddleware",
)


# Recent asgiref lets the caller own a thread-sensitive context's executor; older ones cannot
# (then every request gets Django's fresh thread, as before).
_LENDS_EXECUTORS = "executor" in inspect.signature(ThreadSensitiveContext).parameters
IDLE_EXECUTORS_KEPT = 64  # threads kept for the next requests; more concurrent requests get new ones


class APIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            route = self.publishes.route(scope["path"])
            if route is not None:
                return await self.publishes.serve(scope, receive, send, route)
        if not _LENDS_EXECUTORS or scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        idle = self._idle
        executor = idle.pop() if idle else ThreadPoolExecutor(1, thread_name_prefix="api")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # A view still running after its client went away only delays the executor's next
            # request (one worker runs one call at a time); it never shares the thread.
            if len(idle) < IDLE_EXECUTORS_KEPT:
                idle.append(executor)
            else:
                executor.shutdown(wait=False)

    async def _get_response_async(self, request: Any) -> Any:
        # ALLOWED_HOSTS, as Django's CommonMiddleware (not an API middleware) would check it: a
        # disallowed Host raises DisallowedHost inside the chain, which answers Django's 400.
        if "*" not in settings.ALLOWED_HOSTS:
            request.get_host()
        return await super()._get_response_async(request)

    async def send_response(self, response: Any, send: Any) -> None:
        # Django's CommonMiddleware, which the admin has, sets the length; without it daphne answers
        # chunked, and every client then parses chunk framing and a closing chunk per call.
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        await super().send_response(response, send)

    def load_middleware(self, is_async: bool = False) -> None:
        """Django's loader over the API subset of ``settings.MIDDLEWARE`` (same order)."""
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path in API_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
            self.publishes = PublishServer()  # the same middleware around the publish views
        finally:
            settings.MIDDLEWARE = full
