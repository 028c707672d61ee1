"""Rate limits of the HTTP API.

* Per client IP, on every ``/apps/...`` route and the SDK's ``/users/...`` alias, before the
  signature is checked (http-api.md §1 order of checks): a Django middleware, so routes added
  later are covered without opting in. Allowed responses carry ``X-RateLimit-*``; refusals are
  ``429`` with upstream's own JSON body (not the error envelope) and ``Retry-After``.
* Per app, when the app sets ``max_backend_events_per_second`` (publish routes, counted per event)
  or ``max_read_requests_per_second`` (GET routes): ``429 rate_limited`` in the error envelope.
  Upstream stores these fields without enforcing them; we enforce them, over 1-second windows,
  whether or not the per-IP limiter is switched on. These are DRF throttles on the API's views
  (``realtime.api.throttles``).

A counter store that does not answer fails closed with ``503 service_unavailable`` and
``Retry-After: 1`` (upstream answers 500; in a cluster the store is the same Redis as the adapter, and
a publish while Redis is away must read as "try again", never as a server fault or a success).
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

from realtime.conf import server_settings
from realtime.ratelimit import Limit, get_limiter
from realtime.ratelimit.base import Decision, RateLimiterUnavailable

TOO_MANY = {"error": "Too Many Requests", "message": "Rate limit exceeded. Please try again later."}
BACKEND_DOWN = {"error": "Rate limiter backend unavailable.", "code": "service_unavailable", "status": 503}


def compact_json(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def too_many_response(decision: Decision) -> HttpResponse:
    response = HttpResponse(compact_json(TOO_MANY), status=429, content_type="application/json")
    for name, value in decision.headers().items():
        response[name] = value
    # Django logs every 4xx as a warning; a client hammering the limit must not flood the log.
    response._has_been_logged = True
    return response


def backend_down_response() -> HttpResponse:
    response = HttpResponse(compact_json(BACKEND_DOWN), status=503, content_type="application/json")
    response["Retry-After"] = "1"
    return response


class APIRateLimitMiddleware:
    """Per-IP limit of the HTTP API. Removed from the chain when ``RATE_LIMITER_ENABLED`` is off.

    Under ASGI it runs on the event loop and uses the driver's non-blocking ``ahit``; under a
    synchronous handler (Django's test client) the blocking ``hit``.
    """

    sync_capable = True
    async_capable = True
    PREFIXES = ("/apps/", "/users/")

    def __init__(self, get_response: Any) -> None:
        settings = server_settings()
        if not settings.RATE_LIMITER_ENABLED:
            raise MiddlewareNotUsed
        self.get_response = get_response
        self.limit = Limit.api(settings)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        if not request.path_info.startswith(self.PREFIXES):
            return self.get_response(request)
        try:
            decision = get_limiter().hit(self._key(request), self.limit.max_requests, self.limit.window)
        except RateLimiterUnavailable:
            return backend_down_response()
        if not decision.allowed:
            return too_many_response(decision)
        return _with_headers(self.get_response(request), decision)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(self.PREFIXES):
            return await self.get_response(request)
        try:
            decision = await get_limiter().ahit(
                self._key(request), self.limit.max_requests, self.limit.window
            )
        except RateLimiterUnavailable:
            return backend_down_response()
        if not decision.allowed:
            return too_many_response(decision)
        return _with_headers(await self.get_response(request), decision)

    def _key(self, request: HttpRequest) -> str:
        meta = request.META
        return self.limit.key(
            meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), meta.get("HTTP_X_REAL_IP")
        )


def _with_headers(response: HttpResponse, decision: Decision) -> HttpResponse:
    # A per-app 429 already carries the headers of the limit that refused it; those win.
    for name, value in decision.headers().items():
        response.setdefault(name, value)
    return response
