"""Plain values exchanged with the history store (no Django imports: usable from the wire layer)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Position(NamedTuple):
    """A point of a channel's stream: the message with ``serial`` (0 = before the first message)."""

    stream_id: str
    serial: int


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One message to persist. ``payload`` is its V2 wire JSON (with message_id/stream_id/serial)."""

    app_id: str
    channel: str
    stream_id: str
    serial: int
    message_id: str
    event_name: str
    published_at_ms: int
    payload: str
    idempotency_key: str | None = None
    payload_size_bytes: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.payload_size_bytes < 0:
            object.__setattr__(self, "payload_size_bytes", len(self.payload.encode()))


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message read back from the store."""

    stream_id: str
    serial: int
    message_id: str
    event_name: str
    published_at_ms: int
    payload: str
    payload_size_bytes: int
    idempotency_key: str | None = None

    def item(self) -> dict[str, Any]:
        """The history item of http-api.md §7.1 / protocol-v2.md §8."""
        return {
            "stream_id": self.stream_id,
            "serial": self.serial,
            "published_at_ms": self.published_at_ms,
            "message_id": self.message_id,
            "event_name": self.event_name,
            "operation_kind": "append",  # an ordinary row of the log (versioned messages replace it)
            "payload_size_bytes": self.payload_size_bytes,
            "message": json.loads(self.payload),
        }


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """The durable stream of one channel."""

    stream_id: str
    durable_state: str  # healthy | degraded | reset_required
    reason: str | None
    purged_through_serial: int
    last_transition_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Retained:
    """What a stream still holds."""

    messages: int = 0
    bytes: int = 0
    oldest_serial: int | None = None
    newest_serial: int | None = None
    oldest_published_at_ms: int | None = None
    newest_published_at_ms: int | None = None

    @property
    def contiguous(self) -> bool:
        """No hole between the oldest and the newest retained serial."""
        if not self.messages:
            return True
        return self.newest_serial - self.oldest_serial + 1 == self.messages


@dataclass(frozen=True, slots=True)
class PurgeResult:
    stream_id: str | None
    purged_messages: int
    purged_bytes: int


@dataclass(frozen=True, slots=True)
class ResetResult:
    previous_stream_id: str | None
    new_stream_id: str
    purged_messages: int
    purged_bytes: int


@dataclass(frozen=True, slots=True)
class Retention:
    """How long and how much history a channel keeps (0 = no limit)."""

    window_seconds: int
    max_messages: int
