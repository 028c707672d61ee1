"""Channel names: their type (by prefix) and the naming rules shared by WebSocket and HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_MAX_CHANNEL_NAME_LENGTH = 200
META_PREFIX = "[meta]"  # Protocol V2 metachannels: lifecycle events of the channel after the prefix
SERVER_TO_USER_PREFIX = "#server-to-user-"

_ALLOWED = re.compile(r"^[A-Za-z0-9\-_=@,.;:#]+$")
_USER_ID = re.compile(r"^[A-Za-z0-9\-_=@.]+$")
# Longest prefixes first, so "private-encrypted-cache-x" is not read as "private-".
_TYPE_PREFIXES = (
    "private-encrypted-cache-",
    "private-encrypted-",
    "private-cache-",
    "presence-cache-",
    "presence-",
    "private-",
    "cache-",
)


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """What a channel name implies for auth, presence, caching and client events."""

    requires_auth: bool
    presence: bool
    encrypted: bool
    cache: bool
    server_to_user: bool

    @property
    def allows_client_events(self) -> bool:
        # Not on encrypted channels: the server cannot read (or check) an end-to-end encrypted
        # payload, and Pusher refuses them there too (pusher-js will not even send one).
        return self.requires_auth and not self.server_to_user and not self.encrypted


@lru_cache(maxsize=65536)
def kind_of(name: str) -> ChannelKind:
    """Classify a channel by its prefix (cached: names repeat constantly on the hot path)."""
    presence = name.startswith("presence-")
    private = name.startswith("private-")
    return ChannelKind(
        requires_auth=presence or private,
        presence=presence,
        encrypted=name.startswith("private-encrypted-"),
        cache=name.startswith(("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")),
        server_to_user=name.startswith(SERVER_TO_USER_PREFIX),
    )


def logical_name(name: str) -> str:
    """The name without its type prefix (namespaces and user limits are read from it)."""
    for prefix in _TYPE_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def validate_name(
    name: object,
    max_length: int = DEFAULT_MAX_CHANNEL_NAME_LENGTH,
    namespaces: Iterable[Mapping] | None = None,
) -> str | None:
    """Return None when ``name`` is a valid channel name, else a human-readable reason."""
    if not isinstance(name, str) or not name:
        return "Channel name is required"
    if not _ALLOWED.match(name):
        return f"Invalid channel name '{name[:200]}'"
    if name.startswith(SERVER_TO_USER_PREFIX):
        return None if len(name.encode()) <= max_length else _too_long(max_length)
    logical = logical_name(name)
    base, _, users = logical.partition("#")
    namespace = None
    if ":" in base:
        ns_name = base.split(":", 1)[0]
        namespace = next((ns for ns in namespaces or () if ns.get("name") == ns_name), None)
        if namespace is None:
            return f"Unknown channel namespace '{ns_name}'"
        max_length = int(namespace.get("max_channel_name_length") or max_length)
    if len(name.encode()) > max_length:
        return _too_long(max_length)
    if "#" in logical:
        if namespace is None or not namespace.get("allow_user_limited_channels"):
            return "User-limited channels are not allowed here"
        ids = users.split(",")
        if "#" in users or not all(_USER_ID.match(u) for u in ids):
            return "Invalid user list in user-limited channel name"
    pattern = namespace.get("channel_name_pattern") if namespace else None
    if pattern:
        try:
            if not re.fullmatch(pattern, base):
                return f"Channel name does not match the pattern of namespace '{namespace['name']}'"
        except re.error:
            return f"Namespace '{namespace['name']}' has an invalid channel name pattern"
    return None


def _too_long(max_length: int) -> str:
    return f"Channel name too long (limit is {max_length} bytes)"
