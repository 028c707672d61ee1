"""Pusher request signing ("auth_version 1.0"): a DRF authentication class, with an async variant
for the async publish views.

The string to sign uses the path as it arrived on the wire (``scope["raw_path"]``): the Python SDK
percent-encodes channel names and signs the encoded form, the Node SDK signs raw ``:``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from rest_framework.authentication import BaseAuthentication

from apps_admin.managers import get_app_manager
from realtime.api import errors
from realtime.conf import server_settings
from realtime.protocol.signatures import md5_hex, sign_api_request, verify_hex

EMPTY_MD5 = md5_hex(b"")


class SignedApp:
    """The authenticated principal of an API request: the app whose secret signed it."""

    is_authenticated = True

    def __init__(self, app) -> None:
        self.app = app


class PusherSignatureAuthentication(BaseAuthentication):
    """DRF's ``authenticate`` for the sync views (the app from the app manager, blocking), and
    ``aauthenticate`` for the async publish views (on the event loop: the app comes from the
    in-process cache, a miss is fetched in a worker thread). Both run ``verify_signature``."""

    def authenticate_header(self, request) -> str:
        return 'Pusher realm="api"'

    def authenticate(self, request):
        django_request = request._request
        params = signed_params(django_request)
        app = verify_signature(
            django_request, get_app_manager().load_by_key(params.get("auth_key", "")), params
        )
        return SignedApp(app), app

    async def aauthenticate(self, request):
        django_request = request._request
        params = signed_params(django_request)
        app = verify_signature(
            django_request, await get_app_manager().aget_by_key(params.get("auth_key", "")), params
        )
        return SignedApp(app), app


def signed_params(request) -> dict[str, str]:
    """The query's auth parameters, names lower-cased."""
    query = request.META.get("QUERY_STRING", "")
    if not query:
        raise errors.invalid_input("Missing authentication query parameters")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key.lower()] = value
    if not params:
        raise errors.invalid_input("Invalid authentication query parameters")
    return params


def verify_signature(request, app, params: dict[str, str]) -> Any:
    """Check that ``app`` (looked up by ``auth_key``) signed this request; returns the app."""
    if app is None:
        raise errors.app_not_found()
    path = _raw_path(request)
    segments = path.strip("/").split("/")
    if len(segments) >= 2 and segments[0] == "apps" and segments[1] != app.id:
        raise errors.auth_failed("Authenticated app does not match route app_id")
    try:
        timestamp = int(params.get("auth_timestamp", ""))
    except ValueError:
        raise errors.auth_failed("auth_timestamp must be an integer") from None
    if abs(int(time.time()) - timestamp) > server_settings().HTTP_API_TIMESTAMP_SKEW:
        raise errors.auth_failed("Timestamp expired or too far in the future")
    body_md5 = params.get("body_md5")
    method = request.method.upper()
    if method == "POST":
        if not body_md5 or not verify_hex(md5_hex(read_body(request)), body_md5):
            raise errors.auth_failed("body_md5 does not match the request body")
    elif body_md5 is not None and body_md5 != EMPTY_MD5:
        raise errors.auth_failed("body_md5 is only allowed on requests with a body")
    expected = sign_api_request(app.secret, method, path, params)
    if not verify_hex(expected, params.get("auth_signature")) and not _previous_secret_matches(
        app, method, path, params
    ):
        raise errors.auth_failed("Invalid API signature")
    # The per-IP budget of failed requests (``realtime.api.limits``) does not count this one.
    request.signed_app_id = app.id
    if not app.enabled:
        raise errors.forbidden("App is disabled")
    return app


def _previous_secret_matches(app, method: str, path: str, params: dict[str, str]) -> bool:
    """During a secret rotation the previous secret stays valid until its expiry."""
    expires = getattr(app, "previous_secret_expires_at", None)
    if not app.previous_secret or expires is None:
        return False
    from django.utils import timezone

    if expires < timezone.now():
        return False
    return verify_hex(
        sign_api_request(app.previous_secret, method, path, params), params.get("auth_signature")
    )


def _raw_path(request) -> str:
    scope = getattr(request, "scope", None)
    raw = scope.get("raw_path") if scope else None
    path = raw.decode("latin-1") if raw else request.path
    path = path.split("?", 1)[0]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def read_body(request) -> bytes:
    """The raw body, refused with 413 past the configured limit."""
    limit = server_settings().HTTP_API_REQUEST_LIMIT_IN_MB * 1024 * 1024
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise errors.payload_too_large(f"Request body is larger than {limit // (1024 * 1024)} MiB")
    body = request.body
    if len(body) > limit:
        raise errors.payload_too_large(f"Request body is larger than {limit // (1024 * 1024)} MiB")
    return body
