"""The Pusher-compatible HTTP API (DRF views). Each view authenticates with the Pusher signature,
validates, then runs its engine work on the event loop through ``realtime.bridge.on_loop``."""

from __future__ import annotations

import json
import time

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime import broadcast, idempotency
from realtime.bridge import on_loop
from realtime.protocol import errors as protocol_errors
from realtime.protocol.channels import kind_of, validate_name
from realtime.ratelimit.http import check_backend_events, check_read_request

from . import errors
from .authentication import PusherSignatureAuthentication, read_body
from .validation import parse_info, parse_json, publication


class SignedAPIView(APIView):
    authentication_classes = [PusherSignatureAuthentication]
    permission_classes: list = []

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        request.user  # noqa: B018 - authenticate eagerly so a bad signature fails before parsing
        if request.method == "GET":
            check_read_request(self.app(request))  # the app's max_read_requests_per_second

    @staticmethod
    def app(request: Request):
        return request.auth

    @staticmethod
    def json_body(request: Request):
        django_request = request._request
        return parse_json(read_body(django_request), django_request.META.get("CONTENT_TYPE", ""))

    @staticmethod
    def channel_name(app, channel: str) -> str:
        reason = validate_name(channel, app.effective_max_channel_name_length, app.channel_namespaces)
        if reason:
            raise errors.invalid_input(reason)
        return channel


class EventsView(SignedAPIView):
    def post(self, request: Request, app_id: str) -> Response:
        app = self.app(request)
        pub = publication(app, self.json_body(request))
        check_backend_events(app, 1)
        key = pub.idempotency_key or _header_key(request)

        def run() -> dict:
            info = on_loop(broadcast.publish, app, pub)
            return {"channels": info} if info else {"ok": True}

        return Response(idempotent(app, f"idempotency:{key}" if key else None, run))


class BatchEventsView(SignedAPIView):
    def post(self, request: Request, app_id: str) -> Response:
        app = self.app(request)
        body = self.json_body(request)
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list):
            raise errors.invalid_input("Request must contain 'batch' (list)")
        limit = app.effective_max_event_batch_size
        if len(batch) > limit:
            raise errors.limit_exceeded(f"Batch size ({len(batch)}) exceeds limit ({limit})")
        # Validate every item before publishing any, so a bad item never half-applies a batch.
        pubs = [publication(app, item) for item in batch]
        check_backend_events(app, len(pubs))  # max_backend_events_per_second counts events, not requests
        key = _header_key(request)

        def run() -> dict:
            fresh = [p for p in pubs if not p.idempotency_key or _claim_item(app, p.idempotency_key)]
            results = dict(zip(map(id, fresh), on_loop(_publish_all, app, fresh), strict=True))
            if not any(p.info or p.message_id for p in pubs):
                return {}
            return {"batch": [results.get(id(p), {}).get(p.channels[0], {}) for p in pubs]}

        return Response(idempotent(app, f"batch-idempotency:{key}" if key else None, run))


async def _publish_all(engine, app, pubs):
    return [await broadcast.publish(engine, app, pub) for pub in pubs]


class ChannelsView(SignedAPIView):
    def get(self, request: Request, app_id: str) -> Response:
        app = self.app(request)
        prefix = request.query_params.get("filter_by_prefix", "")
        info = parse_info(request.query_params.get("info"))
        return Response({"channels": on_loop(_channels, app, prefix, info)})


async def _channels(engine, app, prefix: str, info: frozenset[str]):
    counts = await engine.adapter.channels(app.id)
    result = {}
    for name in sorted(counts):
        if prefix and not name.startswith(prefix):
            continue
        entry = {}
        if "user_count" in info:
            if not kind_of(name).presence:
                raise errors.invalid_input(
                    "user_count is only available for presence channels. Use filter_by_prefix=presence-"
                )
            entry["user_count"] = len(await engine.adapter.members(app.id, name))
        if "subscription_count" in info:
            entry["subscription_count"] = counts[name]
        result[name] = entry
    return result


class ChannelView(SignedAPIView):
    def get(self, request: Request, app_id: str, channel: str) -> Response:
        app = self.app(request)
        channel = self.channel_name(app, channel)
        info = frozenset(
            part.strip() for part in (request.query_params.get("info") or "").split(",") if part.strip()
        )
        if "user_count" in info and not kind_of(channel).presence:
            raise errors.invalid_input("user_count is only available for presence channels")
        return Response(on_loop(_channel, app, channel, info))


async def _channel(engine, app, channel: str, info: frozenset[str]):
    count = await engine.adapter.subscription_count(app.id, channel)
    result = {"occupied": count > 0}
    result.update(await broadcast.channel_info(engine, app, channel, info))
    if "cache" in info and kind_of(channel).cache:
        cached = engine.cache_get(app.id, channel)
        if cached is not None:
            result["cache"] = {"data": cached[0], "ttl": int(cached[1])}
    return result


class ChannelUsersView(SignedAPIView):
    def get(self, request: Request, app_id: str, channel: str) -> Response:
        app = self.app(request)
        channel = self.channel_name(app, channel)
        if not kind_of(channel).presence:
            raise errors.invalid_input("Only presence channels support this endpoint")
        members = on_loop(_members, app, channel)
        return Response({"users": [{"id": user_id} for user_id in members]})


async def _members(engine, app, channel: str):
    return list(await engine.adapter.members(app.id, channel))


class TerminateConnectionsView(SignedAPIView):
    code = protocol_errors.UNAUTHORIZED
    reason = protocol_errors.TERMINATED_REASON

    def post(self, request: Request, user_id: str, app_id: str | None = None) -> Response:
        app = self.app(request)
        self.json_body(request)  # any JSON; malformed bodies still get a clear 400
        on_loop(_terminate, app, user_id, self.code, self.reason)
        return Response({"ok": True})


class ForceReconnectView(TerminateConnectionsView):
    code = protocol_errors.RECONNECT_NOW
    reason = protocol_errors.FORCE_RECONNECT_REASON


async def _terminate(engine, app, user_id: str, code: int, reason: str) -> None:
    engine.adapter.terminate_user(app.id, user_id, code, reason)


def _header_key(request: Request) -> str | None:
    key = request._request.headers.get("X-Idempotency-Key")
    if key is None:
        return None
    if not key or len(key.encode()) > 128:
        raise errors.invalid_input("X-Idempotency-Key must be 1 to 128 bytes")
    return key


def idempotent(app, key: str | None, run) -> dict:
    """Publish at most once per key: replay the stored response to retries (http-api.md §6)."""
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
