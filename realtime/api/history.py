"""Durable history over HTTP (http-api.md §7): page, state, reset, purge.

Checks run in the documented order: signature, channel name (§13.2), JSON body (POST), history
policy (422 ``feature_disabled``), then the handler's own validation (400 ``invalid_input``: the
serializers of ``realtime.api.serializers``). These views are not on the socket path, so they read
the database directly.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from rest_framework.request import Request
from rest_framework.response import Response

from history import policy
from history.query import InvalidQuery
from history.sequencer import get_sequencer
from history.signals import stream_reset
from history.store import get_store
from realtime.api import errors
from realtime.api.serializers import (
    ConfirmationSerializer,
    HistoryQuerySerializer,
    PurgeSerializer,
)
from realtime.api.views import SignedAPIView


class HistoryAPIView(SignedAPIView):
    def history_channel(self, request: Request, channel: str) -> tuple[Any, str, policy.HistoryPolicy]:
        app = self.app(request)
        channel = self.channel_name(app, channel)
        return app, channel, policy.policy_for(app, channel)

    @staticmethod
    def require(channel: str, rules: policy.HistoryPolicy) -> None:
        if not rules.enabled:
            raise errors.feature_disabled(f"Durable history is disabled by policy for channel '{channel}'")

    @staticmethod
    def validated(serializer_class: type, data: Any, **context: Any) -> Any:
        serializer = serializer_class(data=data, context=context)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class HistoryView(HistoryAPIView):
    """GET .../channels/{channel}/history"""

    def get(self, request: Request, app_id: str, channel: str) -> Response:
        app, channel, rules = self.history_channel(request, channel)
        self.require(channel, rules)
        params = dict(request.query_params.items())
        query = self.validated(HistoryQuerySerializer, params, app=app, channel=channel, rules=rules)
        try:
            page = get_store().page(query)
        except InvalidQuery as exc:
            raise errors.invalid_input(str(exc)) from None
        return Response(page.to_dict())


class HistoryStateView(HistoryAPIView):
    """GET .../channels/{channel}/history/state"""

    def get(self, request: Request, app_id: str, channel: str) -> Response:
        app, channel, rules = self.history_channel(request, channel)
        self.require(channel, rules)
        return Response({"channel": channel, "stream": get_store().state(app.id, channel)})


class HistoryResetView(HistoryAPIView):
    """POST .../channels/{channel}/history/reset: new stream id, retained history dropped."""

    def post(self, request: Request, app_id: str, channel: str) -> Response:
        app, channel, rules = self.history_channel(request, channel)
        body = self.json_body(request)
        self.require(channel, rules)
        confirmed = self.validated(ConfirmationSerializer, body, channel=channel, operation="reset")
        reason, requested_by = confirmed["reason"], confirmed["requested_by"]
        # The sequencer switches first, so every publish from now on is on the new stream; rows
        # committed on it before the store reset below are kept.
        new_stream_id = async_to_sync(get_sequencer().reset)(app.id, channel)
        store = get_store()
        result = store.reset(app.id, channel, new_stream_id)
        stream_reset.send(
            sender=HistoryResetView,
            app_id=app.id,
            channel=channel,
            previous_stream_id=result.previous_stream_id,
            new_stream_id=result.new_stream_id,
        )
        return Response(
            {
                "ok": True,
                "operation": "reset",
                "channel": channel,
                "reason": reason,
                "requested_by": requested_by,
                "previous_stream_id": result.previous_stream_id,
                "new_stream_id": result.new_stream_id,
                "purged_messages": result.purged_messages,
                "purged_bytes": result.purged_bytes,
                "stream": store.state(app.id, channel),
            }
        )


class HistoryPurgeView(HistoryAPIView):
    """POST .../channels/{channel}/history/purge: rows dropped, stream id and serials kept."""

    def post(self, request: Request, app_id: str, channel: str) -> Response:
        app, channel, rules = self.history_channel(request, channel)
        body = self.json_body(request)
        self.require(channel, rules)
        purge = self.validated(PurgeSerializer, body, channel=channel, operation="purge")
        reason, requested_by, mode = purge["reason"], purge["requested_by"], purge["mode"]
        before_serial, before_time = purge["before_serial"], purge["before_time_ms"]
        store = get_store()
        result = store.purge(app.id, channel, before_serial=before_serial, before_time_ms=before_time)
        return Response(
            {
                "ok": True,
                "operation": "purge",
                "channel": channel,
                "mode": mode,
                "before_serial": before_serial,
                "before_time_ms": before_time,
                "reason": reason,
                "requested_by": requested_by,
                "purged_messages": result.purged_messages,
                "purged_bytes": result.purged_bytes,
                "stream": store.state(app.id, channel),
            }
        )
