"""The App: credentials, feature switches and per-app limits of one tenant.

Unset (null) limits fall back to the server-wide defaults in ``realtime.conf`` (Pusher's limits), so
a new app is safe by default. Runtime code reads the ``effective_*`` properties, never raw nulls.
"""

from __future__ import annotations

import secrets

from django.db import models

from realtime.conf import server_settings


def new_key() -> str:
    return secrets.token_hex(10)


def new_secret() -> str:
    return secrets.token_hex(16)


class ServerDefault:
    """A limit read at run time: the app's own value, or (when it leaves the field empty) the server
    setting, times ``scale``. Read on every frame that checks a limit, so it stays a plain lookup."""

    __slots__ = ("field", "setting", "scale")

    def __init__(self, field: str, setting: str, scale: int = 1) -> None:
        self.field = field
        self.setting = setting
        self.scale = scale

    def __get__(self, app: App | None, owner: type) -> int:
        if app is None:
            return self  # type: ignore[return-value]  # the descriptor itself, on the class
        value = getattr(app, self.field)
        return (server_settings()[self.setting] if value is None else value) * self.scale


class App(models.Model):
    id = models.CharField(
        primary_key=True, max_length=64, help_text="Numeric ids work with every Pusher SDK."
    )
    key = models.CharField(max_length=128, unique=True, default=new_key)
    secret = models.CharField(max_length=256, default=new_secret)
    previous_secret = models.CharField(max_length=256, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    name = models.CharField(max_length=200, blank=True, default="")
    enabled = models.BooleanField(default=True)

    # Limits (null = server default).
    max_connections = models.PositiveIntegerField(default=0, help_text="0 = unlimited")
    max_backend_events_per_second = models.PositiveIntegerField(null=True, blank=True)
    max_client_events_per_second = models.PositiveIntegerField(
        null=True, blank=True, help_text="0 = no limit"
    )
    max_read_requests_per_second = models.PositiveIntegerField(null=True, blank=True)
    max_presence_members_per_channel = models.PositiveIntegerField(null=True, blank=True)
    max_presence_member_size_in_kb = models.PositiveIntegerField(null=True, blank=True)
    max_channel_name_length = models.PositiveIntegerField(null=True, blank=True)
    max_event_channels_at_once = models.PositiveIntegerField(null=True, blank=True)
    max_event_name_length = models.PositiveIntegerField(null=True, blank=True)
    max_event_payload_in_kb = models.PositiveIntegerField(null=True, blank=True)
    max_event_batch_size = models.PositiveIntegerField(null=True, blank=True)
    decay_seconds = models.PositiveIntegerField(null=True, blank=True)
    terminate_on_limit = models.BooleanField(default=False)
    message_rate_limit = models.JSONField(null=True, blank=True)

    # Features.
    enable_client_messages = models.BooleanField(default=False)
    enable_user_authentication = models.BooleanField(default=True)
    enforce_user_authentication = models.BooleanField(default=False)
    enable_watchlist_events = models.BooleanField(default=False)
    enable_subscription_count = models.BooleanField(default=False)
    annotations_enabled = models.BooleanField(default=False)

    # Channels and integrations.
    allowed_origins = models.JSONField(default=list, blank=True)
    channel_namespaces = models.JSONField(default=list, blank=True)
    channel_delta_compression = models.JSONField(default=dict, blank=True)
    webhooks = models.JSONField(default=list, blank=True)
    idempotency = models.JSONField(default=dict, blank=True)
    connection_recovery = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=dict, blank=True)
    presence_history = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.id} ({self.name or self.key})"

    # --- effective limits: the app's value, or the server default when the app sets none ----------
    effective_max_channel_name_length = ServerDefault(
        "max_channel_name_length", "CHANNEL_LIMITS_MAX_NAME_LENGTH"
    )
    effective_max_event_name_length = ServerDefault("max_event_name_length", "EVENT_LIMITS_MAX_NAME_LENGTH")
    effective_max_event_channels_at_once = ServerDefault(
        "max_event_channels_at_once", "EVENT_LIMITS_MAX_CHANNELS_AT_ONCE"
    )
    effective_max_event_batch_size = ServerDefault("max_event_batch_size", "EVENT_LIMITS_MAX_BATCH_SIZE")
    effective_max_http_payload_bytes = ServerDefault(
        "max_event_payload_in_kb", "EVENT_LIMITS_MAX_PAYLOAD_IN_KB", scale=1024
    )
    effective_max_client_payload_bytes = ServerDefault(
        "max_event_payload_in_kb", "CLIENT_EVENT_MAX_PAYLOAD_IN_KB", scale=1024
    )
    effective_max_client_events_per_second = ServerDefault(
        "max_client_events_per_second", "CLIENT_EVENT_MAX_PER_SECOND"
    )
    effective_max_presence_members = ServerDefault(
        "max_presence_members_per_channel", "PRESENCE_MAX_MEMBERS_PER_CHANNEL"
    )
    effective_max_presence_member_size_kb = ServerDefault(
        "max_presence_member_size_in_kb", "PRESENCE_MAX_MEMBER_SIZE_IN_KB"
    )

    @property
    def effective_decay_seconds(self) -> int:
        return self.decay_seconds or 1
