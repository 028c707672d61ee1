"""Per-app limits of the HTTP API as DRF throttles (the per-IP budget of failed requests is a
middleware: ``realtime.api.limits``).

* ``BackendEventsThrottle``: the app's ``max_backend_events_per_second``, on publishes, counted per
  event (the view's ``throttle_cost``: 1 for ``/events``, the batch size for ``/batch_events``).
* ``ReadRequestsThrottle``: the app's ``max_read_requests_per_second``, on GETs.

An app's own value counts over 1-second windows whether or not the limiter is switched on; an app
without one gets the server's default (``RATE_LIMITER_APP_EVENTS_PER_SECOND``,
``RATE_LIMITER_APP_READS_PER_SECOND``; 0 = none) while ``RATE_LIMITER_ENABLED`` is on. A refusal is
``429 rate_limited`` in the error envelope with ``Retry-After`` and ``X-RateLimit-*``
(``SignedAPIView.throttled`` raises the throttle's ``refusal``); a counter store that does not
answer fails closed with ``503 service_unavailable`` and ``Retry-After: 1``.

DRF asks ``allow_request`` (blocking: the sync views run in a worker thread); the async publish
views ask ``aallow_request``, which asks the counter store without blocking the event loop.
"""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import BaseThrottle

from realtime.api import errors
from realtime.conf import server_settings
from realtime.ratelimit import client_ip, get_limiter, refusals
from realtime.ratelimit.base import Decision, RateLimiterUnavailable

# Per-app limits are "per second" (operations.md §1.2).
APP_WINDOW = 1


class AppRateThrottle(BaseThrottle):
    """A per-app limit read from the authenticated app's ``limit_field``; apps without one are not
    limited. Counted under ``{scope}:{app id}``."""

    limit_field: str
    default_setting: str  # the server's default for apps without one
    refusal_limit: str  # the ``limit`` label of a refusal (``realtime.ratelimit.refusals``)
    scope: str
    what: str  # "... per second exceeded" in the refusal
    methods: tuple[str, ...]  # the requests it counts (``SignedAPIView.get_throttles``)

    def __init__(self) -> None:
        self.decision: Decision | None = None
        self.limit = 0

    def cost(self, request: Any, view: Any) -> int:
        return 1

    def _counted(self, request: Any, view: Any) -> tuple[str, int, int] | None:
        """(key, limit, cost) of this request, or None when it is not limited."""
        app = request.auth
        limit = getattr(app, self.limit_field, None) or self.server_default()
        if not limit:
            return None
        self.limit = limit
        return f"{self.scope}:{app.id}", limit, self.cost(request, view)

    def server_default(self) -> int:
        settings = server_settings()
        return settings[self.default_setting] if settings.RATE_LIMITER_ENABLED else 0

    def allow_request(self, request: Any, view: Any) -> bool:
        counted = self._counted(request, view)
        if counted is None:
            return True
        try:
            self.decision = get_limiter().hit(counted[0], counted[1], APP_WINDOW, counted[2])
        except RateLimiterUnavailable:
            raise _unavailable(request) from None
        return self._allowed(request)

    async def aallow_request(self, request: Any, view: Any) -> bool:
        counted = self._counted(request, view)
        if counted is None:
            return True
        try:
            self.decision = await get_limiter().ahit(counted[0], counted[1], APP_WINDOW, counted[2])
        except RateLimiterUnavailable:
            raise _unavailable(request) from None
        return self._allowed(request)

    def _allowed(self, request: Any) -> bool:
        if self.decision.allowed:
            return True
        refusals.refused(
            self.refusal_limit,
            request.auth.id,
            _client(request),
            f"{self.limit} {self.what} per second of the app exceeded",
        )
        return False

    def wait(self) -> float | None:
        return float(self.decision.headers().get("Retry-After", 1)) if self.decision else None

    def refusal(self) -> errors.APIError:
        """The 429 the view raises when this throttle refuses."""
        return errors.rate_limited(
            f"Rate limit of {self.limit} {self.what} per second exceeded for this app",
            self.decision.headers(),
        )


class BackendEventsThrottle(AppRateThrottle):
    limit_field = "max_backend_events_per_second"
    default_setting = "RATE_LIMITER_APP_EVENTS_PER_SECOND"
    refusal_limit = "app_publish"
    scope = "app_backend_events"
    what = "backend events"
    methods = ("POST",)

    def cost(self, request: Any, view: Any) -> int:
        events = view.throttle_cost
        if events > self.limit:
            # It would be refused in every window; retrying cannot help, so this is not a 429.
            raise errors.limit_exceeded(
                f"{events} events in one request exceed the app's limit of {self.limit} backend events per second"
            )
        return events


class ReadRequestsThrottle(AppRateThrottle):
    limit_field = "max_read_requests_per_second"
    default_setting = "RATE_LIMITER_APP_READS_PER_SECOND"
    refusal_limit = "app_read"
    scope = "app_read_requests"
    what = "read requests"
    methods = ("GET",)


def _client(request: Any) -> str:
    """The refused request's client address as the per-IP limits name it."""
    meta = request._request.META
    return client_ip(
        meta.get("REMOTE_ADDR"),
        meta.get("HTTP_X_FORWARDED_FOR"),
        meta.get("HTTP_X_REAL_IP"),
        server_settings().RATE_LIMITER_TRUST_HOPS,
    )


def _unavailable(request: Any) -> errors.APIError:
    refusals.refused(
        "store_down", request.auth.id, _client(request), "counter store unavailable on a per-app limit"
    )
    return errors.service_unavailable("Rate limiter backend unavailable.")
