"""The Pusher-compatible HTTP API's views (DRF). Each view authenticates with the Pusher signature
(``PusherSignatureAuthentication``), counts the app's per-app limits (``throttles``), validates, then
runs its engine work on the event loop.

``SignedAPIView`` is the sync base (reads and commands, in a worker thread, engine work through
``realtime.api.bridge.on_loop``). ``AsyncSignedAPIView`` is the base of the publish views, which answer
a POST on the event loop from start to finish: ``respond`` runs the same authentication classes,
serializer and throttles, then the view's ``publish``, and renders the JSON answer or the error
envelope. Django's request cycle reaches ``respond`` through ``dispatch``; our server's fast
transport (``realtime.server.fast_publish``) calls it directly on a request built from the ASGI scope.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.api import errors
from realtime.api.authentication import PusherSignatureAuthentication, read_body
from realtime.api.bridge import on_loop
from realtime.api.serializers import parse_info
from realtime.api.throttles import BackendEventsThrottle, ReadRequestsThrottle
from realtime.api.validation import parse_json
from realtime.node import broadcast
from realtime.protocol import errors as protocol_errors
from realtime.protocol.channels import kind_of, validate_name

JSON = "application/json"
_RENDERER = JSONRenderer()


def json_body(request: HttpRequest) -> Any:
    """The request's JSON body (415 unless the Content-Type says JSON, 413 past the size limit)."""
    return parse_json(read_body(request), request.META.get("CONTENT_TYPE", ""))


class SignedAPIView(APIView):
    authentication_classes = [PusherSignatureAuthentication]
    permission_classes: list = []
    throttle_classes: list = [ReadRequestsThrottle]
    throttle_cost = 1  # what this request counts against a throttle that counts events

    def get_throttles(self) -> list:
        """The throttles that count this request's method (a throttle class lists them in ``methods``)."""
        method = self.request.method
        return [
            throttle()
            for throttle in self.throttle_classes
            if method in getattr(throttle, "methods", (method,))
        ]

    def check_throttles(self, request: Request) -> None:
        """The first throttle that refuses answers (its own 429, see ``throttled``)."""
        for throttle in self.get_throttles():
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait(), throttle)

    def throttled(self, request: Request, wait: float | None, throttle: Any = None) -> None:
        refusal = getattr(throttle, "refusal", None)
        if refusal is not None:
            raise refusal()
        super().throttled(request, wait)

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


class AsyncSignedAPIView(SignedAPIView):
    """A POST view that runs on the event loop. Subclasses set ``serializer_class`` (its
    ``validated_data`` goes to ``publish``) and write ``publish``; ``throttle_cost`` of a request is
    ``events_in(validated_data)``. Any other method takes DRF's sync cycle in a worker thread
    (authenticate, then 405)."""

    serializer_class: type
    throttle_classes: list = [ReadRequestsThrottle, BackendEventsThrottle]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method == "POST":
            return self.post(request, *args, **kwargs)
        return sync_to_async(super().dispatch)(request, *args, **kwargs)

    async def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        status, body, headers = await self.respond(request)
        response = HttpResponse(body, status=status, content_type=JSON)
        for name, value in headers.items():
            response[name] = value
        return response

    async def respond(self, request: HttpRequest) -> tuple[int, bytes, dict[str, str]]:
        """Answer a POST: (status, JSON body, headers), errors included. In order: signature,
        body, serializer, throttles, then ``publish``."""
        drf_request = Request(request, authenticators=self.get_authenticators())
        self.request = drf_request
        try:
            await self.aperform_authentication(drf_request)
            app = drf_request.auth
            serializer = self.get_serializer(data=json_body(request), context={"app": app})
            serializer.is_valid(raise_exception=True)
            validated = serializer.validated_data
            self.throttle_cost = self.events_in(validated)
            await self.acheck_throttles(drf_request)
            return 200, _RENDERER.render(await self.publish(drf_request, app, validated)), {}
        except Exception as exc:  # noqa: BLE001 - every error becomes the envelope (5xx logged there)
            status, payload, headers = errors.envelope(exc)
            return status, _RENDERER.render(payload), headers
        finally:
            # DRF's Request refers to itself through ``parser_context``; no parser reads it here.
            # Without the cycle, reference counting frees each publish's request graph (9 objects)
            # at once instead of leaving it to the cyclic GC.
            drf_request.parser_context.pop("request", None)

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        return self.serializer_class(*args, **kwargs)

    def events_in(self, validated: Any) -> int:
        return 1

    async def publish(self, request: Request, app: Any, validated: Any) -> dict:
        raise NotImplementedError

    async def aperform_authentication(self, request: Request) -> None:
        """DRF's ``Request._authenticate`` on the loop: an authenticator's ``aauthenticate`` when it
        has one (``PusherSignatureAuthentication`` does), else its ``authenticate`` in a thread."""
        for authenticator in request.authenticators:
            aauthenticate = getattr(authenticator, "aauthenticate", None)
            try:
                if aauthenticate is not None:
                    user_auth = await aauthenticate(request)
                else:
                    user_auth = await sync_to_async(authenticator.authenticate)(request)
            except exceptions.APIException:
                request._not_authenticated()
                raise
            if user_auth is not None:
                request._authenticator = authenticator
                request.user, request.auth = user_auth
                return
        request._not_authenticated()

    async def acheck_throttles(self, request: Request) -> None:
        """``check_throttles`` on the loop: a throttle's ``aallow_request`` when it has one."""
        for throttle in self.get_throttles():
            aallow = getattr(throttle, "aallow_request", None)
            if aallow is not None:
                allowed = await aallow(request, self)
            else:
                allowed = await sync_to_async(throttle.allow_request)(request, self)
            if not allowed:
                self.throttled(request, throttle.wait(), throttle)


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
