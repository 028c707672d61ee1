"""``POST /apps/{id}/events`` and ``/batch_events``: async DRF views (``AsyncSignedAPIView``).

Publishing is the API's hot path. A sync DRF view runs in a worker thread and reaches the engine on
the event loop and back: four thread switches per request (six with Django's request signals) that
cost more CPU than the publish itself; these views run on the loop from start to finish, through
the same authentication class, serializers (``EventSerializer``, ``BatchSerializer``), throttles
and JSON error envelope as every other API view. A request with an idempotency key takes the
blocking cache path in a worker thread, and any other method gets DRF's sync cycle (which
authenticates, then answers 405).

Django's request cycle reaches a view through ``events``/``batch_events`` (``as_view``); our server
(``APIHandler``) serves a POST without Django's request cycle (``realtime.server.fast_publish``), by calling the
same view class's ``respond``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from realtime.api import errors, idempotency
from realtime.api.bridge import on_loop
from realtime.api.serializers import BatchSerializer, EventSerializer
from realtime.api.views import AsyncSignedAPIView
from realtime.node import broadcast
from realtime.node.engine import get_engine


class EventsView(AsyncSignedAPIView):
    """``POST /apps/{id}/events``: one event, counted as one backend event."""

    serializer_class = EventSerializer

    async def publish(self, request: Any, app: Any, pub: broadcast.Publication) -> dict:
        key = pub.idempotency_key or header_key(request._request)
        if key is None:
            return _events_result(await broadcast.publish(await get_engine(), app, pub))

        def publish() -> dict:
            return _events_result(on_loop(broadcast.publish, app, pub))

        # Not thread-sensitive: the idempotency cache is memory or Redis, never the database.
        return await sync_to_async(idempotent, thread_sensitive=False)(app, f"idempotency:{key}", publish)


def _events_result(info: dict | None) -> dict:
    return {"channels": info} if info else {"ok": True}


class BatchEventsView(AsyncSignedAPIView):
    """``POST /apps/{id}/batch_events``: every event validated before any is published; the batch
    counts as ``len(batch)`` backend events."""

    serializer_class = BatchSerializer

    def events_in(self, pubs: list) -> int:
        return len(pubs)

    async def publish(self, request: Any, app: Any, pubs: list) -> dict:
        key = header_key(request._request)
        if key is None and not any(p.idempotency_key for p in pubs):
            return _batch_result(pubs, pubs, await _publish_all(await get_engine(), app, pubs))

        def publish() -> dict:
            fresh = [p for p in pubs if not p.idempotency_key or _claim_item(app, p.idempotency_key)]
            return _batch_result(pubs, fresh, on_loop(_publish_all, app, fresh))

        scoped = f"batch-idempotency:{key}" if key else None
        return await sync_to_async(idempotent, thread_sensitive=False)(app, scoped, publish)


# The routes' Django views (``urls.py``).
events = EventsView.as_view()
batch_events = BatchEventsView.as_view()


async def _publish_all(engine, app, pubs):
    return [await broadcast.publish(engine, app, pub) for pub in pubs]


def _batch_result(pubs: list, published: list, results: list) -> dict:
    by_pub = dict(zip(map(id, published), results, strict=True))
    if not any(p.info or p.message_id for p in pubs):
        return {}
    return {"batch": [by_pub.get(id(p), {}).get(p.channels[0], {}) for p in pubs]}


def header_key(request: Any) -> str | None:
    """``X-Idempotency-Key`` of the (Django or scope) request, if any."""
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
