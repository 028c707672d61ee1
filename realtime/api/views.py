"""The Pusher-compatible HTTP API's reads and commands (DRF views). Each view authenticates with the
Pusher signature, validates, then runs its engine work on the event loop through
``realtime.api.bridge.on_loop``. Publishing has async views of its own (``publish.py``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.api import errors
from realtime.api.authentication import PusherSignatureAuthentication, read_body
from realtime.api.bridge import on_loop
from realtime.api.limits import check_read_request
from realtime.api.validation import parse_info, parse_json
from realtime.node import broadcast
from realtime.protocol import errors as protocol_errors
from realtime.protocol.channels import kind_of, validate_name


def json_body(request: HttpRequest) -> Any:
    """The request's JSON body (415 unless the Content-Type says JSON, 413 past the size limit)."""
    return parse_json(read_body(request), request.META.get("CONTENT_TYPE", ""))


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
        return json_body(request._request)

    @staticmethod
    def channel_name(app, channel: str) -> str:
        reason = validate_name(channel, app.effective_max_channel_name_length, app.channel_namespaces)
        if reason:
            raise errors.invalid_input(reason)
        return channel


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
