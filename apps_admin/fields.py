"""The App fields an operator can set from the environment (``SOCKUDO_DEFAULT_APP_<FIELD>``), a
static app definition or the admin, grouped by kind; how each is parsed. The one list of them: the
admin's fieldsets and filters use these groups, and a test checks they cover the model exactly."""

from __future__ import annotations

import json
import os
from typing import Any

# The app's feature switches, in the order the admin shows them.
FEATURE_FIELDS = (
    "enable_client_messages",
    "enable_user_authentication",
    "enforce_user_authentication",
    "enable_watchlist_events",
    "enable_subscription_count",
    "annotations_enabled",
)
BOOL_FIELDS = ("enabled", "terminate_on_limit", *FEATURE_FIELDS)
INT_FIELDS = (
    "max_connections",
    "max_backend_events_per_second",
    "max_client_events_per_second",
    "max_read_requests_per_second",
    "max_presence_members_per_channel",
    "max_presence_member_size_in_kb",
    "max_channel_name_length",
    "max_event_channels_at_once",
    "max_event_name_length",
    "max_event_payload_in_kb",
    "max_event_batch_size",
    "decay_seconds",
)
LIST_FIELDS = ("allowed_origins",)
# Protocol V2 policies (JSON objects overriding server defaults per app).
POLICY_FIELDS = (
    "channel_delta_compression",
    "idempotency",
    "connection_recovery",
    "history",
    "presence_history",
)
JSON_FIELDS = ("message_rate_limit", "channel_namespaces", "webhooks", *POLICY_FIELDS)
STR_FIELDS = ("id", "key", "secret", "name")
ALL_FIELDS = STR_FIELDS + BOOL_FIELDS + INT_FIELDS + LIST_FIELDS + JSON_FIELDS

DEFAULT_APP_PREFIX = "SOCKUDO_DEFAULT_APP_"
DEFAULT_APP = {"id": "1001", "key": "app-key", "secret": "app-secret", "name": "Demo app"}


def parse_value(field: str, raw: Any) -> Any:
    """Coerce one value (from env text or JSON) to the field's type; raise ValueError if invalid."""
    if field in BOOL_FIELDS:
        if isinstance(raw, bool):
            return raw
        return _bool(raw)
    if field in INT_FIELDS:
        if raw is None or raw == "":
            return None
        value = int(raw)
        if value < 0:
            raise ValueError(f"{field} must not be negative")
        return value
    if field in LIST_FIELDS:
        if isinstance(raw, list):
            return [str(v) for v in raw]
        text = str(raw).strip()
        if text.startswith("["):
            return [str(v) for v in json.loads(text)]
        return [part.strip() for part in text.split(",") if part.strip()]
    if field in JSON_FIELDS:
        return json.loads(raw) if isinstance(raw, str) else raw
    return str(raw)


def _bool(raw: Any) -> bool:
    lowered = str(raw).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def default_app_from_environ(explicit_only: bool = False) -> dict[str, Any]:
    """Field values of the default app: documented defaults overlaid with SOCKUDO_DEFAULT_APP_*.

    With ``explicit_only`` only the variables actually present in the environment are returned
    (used to update an existing database row without undoing edits made in the admin).
    """
    values: dict[str, Any] = {} if explicit_only else dict(DEFAULT_APP)
    for field in ALL_FIELDS:
        raw = os.environ.get(DEFAULT_APP_PREFIX + field.upper())
        if raw is not None:
            try:
                values[field] = parse_value(field, raw)
            except ValueError as exc:
                raise ValueError(f"{DEFAULT_APP_PREFIX}{field.upper()}: {exc}") from None
    return values


def app_from_mapping(data: dict[str, Any]) -> dict[str, Any]:
    """Field values from a static app definition (flat, or Sockudo's ``policy`` shape)."""
    flat = dict(data)
    policy = flat.pop("policy", None)
    if isinstance(policy, dict):
        for section in ("limits", "features", "channels"):
            flat.update(policy.get(section) or {})
        for key in ("webhooks", "idempotency", "connection_recovery", "history", "presence_history"):
            if key in policy:
                flat[key] = policy[key]
    return {f: parse_value(f, v) for f, v in flat.items() if f in ALL_FIELDS and v is not None}
