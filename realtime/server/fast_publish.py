"""Publishes served straight from the ASGI scope, without Django's request cycle.

``POST /apps/{id}/events`` and ``/batch_events`` are the API's hot path. Through Django's handler a
publish builds an ``HttpRequest`` (a META entry per header), resolves the URL, enters a
thread-sensitive context, then builds, renders and writes an ``HttpResponse``: together more CPU
than the publish itself (py-spy). Here the API's middleware (the same classes, loaded by Django's
loader, so the per-IP limit, the django-prometheus series and the per-app byte counts are those of
every other API call) and the route's own DRF view class (``AsyncSignedAPIView.respond``: its
authentication, serializer, throttles and publish) run on a request object that holds what they
read and no more. This module is only a transport: it checks, validates and counts nothing itself.
"""

from __future__ import annotations

import http
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest
from django.urls import Resolver404, resolve
from django.utils.log import log_response

from realtime.api import errors
from realtime.api.views import AsyncSignedAPIView
from realtime.conf import server_settings

# The publish routes of ``urls.py``; the view's name comes from the URLconf itself.
ROUTE = re.compile(r"^/apps/[^/]+/(batch_events|events)/?$")


class ScopeRequest(HttpRequest):
    """What the publish views and the API middleware read from a request, taken from the scope.

    An ``HttpRequest`` (DRF's ``Request`` wraps only those) whose ``__init__`` builds none of the
    query, cookie and upload state the publish views never read. ``META`` holds the query string,
    the client address and the headers as Django names them (``HTTP_X_FORWARDED_FOR``,
    ``CONTENT_LENGTH`` ...); the middleware may add attributes.
    """

    def __init__(self, scope: dict, body: bytes, resolver_match: Any) -> None:
        self.scope = scope
        self.method = scope["method"]
        self.path = self.path_info = scope["path"]
        self._body = body
        self.resolver_match = resolver_match
        self.auth = None
        client = scope.get("client")
        server = scope.get("server") or ("unknown", "0")
        meta = {
            "REQUEST_METHOD": self.method,
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
            "REMOTE_ADDR": client[0] if client else "",
            "SERVER_NAME": server[0],  # get_host()'s answer without a Host header, as in Django
            "SERVER_PORT": str(server[1]),
        }
        for raw_name, raw_value in scope.get("headers", ()):
            name = meta_key(raw_name.decode("latin-1"))
            value = raw_value.decode("latin-1")
            meta[name] = f"{meta[name]},{value}" if name in meta else value  # as Django joins repeats
        self.META = meta
        self.headers = _Headers(meta)

    def is_secure(self) -> bool:
        """Django's rule: ``SECURE_PROXY_SSL_HEADER`` when set and present, else the scope's scheme."""
        secure = self.__dict__.get("_secure")
        if secure is None:
            secure = self._secure = _is_secure(self.scope, self.META)
        return secure


def meta_key(header: str) -> str:
    """Django's ``META`` name for an HTTP header (``X-Forwarded-For`` -> ``HTTP_X_FORWARDED_FOR``)."""
    key = header.upper().replace("-", "_")
    return key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else "HTTP_" + key


def _is_secure(scope: dict, meta: dict[str, str]) -> bool:
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        header, secure_value = proxy
        value = meta.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


class _Headers:
    """Case-insensitive header reads over ``META`` (what ``request.headers.get`` gives in Django)."""

    __slots__ = ("meta",)

    def __init__(self, meta: dict[str, str]) -> None:
        self.meta = meta

    def get(self, name: str, default: Any = None) -> Any:
        return self.meta.get(meta_key(name), default)


class JSONAnswer:
    """The response the middleware sees: status, body, headers (an ``HttpResponse``'s surface)."""

    charset = "utf-8"
    streaming = False

    def __init__(self, status: int, content: bytes, headers: dict[str, str]) -> None:
        self.status_code = status
        self.content = content
        self.headers = dict(headers)

    @property
    def reason_phrase(self) -> str:
        return http.HTTPStatus(self.status_code).phrase

    def __setitem__(self, name: str, value: str) -> None:
        self.headers[name] = value

    def setdefault(self, name: str, value: str) -> None:
        self.headers.setdefault(name, value)

    def items(self):
        return [("Content-Type", "application/json"), *self.headers.items()]


class _Route:
    """The part of Django's ``ResolverMatch`` the metrics read, and the route's view class,
    resolved once per route."""

    __slots__ = ("view_name", "func", "view_class", "initkwargs")

    def __init__(self, match: Any) -> None:
        self.view_name = match.view_name
        self.func = match.func
        self.view_class = match.func.view_class
        self.initkwargs = match.func.view_initkwargs


class PublishServer(BaseHandler):
    """The API middleware chain around the publish views, fed by ``ScopeRequest``s. Built by
    ``APIHandler`` while ``settings.MIDDLEWARE`` lists only the API's middleware."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, _Route | None] = {}
        self.load_middleware(is_async=True)

    def route(self, path: str) -> _Route | None:
        """The publish route ``path`` resolves to, if ``path`` is one (resolved once per kind)."""
        found = ROUTE.match(path)
        if found is None:
            return None
        kind = found.group(1)
        if kind not in self.routes:
            self.routes[kind] = _resolve(path)
        return self.routes[kind]

    async def serve(
        self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any, route: _Route
    ) -> None:
        max_body = server_settings().HTTP_API_REQUEST_LIMIT_IN_MB << 20
        body = await _read_body(receive, max_body)
        if body is None:
            return  # the client went away before its request was complete
        if body is _TOO_LARGE:
            error = errors.payload_too_large(f"Request body is larger than {max_body >> 20} MiB")
            status, payload, _ = errors.envelope(error)
            content = _json(payload)
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})
            return
        request = ScopeRequest(scope, body, route)
        response = await self._middleware_chain(request)
        if response.status_code >= 400:
            # Django's line for a failed request. Without the request object: log handlers that
            # format one (the admins' mail) expect a full HttpRequest.
            log_response("%s: %s", response.reason_phrase, request.path, response=response)
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.items()
            if name.lower() != "content-length"
        ]
        headers.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.content})

    async def _get_response_async(self, request: ScopeRequest) -> JSONAnswer:
        """Django's innermost step for a resolved route: view middleware, then the view.

        First ``ALLOWED_HOSTS``, which Django checks in ``CommonMiddleware`` (not an API
        middleware): a Host it does not allow gets 400 and Django's security log line (Django's
        own error view needs a full request, so the answer is the API's error envelope)."""
        if "*" not in settings.ALLOWED_HOSTS:
            try:
                request.get_host()
            except DisallowedHost as exc:
                logging.getLogger("django.security.DisallowedHost").error(str(exc))
                status, payload, headers = errors.envelope(errors.invalid_input(str(exc)))
                return JSONAnswer(status, _json(payload), headers)
        route = request.resolver_match
        for hook in self._view_middleware:
            answer = hook(request, route.func, (), {})
            if hasattr(answer, "__await__"):
                answer = await answer
            if answer is not None:
                return answer
        view = route.view_class(**route.initkwargs)
        view.setup(request)
        return JSONAnswer(*await view.respond(request))


def _resolve(path: str) -> _Route | None:
    """The URLconf's match for a publish path; None when it routes the path elsewhere (a project
    that mounts other views there keeps them: the request then goes through Django)."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    if not (isinstance(view_class, type) and issubclass(view_class, AsyncSignedAPIView)):
        return None
    return _Route(match)


_TOO_LARGE = b"<too large>"  # the sentinel ``_read_body`` returns past the limit (compared by identity)


async def _read_body(receive: Callable[[], Awaitable[dict]], max_body: int) -> bytes | None:
    """The request body, ``None`` if the client went away, ``_TOO_LARGE`` as soon as more than
    ``max_body`` bytes arrived (what was read is dropped; the rest is never asked for)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return _TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
