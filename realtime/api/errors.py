"""HTTP API errors: one exception type with a stable ``code``, rendered as
``{"error": ..., "code": ..., "status": ...}`` by the DRF exception handler below (and by the async
publish views, through ``envelope``). A serializer's ``ValidationError`` is rendered from its first
error, whose code is the Pusher code (``VALIDATION_CODES`` gives its status)."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response

from realtime.cluster.base import AdapterUnavailable

log = logging.getLogger(__name__)


class APIError(exceptions.APIException):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status
        self.error_code = code
        self.message = message
        self.headers = headers or {}


def invalid_input(message: str) -> APIError:
    return APIError(400, "invalid_input", message)


def limit_exceeded(message: str) -> APIError:
    return APIError(400, "limit_exceeded", message)


def missing_channel_info() -> APIError:
    return APIError(
        400, "missing_channel_info", "Request must contain 'channels' (list) or 'channel' (string)"
    )


def auth_failed(message: str) -> APIError:
    return APIError(401, "auth_failed", message)


def forbidden(message: str) -> APIError:
    return APIError(403, "forbidden", message)


def app_not_found() -> APIError:
    return APIError(404, "app_not_found", "App not found")


def not_found(message: str) -> APIError:
    return APIError(404, "not_found", message)


def feature_disabled(message: str) -> APIError:
    """422: the feature (history, versioned messages, ...) is off globally or by app/channel policy."""
    return APIError(422, "feature_disabled", message)


def payload_too_large(message: str) -> APIError:
    return APIError(413, "payload_too_large", message)


def rate_limited(message: str, headers: dict[str, str]) -> APIError:
    """429 with ``Retry-After`` and the ``X-RateLimit-*`` headers of the limit that refused."""
    return APIError(429, "rate_limited", message, headers)


def service_unavailable(message: str) -> APIError:
    return APIError(503, "service_unavailable", message, {"Retry-After": "1"})


def body(status: int, code: str, message: str) -> dict:
    return {"error": message, "code": code, "status": status}


_DRF_CODES = {
    exceptions.ParseError: (400, "invalid_json"),
    exceptions.UnsupportedMediaType: (415, "unsupported_media_type"),
    exceptions.MethodNotAllowed: (405, "method_not_allowed"),
    exceptions.NotFound: (404, "not_found"),
    exceptions.Throttled: (429, "rate_limited"),
}


# A serializer error's code -> (status, Pusher code); any other code is a 400 invalid_input.
VALIDATION_CODES = {
    "invalid_input": (400, "invalid_input"),
    "limit_exceeded": (400, "limit_exceeded"),
    "missing_channel_info": (400, "missing_channel_info"),
    "payload_too_large": (413, "payload_too_large"),
    "not_an_object": (422, "invalid_input"),
}


def first_error(detail: Any) -> exceptions.ErrorDetail | str:
    """The first message of a ``ValidationError``'s detail (nested dicts and lists, in order)."""
    while isinstance(detail, dict | list):
        if not detail:
            return "Invalid input."
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return detail


def envelope(exc: Exception) -> tuple[int, dict, dict[str, str]]:
    """(status, body, headers) of any API error, expected or not; 5xx never leak details."""

    if isinstance(exc, AdapterUnavailable):
        exc = service_unavailable("The cluster backend is unavailable; nothing was published")
    if isinstance(exc, APIError):
        return exc.status_code, body(exc.status_code, exc.error_code, exc.message), exc.headers
    if isinstance(exc, exceptions.ValidationError):
        error = first_error(exc.detail)
        status, code = VALIDATION_CODES.get(getattr(error, "code", None), (400, "invalid_input"))
        return status, body(status, code, str(error)), {}
    for cls, (status, code) in _DRF_CODES.items():
        if isinstance(exc, cls):
            return status, body(status, code, str(exc.detail)), {}
    if isinstance(exc, exceptions.APIException):
        return exc.status_code, body(exc.status_code, "invalid_input", str(exc.detail)), {}
    log.exception("unhandled error in the HTTP API", exc_info=exc)
    return 500, body(500, "internal_error", "Internal server error"), {}


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's hook: every API error becomes the JSON envelope."""
    status, payload, headers = envelope(exc)
    return Response(payload, status=status, headers=headers)
