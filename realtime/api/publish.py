"""``POST /apps/{id}/events`` and ``/batch_events`` as async Django views.

Publishing is the API's hot path. A DRF view runs in a worker thread and reaches the engine on the
event loop and back: four thread switches per request (six with Django's request signals) that
cost more CPU than the publish itself; these views run on the loop from start to finish. They answer
exactly as the DRF views do: the same signature checks, validation order, limits and JSON error
envelope. A request with an idempotency key takes the blocking cache path in a worker thread, and
any other method goes to a DRF view (which authenticates, then answers 405).

These are the routes' Django views, for any Django deployment. Our server (``APIHandler``) serves
a POST to them without Django's request cycle (``publish_asgi``), through the same ``respond``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.renderers import JSONRenderer

from realtime.api import errors, idempotency
from realtime.api.authentication import authenticate_async
from realtime.api.bridge import on_loop
from realtime.api.limits import acheck_backend_events
from realtime.api.validation import publication
from realtime.api.views import SignedAPIView, json_body
from realtime.node import broadcast
from realtime.node.engine import get_engine

_RENDERER = JSONRenderer()
_OTHER_METHODS = SignedAPIView.as_view()
JSON = "application/json"
PublishView = Callable[[Any, Any], Awaitable[dict]]


def async_api_view(view: PublishView) -> Callable[..., Awaitable[HttpResponse]]:
    """POST runs ``view`` on the loop and renders its dict (or its error) as DRF would."""

    @csrf_exempt
    @functools.wraps(view)
    async def handler(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return await sync_to_async(_OTHER_METHODS)(request, **kwargs)
        status, body, headers = await respond(view, request)
        response = HttpResponse(body, status=status, content_type=JSON)
        for name, value in headers.items():
            response[name] = value
        return response

    handler.publish_view = view  # what ``publish_asgi`` serves on this route without Django
    return handler


async def respond(view: PublishView, request: Any) -> tuple[int, bytes, dict[str, str]]:
    """Authenticate ``request`` and run ``view``: (status, JSON body, headers), errors included.
    ``request`` is a Django request or ``publish_asgi``'s scope request; both carry ``META``,
    ``method``, ``path``, ``body`` and ``scope``, all the views read."""
    try:
        app = await authenticate_async(request)
        request.auth = app  # counted per app by the metrics middleware, as DRF does
        return 200, _RENDERER.render(await view(request, app)), {}
    except Exception as exc:  # noqa: BLE001 - every error becomes the envelope (5xx logged there)
        status, payload, headers = errors.envelope(exc)
        return status, _RENDERER.render(payload), headers


@async_api_view
async def events(request: Any, app) -> dict:
    pub = publication(app, json_body(request))
    await acheck_backend_events(app, 1)
    key = pub.idempotency_key or header_key(request)
    if key is None:
        return _events_result(await broadcast.publish(await get_engine(), app, pub))

    def publish() -> dict:
        return _events_result(on_loop(broadcast.publish, app, pub))

    # Not thread-sensitive: the idempotency cache is memory or Redis, never the database.
    return await sync_to_async(idempotent, thread_sensitive=False)(app, f"idempotency:{key}", publish)


def _events_result(info: dict | None) -> dict:
    return {"channels": info} if info else {"ok": True}


@async_api_view
async def batch_events(request: Any, app) -> dict:
    body = json_body(request)
    batch = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(batch, list):
        raise errors.invalid_input("Request must contain 'batch' (list)")
    limit = app.effective_max_event_batch_size
    if len(batch) > limit:
        raise errors.limit_exceeded(f"Batch size ({len(batch)}) exceeds limit ({limit})")
    # Validate every item before publishing any, so a bad item never half-applies a batch.
    pubs = [publication(app, item) for item in batch]
    await acheck_backend_events(app, len(pubs))  # max_backend_events_per_second counts events
    key = header_key(request)
    if key is None and not any(p.idempotency_key for p in pubs):
        return _batch_result(pubs, pubs, await _publish_all(await get_engine(), app, pubs))

    def publish() -> dict:
        fresh = [p for p in pubs if not p.idempotency_key or _claim_item(app, p.idempotency_key)]
        return _batch_result(pubs, fresh, on_loop(_publish_all, app, fresh))

    scoped = f"batch-idempotency:{key}" if key else None
    return await sync_to_async(idempotent, thread_sensitive=False)(app, scoped, publish)


async def _publish_all(engine, app, pubs):
    return [await broadcast.publish(engine, app, pub) for pub in pubs]


def _batch_result(pubs: list, published: list, results: list) -> dict:
    by_pub = dict(zip(map(id, published), results, strict=True))
    if not any(p.info or p.message_id for p in pubs):
        return {}
    return {"batch": [by_pub.get(id(p), {}).get(p.channels[0], {}) for p in pubs]}


def header_key(request: Any) -> str | None:
    key = request.META.get("HTTP_X_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not key or len(key.encode()) > 128:
        raise errors.invalid_input("X-Idempotency-Key must be 1 to 128 bytes")
    return key


def idempotent(app, key: str | None, run: Callable[[], dict]) -> dict:
    """Publish at most once per key: replay the stored response to retries (http-api.md §6).
    Blocking (the cache may be Redis): called in a worker thread."""
    enabled, ttl = idempotency.settings_for(app)
    if key is None or not enabled:
        return run()
    cache = idempotency.get_cache()
    scoped = f"app:{app.id}:{key}"
    try:
        existing = cache.claim(scoped, ttl)
        for _ in range(6):  # the first request may still be running: poll 6 x 50 ms
            if existing != idempotency.PROCESSING:
                break
            time.sleep(0.05)
            existing = cache.get(scoped)
    except idempotency.CacheUnavailable:
        raise errors.service_unavailable("Idempotency cache unavailable; nothing was published") from None
    if existing == idempotency.PROCESSING:
        raise errors.APIError(
            503, "backpressure", "A request with this idempotency key is in flight", {"Retry-After": "1"}
        )
    if existing is not None:
        return json.loads(existing)
    try:
        result = run()
    except BaseException:
        cache.release(scoped)  # a failed request never blocks a corrected retry
        raise
    cache.store(scoped, json.dumps(result), ttl)
    return result


def _claim_item(app, key: str) -> bool:
    """Batch items with an already-used key are skipped silently."""
    enabled, ttl = idempotency.settings_for(app)
    if not enabled:
        return True
    scoped = f"app:{app.id}:idempotency:{key}"
    try:
        claimed = idempotency.get_cache().claim(scoped, ttl) is None
    except idempotency.CacheUnavailable:
        raise errors.service_unavailable("Idempotency cache unavailable; nothing was published") from None
    if claimed:
        idempotency.get_cache().store(scoped, "1", ttl)
    return claimed
