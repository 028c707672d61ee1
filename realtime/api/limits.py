"""Rate limits of the HTTP API.

* Per client IP, a tight budget of requests that fail the signature check (unsigned, bad or
  expired signature, unknown key, unknown route) on every ``/apps/...`` route and the SDK's
  ``/users/...`` alias: a Django middleware, so routes added later are covered without opting in.
  Requests a backend signs correctly never count against it (they are limited per app, below).
  Once an address has used its budget (``RATE_LIMITER_API_MAX_REQUESTS`` per
  ``RATE_LIMITER_API_WINDOW_SECONDS``, default 20 per 60 s) this node refuses its requests before
  looking at their signature until the window ends: ``429`` with upstream's own JSON body (not the
  error envelope) and ``Retry-After``. The lockout is held in process (a dictionary lookup per
  request, no round trip); the failures are counted in the shared store, so in a cluster each node
  locks the address out at its first failure past the shared budget.
* Per app: the app's ``max_backend_events_per_second`` (publish routes, counted per event) or
  ``max_read_requests_per_second`` (GET routes), else the server's defaults
  (``RATE_LIMITER_APP_EVENTS_PER_SECOND``, ``RATE_LIMITER_APP_READS_PER_SECOND``):
  ``429 rate_limited`` in the error envelope. These are DRF throttles on the API's views
  (``realtime.api.throttles``).

A counter store that does not answer fails closed with ``503 service_unavailable`` and
``Retry-After: 1`` (upstream answers 500; in a cluster the store is the same Redis as the adapter, and
a publish while Redis is away must read as "try again", never as a server fault or a success).
Every refusal is logged and counted (``realtime.ratelimit.refusals``).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

from realtime.conf import server_settings
from realtime.ratelimit import Limit, get_limiter, refusals
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


def app_id_in(path: str) -> str | None:
    """The app id of an ``/apps/{id}/...`` path (for the refusal's log line and count)."""
    if path.startswith("/apps/"):
        app_id = path[6:].split("/", 1)[0]
        return app_id or None
    return None


def signed_app_id(request: HttpRequest) -> str | None:
    """The id of the app whose signature this request carried, once the signature checked out
    (``realtime.api.authentication.verify_signature`` marks the request); else ``None``."""
    return getattr(request, "signed_app_id", None)


class Lockouts:
    """Addresses refused until a time, in this process: ``max_keys`` at most (expired ones are
    dropped first, then the oldest)."""

    def __init__(self, max_keys: int = 100_000, clock: Any = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._until: dict[str, tuple[float, int]] = {}  # client -> (until, limit)

    def refusal(self, client: str) -> Decision | None:
        """The refusal of a locked-out client, else ``None``."""
        entry = self._until.get(client)
        if entry is None:
            return None
        left = entry[0] - self.clock()
        if left <= 0:
            self._until.pop(client, None)
            return None
        return Decision(allowed=False, remaining=0, reset_seconds=max(1, math.ceil(left)), limit=entry[1])

    def lock(self, client: str, decision: Decision) -> None:
        now = self.clock()
        if client not in self._until and len(self._until) >= self.max_keys:
            expired = [key for key, (until, _) in self._until.items() if until <= now]
            for key in expired or list(self._until)[: self.max_keys // 10 or 1]:
                self._until.pop(key, None)
        self._until[client] = (now + decision.reset_seconds, decision.limit)

    def __len__(self) -> int:
        return len(self._until)


LOCKOUTS = Lockouts()


class APIRateLimitMiddleware:
    """Per-IP budget of API requests that fail the signature check. Removed from the chain when
    ``RATE_LIMITER_ENABLED`` is off.

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
        self.lockouts = LOCKOUTS  # one per process: the publish fast path has its own chain
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        if not request.path_info.startswith(self.PREFIXES):
            return self.get_response(request)
        client = self._client(request)
        locked = self._locked(request, client)
        if locked is not None:
            return locked
        response = self.get_response(request)
        if signed_app_id(request) is not None:
            return response
        try:
            decision = get_limiter().hit(self._key(client), self.limit.max_requests, self.limit.window)
        except RateLimiterUnavailable:
            return self._store_down(request, client)
        return self._counted(request, response, client, decision)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(self.PREFIXES):
            return await self.get_response(request)
        client = self._client(request)
        locked = self._locked(request, client)
        if locked is not None:
            return locked
        response = await self.get_response(request)
        if signed_app_id(request) is not None:
            return response
        try:
            decision = await get_limiter().ahit(self._key(client), self.limit.max_requests, self.limit.window)
        except RateLimiterUnavailable:
            return self._store_down(request, client)
        return self._counted(request, response, client, decision)

    def _locked(self, request: HttpRequest, client: str) -> HttpResponse | None:
        """The 429 of an address that used its budget in this window, before any other work."""
        decision = self.lockouts.refusal(client)
        if decision is None:
            return None
        refusals.refused("auth_failures", app_id_in(request.path_info), client)
        return too_many_response(decision)

    def _counted(
        self, request: HttpRequest, response: HttpResponse, client: str, decision: Decision
    ) -> HttpResponse:
        """A failed request's own answer with the budget's headers. The failure that uses the
        budget up locks the address out for the rest of the window; one past it (another node
        used it up, or concurrent failures) is refused itself."""
        if decision.remaining == 0:
            self.lockouts.lock(client, decision)
        if not decision.allowed:
            refusals.refused("auth_failures", app_id_in(request.path_info), client)
            return too_many_response(decision)
        response = _with_headers(response, decision)
        if decision.remaining == 0:
            response["Retry-After"] = str(decision.reset_seconds)
        return response

    def _store_down(self, request: HttpRequest, client: str) -> HttpResponse:
        refusals.refused(
            "store_down",
            app_id_in(request.path_info),
            client,
            "counter store unavailable counting a failed API request",
        )
        return backend_down_response()

    def _client(self, request: HttpRequest) -> str:
        meta = request.META
        return self.limit.client(
            meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), meta.get("HTTP_X_REAL_IP")
        )

    def _key(self, client: str) -> str:
        return f"{self.limit.name}:{client}"


def _with_headers(response: HttpResponse, decision: Decision) -> HttpResponse:
    for name, value in decision.headers().items():
        response.setdefault(name, value)
    return response
