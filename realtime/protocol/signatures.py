"""HMAC-SHA256 signatures of the Pusher protocol: channel auth, user sign-in, HTTP API, webhooks.

Every comparison is constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlencode


def hmac_hex(secret: str, message: str | bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``message`` keyed by ``secret``."""
    if isinstance(message, str):
        message = message.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def channel_string(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """The string a private or presence subscription signs."""
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def user_string(socket_id: str, user_data: str) -> str:
    """The string a ``pusher:signin`` signs."""
    return f"{socket_id}::user::{user_data}"


def sign_channel(key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """The ``auth`` value an app backend returns for a private/presence channel."""
    return f"{key}:{hmac_hex(secret, channel_string(socket_id, channel, channel_data))}"


def sign_user(key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` value an app backend returns for user sign-in."""
    return f"{key}:{hmac_hex(secret, user_string(socket_id, user_data))}"


def verify_auth(auth: object, key: str, secret: str, string_to_sign: str) -> bool:
    """Check a full ``key:hex`` auth value (the key prefix must match too)."""
    if not isinstance(auth, str):
        return False
    expected = f"{key}:{hmac_hex(secret, string_to_sign)}"
    return hmac.compare_digest(auth.encode(), expected.encode())


def api_string_to_sign(method: str, raw_path: str, params: Mapping[str, str]) -> str:
    """Pusher "auth_version 1.0" string: method, raw path, sorted decoded params."""
    lowered = {k.lower(): v for k, v in params.items()}
    lowered.pop("auth_signature", None)
    query = "&".join(f"{k}={lowered[k]}" for k in sorted(lowered))
    return f"{method.upper()}\n{raw_path}\n{query}"


def sign_api_request(secret: str, method: str, raw_path: str, params: Mapping[str, str]) -> str:
    return hmac_hex(secret, api_string_to_sign(method, raw_path, params))


def verify_hex(expected_hex: str, given: object) -> bool:
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected_hex.encode(), given.encode())


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324 - Pusher's body_md5 is MD5 by definition


def webhook_signature(secret: str, body: bytes) -> str:
    return hmac_hex(secret, body)


def encrypted_shared_secret(channel: str, master_key: bytes) -> str:
    """The per-channel key of a private-encrypted channel (computed by app backends)."""
    return base64.b64encode(hashlib.sha256(channel.encode() + master_key).digest()).decode()


def signed_query(
    method: str,
    path: str,
    key: str,
    secret: str,
    body: bytes = b"",
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
) -> str:
    """The query string of a Pusher-signed API request (``auth_*`` plus ``params``)."""
    query = dict(params or {})
    query.update(
        {"auth_key": key, "auth_timestamp": str(timestamp or int(time.time())), "auth_version": "1.0"}
    )
    if method.upper() == "POST":
        query["body_md5"] = md5_hex(body)
    query["auth_signature"] = sign_api_request(secret, method, path, query)
    return urlencode(query)
