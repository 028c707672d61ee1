"""The one catalogue of protocol error codes and messages.

Close-code ranges matter to clients (pusher-js, Laravel Echo): 4000-4099 means "do not reconnect",
4100-4199 "reconnect with back-off", 4200-4299 "reconnect at once", >= 4300 "do not reconnect".
Nothing else in the code base writes a bare close code.
"""

from __future__ import annotations

from dataclasses import dataclass

# Codes (Pusher's, plus Sockudo's 43xx family).
SSL_ONLY = 4000  # also the catch-all for malformed frames; never used as a close code
APP_NOT_FOUND = 4001
APP_DISABLED = 4003
APP_OVER_QUOTA = 4004
INVALID_VERSION = 4006
UNSUPPORTED_PROTOCOL = 4007
UNAUTHORIZED = 4009
OVER_CAPACITY = 4100
RECONNECT_NOW = 4200
PONG_NOT_RECEIVED = 4201
CHANNEL_ERROR = 4300
CLIENT_EVENT_REJECTED = 4301
WATCHLIST_LIMIT = 4302
BROADCAST_ERROR = 4303

# WebSocket (RFC 6455) codes used directly.
MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True, slots=True)
class ProtocolError(Exception):
    """An error to report to the client as a ``pusher:error`` frame (and maybe a close)."""

    code: int
    message: str
    fatal: bool = False

    def __str__(self) -> str:  # pragma: no cover - debugging aid
        return f"{self.code} {self.message}"


def app_not_found() -> ProtocolError:
    return ProtocolError(APP_NOT_FOUND, "Application does not exist", fatal=True)


def app_disabled() -> ProtocolError:
    return ProtocolError(APP_DISABLED, "Application disabled", fatal=True)


def app_over_quota() -> ProtocolError:
    return ProtocolError(APP_OVER_QUOTA, "Application is over adapter quota", fatal=True)


def origin_not_allowed() -> ProtocolError:
    return ProtocolError(UNAUTHORIZED, "Origin not allowed", fatal=True)


def server_over_capacity() -> ProtocolError:
    return ProtocolError(OVER_CAPACITY, "Over capacity", fatal=True)


def invalid_version(value: str) -> ProtocolError:
    return ProtocolError(INVALID_VERSION, f"Invalid version string '{value}'", fatal=True)


def unsupported_protocol(value: int) -> ProtocolError:
    return ProtocolError(UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {value}", fatal=True)


def unsupported_format(value: str) -> ProtocolError:
    return ProtocolError(
        UNSUPPORTED_PROTOCOL, f"Unsupported wire format '{value}' (json is served)", fatal=True
    )


def invalid_format(detail: str) -> ProtocolError:
    return ProtocolError(SSL_ONLY, f"Invalid message format: {detail}")


def invalid_event_name(detail: str) -> ProtocolError:
    return ProtocolError(SSL_ONLY, f"Invalid event name: {detail}")


def auth_error(detail: str) -> ProtocolError:
    return ProtocolError(UNAUTHORIZED, f"Authentication error: {detail}")


def channel_error(detail: str) -> ProtocolError:
    return ProtocolError(CHANNEL_ERROR, f"Channel error: {detail}")


def client_event_error(detail: str) -> ProtocolError:
    return ProtocolError(CLIENT_EVENT_REJECTED, f"Client event error: {detail}")


def client_event_rate_limited() -> ProtocolError:
    return ProtocolError(CLIENT_EVENT_REJECTED, "Client event rejected due to rate limit")


def client_event_rate_limit_close() -> ProtocolError:
    return ProtocolError(
        CLIENT_EVENT_REJECTED, "Connection closed due to client event rate limit", fatal=True
    )


def presence_full() -> ProtocolError:
    return ProtocolError(OVER_CAPACITY, "Over capacity")


def broadcast_error(detail: str) -> ProtocolError:
    return ProtocolError(BROADCAST_ERROR, f"Broadcast error: {detail}")


def watchlist_too_large(limit: int) -> ProtocolError:
    return ProtocolError(WATCHLIST_LIMIT, f"Watchlist exceeds the limit of {limit} users")


# Close-only reasons (sent as the close frame's reason, without an error frame).
PONG_TIMEOUT_REASON = "Pong reply not received in time"
AUTH_TIMEOUT_REASON = "Connection not authorized within timeout."
SLOW_CONSUMER_REASON = "Over capacity: client is not reading fast enough"
TERMINATED_REASON = "You got disconnected by the app."
FORCE_RECONNECT_REASON = "Force reconnect requested by the app."
SHUTDOWN_REASON = "Server shutting down"
