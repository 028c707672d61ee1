"""Durable history over HTTP (http-api.md §7): page, state, reset, purge.

Checks run in the documented order: signature, channel name (§13.2), JSON body (POST), history
policy (422 ``feature_disabled``), then the handler's own validation (400 ``invalid_input``). These
views are not on the socket path, so they read the database directly.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from rest_framework.request import Request
from rest_framework.response import Response

from history import policy
from history.query import HistoryQuery, InvalidQuery, parse_int
from history.sequencer import get_sequencer
from history.signals import stream_reset
from history.store import get_store
from realtime.api import errors
from realtime.api.views import SignedAPIView

PURGE_MODES = ("all", "before_serial", "before_time_ms")


class HistoryAPIView(SignedAPIView):
    def history_channel(self, request: Request, channel: str) -> tuple[Any, str, policy.HistoryPolicy]:
        app = self.app(request)
        channel = self.channel_name(app, channel)
        return app, channel, policy.policy_for(app, channel)

    @staticmethod
    def require(channel: str, rules: policy.HistoryPolicy) -> None:
        if not rules.enabled:
            raise errors.feature_disabled(f"Durable history is disabled by policy for channel '{channel}'")


class HistoryView(HistoryAPIView):
    """GET .../channels/{channel}/history"""

    def get(self, request: Request, app_id: str, channel: str) -> Response:
        app, channel, rules = self.history_channel(request, channel)
        self.require(channel, rules)
        params = dict(request.query_params.items())
        try:
            query = HistoryQuery.parse(
                params,
                app_id=app.id,
                channel=channel,
                max_page_size=rules.max_page_size,
                attach_serial=parse_int(params.get("attach_serial"), "attach_serial"),
                surface="http",
            )
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


def _confirmed(body: Any, channel: str, operation: str) -> tuple[str, str | None]:
    """Validate the confirmation fields shared by reset and purge; returns (reason, requested_by)."""
    if not isinstance(body, dict):
        raise errors.invalid_input("Request body must be a JSON object")
    if body.get("confirm_channel") != channel:
        raise errors.invalid_input("confirm_channel must equal the channel in the path")
    if body.get("confirm_operation") != operation:
        raise errors.invalid_input(f"confirm_operation must be '{operation}'")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise errors.invalid_input("reason must be a non-blank string")
    requested_by = body.get("requested_by")
    if requested_by is not None and not isinstance(requested_by, str):
        raise errors.invalid_input("requested_by must be a string")
    return reason, requested_by


class HistoryResetView(HistoryAPIView):
    """POST .../channels/{channel}/history/reset: new stream id, retained history dropped."""

    def post(self, request: Request, app_id: str, channel: str) -> Response:
        app, channel, rules = self.history_channel(request, channel)
        body = self.json_body(request)
        self.require(channel, rules)
        reason, requested_by = _confirmed(body, channel, "reset")
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
        reason, requested_by = _confirmed(body, channel, "purge")
        mode = body.get("mode")
        if mode not in PURGE_MODES:
            raise errors.invalid_input("mode must be all, before_serial or before_time_ms")
        before_serial = before_time = None
        try:
            if mode == "before_serial":
                before_serial = parse_int(body.get("before_serial"), "before_serial")
                if before_serial is None:
                    raise InvalidQuery("before_serial is required with mode before_serial")
            elif mode == "before_time_ms":
                before_time = parse_int(body.get("before_time_ms"), "before_time_ms")
                if before_time is None:
                    raise InvalidQuery("before_time_ms is required with mode before_time_ms")
        except InvalidQuery as exc:
            raise errors.invalid_input(str(exc)) from None
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
