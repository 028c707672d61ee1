"""DRF serializers of the HTTP API's request bodies.

Publishing is the API's hot path, so ``EventSerializer`` validates in one ordered pass in
``to_internal_value`` (no declared fields to copy and run one by one) and stops at the first problem,
in the documented order: name, data, channels, socket_id, extras, info, tags, message_id, idempotency
key. Its ``validated_data`` is the ``Publication`` to publish.

A problem is a ``ValidationError`` keyed by the field, whose code is the Pusher error code
(``invalid_input``, ``limit_exceeded``, ``missing_channel_info``, ``payload_too_large``, or
``not_an_object`` for a non-object event); ``errors.envelope`` turns it into the error envelope
with the code's status.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.fields import empty

from history.query import HistoryQuery, InvalidQuery, parse_int
from realtime.node.broadcast import Publication
from realtime.protocol import frames
from realtime.protocol.channels import validate_name

SOCKET_ID = re.compile(r"^\d+\.\d+$")
MAX_KEY_LENGTH = 128
INFO_ATTRIBUTES = frozenset({"user_count", "subscription_count"})


def fail(field: str, message: str, code: str = "invalid_input") -> NoReturn:
    raise serializers.ValidationError({field: [ErrorDetail(message, code)]})


def parse_info(raw: Any) -> frozenset[str]:
    """``info`` of a publish body or of ``GET .../channels``: the known attributes it names."""
    if raw is None or raw == "":
        return frozenset()
    if not isinstance(raw, str):
        fail("info", "info must be a comma-separated string")
    return frozenset(part.strip() for part in raw.split(",") if part.strip()) & INFO_ATTRIBUTES


class APISerializer(serializers.Serializer):
    """A body serializer of the API: the app whose limits apply is ``context["app"]``.

    A publish builds one per request. DRF's ``Field.__init__`` sets two dozen attributes and merges
    the error messages of every class in the MRO each time, which cost as much as validating an
    event; the first serializer of a class keeps its attributes as the class's prototype, and the
    next ones start from a copy (only ``data`` and ``context`` differ between them)."""

    def __init__(self, instance: Any = None, data: Any = empty, **kwargs: Any) -> None:
        prototype = type(self).__dict__.get("_prototype")
        if prototype is None or instance is not None or kwargs.keys() - {"context"}:
            super().__init__(instance, data, **kwargs)
            if prototype is None and instance is None and not kwargs.keys() - {"context"}:
                fresh = dict(self.__dict__)
                for per_request in ("_args", "_kwargs", "_context", "initial_data"):
                    fresh.pop(per_request, None)
                type(self)._prototype = fresh
            return
        self.__dict__.update(prototype)
        self._context = kwargs.get("context", {})
        if data is not empty:
            self.initial_data = data

    def run_validation(self, data: Any = empty) -> Any:
        """``to_internal_value`` then ``validate``: these serializers declare no validators, and
        ``None`` is a body like any other (their own checks answer it)."""
        return self.validate(self.to_internal_value(data))

    @property
    def app(self) -> Any:
        return self._context["app"]


class EventSerializer(APISerializer):
    """One event of ``/events`` or of a ``/batch_events`` batch; ``validated_data`` is a ``Publication``."""

    def to_internal_value(self, item: Any) -> Publication:
        app = self.app
        if not isinstance(item, dict):
            fail("non_field_errors", "Event must be a JSON object", "not_an_object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            fail("name", "Event name is required")
        if len(name.encode()) > app.effective_max_event_name_length:
            fail(
                "name",
                f"Event name is longer than {app.effective_max_event_name_length} bytes",
                "limit_exceeded",
            )
        data = item.get("data")
        if not isinstance(data, str):
            data = frames.dumps(data)
        limit = app.effective_max_http_payload_bytes
        if len(data.encode()) > limit:
            fail("data", f"Event payload is larger than {limit // 1024} KiB", "payload_too_large")
        channels = self.validate_channels(app, item)
        socket_id = item.get("socket_id")
        if socket_id is not None and (not isinstance(socket_id, str) or not SOCKET_ID.match(socket_id)):
            fail("socket_id", "socket_id must look like 123.456")
        extras = self.validate_extras(item.get("extras"))
        return Publication(
            name,
            data,
            channels,
            socket_id,
            parse_info(item.get("info")),
            tags=self.validate_tags(item.get("tags")),
            extras=extras,
            message_id=self.validate_message_id(item.get("message_id")),
            idempotency_key=self.validate_idempotency_key(item, extras),
            ephemeral=bool(extras and extras.get("ephemeral") is True),
        )

    @staticmethod
    def validate_channels(app: Any, item: dict) -> list[str]:
        raw = item.get("channels")
        if raw is not None:
            if not isinstance(raw, list):
                fail("channels", "channels must be a list of strings")
            if not raw:
                _missing_channel_info()
            channels = raw
        else:
            single = item.get("channel")
            if single is None or single == "":
                _missing_channel_info()
            channels = [single]
        limit = app.effective_max_event_channels_at_once
        if len(channels) > limit:
            fail("channels", f"Too many channels ({len(channels)}); the limit is {limit}", "limit_exceeded")
        for channel in channels:
            reason = validate_name(channel, app.effective_max_channel_name_length, app.channel_namespaces)
            if reason:
                fail("channels", reason)
        return list(dict.fromkeys(channels))

    @staticmethod
    def validate_tags(raw: Any) -> dict[str, str] | None:
        """Protocol V2 tags: a flat map of strings (the input of tag filters)."""
        if raw is None:
            return None
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            fail("tags", "tags must be an object of string values")
        return raw or None

    @staticmethod
    def validate_extras(raw: Any) -> dict[str, Any] | None:
        """Protocol V2 extras; ``headers`` must be flat (strings, numbers, booleans)."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            fail("extras", "extras must be an object")
        headers = raw.get("headers")
        if headers is not None:
            if not isinstance(headers, dict) or not all(
                isinstance(v, (str, int, float, bool)) and v is not None for v in headers.values()
            ):
                fail("extras", "extras.headers must be a flat object of strings, numbers or booleans")
            if any(k.startswith("sockudo_") for k in headers):
                fail("extras", "extras.headers keys starting with sockudo_ are reserved")
        return raw

    @staticmethod
    def validate_message_id(raw: Any) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw or len(raw.encode()) > MAX_KEY_LENGTH:
            fail("message_id", f"message_id must be a non-empty string of at most {MAX_KEY_LENGTH} bytes")
        return raw

    @staticmethod
    def validate_idempotency_key(item: dict, extras: dict | None) -> str | None:
        """The per-event key: body ``idempotency_key``, else ``extras.idempotencyKey``/``idempotency_key``."""
        raw = item.get("idempotency_key")
        if raw is None and extras:
            raw = extras.get("idempotencyKey", extras.get("idempotency_key"))
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw or len(raw.encode()) > MAX_KEY_LENGTH:
            fail(
                "idempotency_key",
                f"idempotency key must be a non-empty string of at most {MAX_KEY_LENGTH} bytes",
            )
        return raw


def _missing_channel_info() -> NoReturn:
    fail("channels", "Request must contain 'channels' (list) or 'channel' (string)", "missing_channel_info")


class BatchSerializer(APISerializer):
    """``{"batch": [event, ...]}``: every event is validated before any is published, so a bad item
    never half-applies a batch. ``validated_data`` is the list of ``Publication``s."""

    def to_internal_value(self, body: Any) -> list[Publication]:
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list):
            fail("batch", "Request must contain 'batch' (list)")
        limit = self.app.effective_max_event_batch_size
        if len(batch) > limit:
            fail("batch", f"Batch size ({len(batch)}) exceeds limit ({limit})", "limit_exceeded")
        event = EventSerializer(context=self.context)
        pubs = []
        for index, item in enumerate(batch):
            try:
                pubs.append(event.to_internal_value(item))
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"batch": {index: exc.detail}}) from None
        return pubs


# -- history (http-api.md §7) -----------------------------------------------------------------------


class ConfirmationSerializer(APISerializer):
    """The confirmation fields shared by history reset and purge. Context: ``channel`` and
    ``operation``; ``validated_data`` is the body with ``reason`` and ``requested_by`` checked."""

    def to_internal_value(self, body: Any) -> dict:
        if not isinstance(body, dict):
            fail("non_field_errors", "Request body must be a JSON object")
        channel, operation = self.context["channel"], self.context["operation"]
        if body.get("confirm_channel") != channel:
            fail("confirm_channel", "confirm_channel must equal the channel in the path")
        if body.get("confirm_operation") != operation:
            fail("confirm_operation", f"confirm_operation must be '{operation}'")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            fail("reason", "reason must be a non-blank string")
        requested_by = body.get("requested_by")
        if requested_by is not None and not isinstance(requested_by, str):
            fail("requested_by", "requested_by must be a string")
        return {**body, "reason": reason, "requested_by": requested_by}


PURGE_MODES = ("all", "before_serial", "before_time_ms")


class PurgeSerializer(ConfirmationSerializer):
    """Purge adds ``mode`` and, for the ``before_*`` modes, its bound (an integer)."""

    def to_internal_value(self, body: Any) -> dict:

        data = super().to_internal_value(body)
        mode = data.get("mode")
        if mode not in PURGE_MODES:
            fail("mode", "mode must be all, before_serial or before_time_ms")
        before_serial = before_time = None
        try:
            if mode == "before_serial":
                before_serial = parse_int(data.get("before_serial"), "before_serial")
                if before_serial is None:
                    raise InvalidQuery("before_serial is required with mode before_serial")
            elif mode == "before_time_ms":
                before_time = parse_int(data.get("before_time_ms"), "before_time_ms")
                if before_time is None:
                    raise InvalidQuery("before_time_ms is required with mode before_time_ms")
        except InvalidQuery as exc:
            fail(str(mode), str(exc))
        return {**data, "mode": mode, "before_serial": before_serial, "before_time_ms": before_time}


class HistoryQuerySerializer(APISerializer):
    """The history page's query parameters. Context: ``app``, ``channel`` and ``rules`` (the channel's
    history policy); ``validated_data`` is the ``HistoryQuery``."""

    def to_internal_value(self, params: Any) -> Any:

        try:
            return HistoryQuery.parse(
                params,
                app_id=self.app.id,
                channel=self.context["channel"],
                max_page_size=self.context["rules"].max_page_size,
                attach_serial=parse_int(params.get("attach_serial"), "attach_serial"),
                surface="http",
            )
        except InvalidQuery as exc:
            fail("non_field_errors", str(exc))
