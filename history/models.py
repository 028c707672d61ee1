"""Durable channel history: one stream row per (app, channel) and one row per stored message.

``payload`` is the V2 wire JSON of the message exactly as delivered live, so history, rewind and
recovery replay the same bytes. Rows of another stream than the channel's current one are garbage
left by a reset racing in-flight writes; reads never return them and purges delete them.
"""

from __future__ import annotations

from django.db import models


class StreamState(models.TextChoices):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    RESET_REQUIRED = "reset_required"


class HistoryStream(models.Model):
    app_id = models.CharField(max_length=64)
    channel = models.CharField(max_length=512)
    stream_id = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=StreamState.choices, default=StreamState.HEALTHY)
    reason = models.CharField(max_length=200, null=True, blank=True)
    # Highest serial ever deleted by a purge or retention (0 = none): the durable head survives a
    # purge of every row, and reads can tell that a range reaches past retained history.
    purged_through_serial = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()
    reset_at = models.DateTimeField(null=True, blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app_id", "channel"], name="history_stream_channel")]

    def __str__(self) -> str:
        return f"{self.app_id}/{self.channel} @ {self.stream_id}"


class HistoryMessage(models.Model):
    id = models.BigAutoField(primary_key=True)
    app_id = models.CharField(max_length=64)
    channel = models.CharField(max_length=512)
    stream_id = models.CharField(max_length=64)
    serial = models.BigIntegerField()
    message_id = models.CharField(max_length=256)
    event_name = models.CharField(max_length=512)
    published_at_ms = models.BigIntegerField()
    payload = models.TextField()
    payload_size_bytes = models.IntegerField()
    idempotency_key = models.CharField(max_length=256, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["app_id", "channel", "stream_id", "serial"], name="history_message_position"
            )
        ]
        indexes = [
            # Time-bounded pages and retention by age within one channel.
            models.Index(
                fields=["app_id", "channel", "stream_id", "published_at_ms"], name="history_msg_channel_time"
            ),
            # Retention sweeps over every channel.
            models.Index(fields=["published_at_ms"], name="history_msg_time"),
            # Publish idempotency: a retry finds the message a lost receipt referred to.
            models.Index(
                fields=["app_id", "channel", "idempotency_key"],
                name="history_msg_idempotency",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.app_id}/{self.channel} #{self.serial}"
