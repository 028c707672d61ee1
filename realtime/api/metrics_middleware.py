"""HTTP middleware for metrics: django-prometheus's request series, and the HTTP API series of
``realtime.node.metrics`` (calls and bytes per app). Under daphne all of it runs on the event loop
without thread hops; the WebSocket path never passes through Django middleware."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware
from django_prometheus import middleware as django_prometheus_middleware
from prometheus_client import Counter, Histogram

from realtime.node.metrics import STATS, PendingMetric

_API_PATH = re.compile(r"^/(?:apps/[^/]+/|users/)")


def _count_http(request: Any, response: Any) -> None:
    # DRF puts the authenticated App on the Django request (``request.auth``): only signed calls for
    # real apps are counted, so random app ids in URLs cannot grow the label set.
    app = getattr(request, "auth", None)
    app_id = getattr(app, "id", None)
    if app_id is None or not _API_PATH.match(request.path):
        return
    stats = STATS.app(str(app_id))
    stats.http_calls += 1
    with contextlib.suppress(ValueError):
        stats.http_in_bytes += int(request.META.get("CONTENT_LENGTH") or 0)
    if not getattr(response, "streaming", False):
        stats.http_out_bytes += len(response.content)


@sync_and_async_middleware
def http_api_metrics(get_response: Callable) -> Callable:
    """Counts signed HTTP API calls and their bytes per app. Under daphne it runs on the event loop
    (async), like everything else that touches ``STATS``."""
    if iscoroutinefunction(get_response):

        async def middleware(request: Any) -> Any:
            response = await get_response(request)
            _count_http(request, response)
            return response

    else:

        def middleware(request: Any) -> Any:
            response = get_response(request)
            _count_http(request, response)
            return response

    return middleware


# -- django-prometheus, without the thread hops ----------------------------------------------------
class PendingRequestMetrics:
    """django-prometheus's request metrics (the same series), each a ``PendingMetric``: a request's
    dozen updates are additions to plain numbers, handed to prometheus_client by
    ``realtime.node.metrics.flush``."""

    _instance: PendingRequestMetrics | None = None

    @classmethod
    def get_instance(cls) -> PendingRequestMetrics:
        if cls._instance is None:
            cls._instance = cls(django_prometheus_middleware.Metrics.get_instance())
        return cls._instance

    def __init__(self, stock: Any) -> None:
        for name, value in vars(stock).items():
            # Counters and histograms are all it has; anything else is kept as it is.
            setattr(self, name, PendingMetric(value) if isinstance(value, Counter | Histogram) else value)


class _InlineHooks:
    """django-prometheus's hooks only bump counters. Django's ``MiddlewareMixin`` runs each hook of an
    async request through ``sync_to_async`` (a thread hop, tens of microseconds each); these run
    them inline on the event loop instead. Sync (WSGI) requests behave as before."""

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self._inline_acall(request)
        return super().__call__(request)

    async def _inline_acall(self, request: Any) -> Any:
        response = self.process_request(request)
        response = response or await self.get_response(request)
        return self.process_response(request, response)


class PrometheusBeforeMiddleware(_InlineHooks, django_prometheus_middleware.PrometheusBeforeMiddleware):
    metrics_cls = PendingRequestMetrics


class PrometheusAfterMiddleware(_InlineHooks, django_prometheus_middleware.PrometheusAfterMiddleware):
    metrics_cls = PendingRequestMetrics

    async def process_view(self, request: Any, view_func: Any, *view_args: Any, **view_kwargs: Any) -> None:
        # Async, so Django's handler awaits it on the loop rather than hopping to a thread.
        super().process_view(request, view_func, *view_args, **view_kwargs)
