"""Which channels keep history, and how much: namespace override > app override > server setting.

App overrides live in ``App.history`` (``{"enabled", "rewind_enabled", "retention_window_seconds",
"max_messages_per_channel", "max_page_size"}``); a namespace of ``App.channel_namespaces`` may carry
the same keys under ``"history"``. Absent or null keys fall through to the next level. History is
also forced on where annotations are enabled (server ``ANNOTATIONS_ENABLED`` and the app or
namespace ``annotations_enabled``), since annotations need it. Pure lookups: safe per publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from history.records import Retention
from realtime.conf import server_settings
from realtime.protocol.channels import logical_name

_KEYS = {
    "enabled": ("HISTORY_ENABLED", bool),
    "rewind_enabled": ("HISTORY_REWIND_ENABLED", bool),
    "retention_window_seconds": ("HISTORY_RETENTION_WINDOW_SECONDS", int),
    "max_messages_per_channel": ("HISTORY_MAX_MESSAGES_PER_CHANNEL", int),
    "max_page_size": ("HISTORY_MAX_PAGE_SIZE", int),
}


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    enabled: bool
    rewind_enabled: bool  # meaningful only when enabled
    retention_window_seconds: int  # 0 = keep forever
    max_messages_per_channel: int  # 0 = no count cap
    max_page_size: int

    @property
    def retention(self) -> Retention:
        return Retention(self.retention_window_seconds, self.max_messages_per_channel)


def namespace_of(app: Any, channel: str) -> dict | None:
    """The app's namespace entry for ``channel`` (``ns:rest``), or None."""
    base = logical_name(channel).partition("#")[0]
    if ":" not in base:
        return None
    name = base.split(":", 1)[0]
    for ns in getattr(app, "channel_namespaces", None) or ():
        if isinstance(ns, dict) and ns.get("name") == name:
            return ns
    return None


def policy_for(app: Any, channel: str) -> HistoryPolicy:
    s = server_settings()
    values = {key: kind(s[setting]) for key, (setting, kind) in _KEYS.items()}
    namespace = namespace_of(app, channel)
    for layer in (getattr(app, "history", None), (namespace or {}).get("history")):
        if not isinstance(layer, dict):
            continue
        for key, (_setting, kind) in _KEYS.items():
            if layer.get(key) is not None:
                values[key] = _coerce(layer[key], kind)
    if not values["enabled"] and s.get("ANNOTATIONS_ENABLED", False):
        annotated = (namespace or {}).get("annotations_enabled")
        if annotated is None:
            annotated = getattr(app, "annotations_enabled", False)
        values["enabled"] = bool(annotated)
    values["max_page_size"] = max(1, values["max_page_size"])
    return HistoryPolicy(**values)


def _coerce(raw: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return bool(raw)
    try:
        return max(0, int(raw))
    except (TypeError, ValueError):
        return 0


def history_enabled(app: Any, channel: str) -> bool:
    return policy_for(app, channel).enabled


def rewind_enabled(app: Any, channel: str) -> bool:
    """Rewind on subscribe needs history on and rewind allowed (protocol-v2.md §6)."""
    policy = policy_for(app, channel)
    return policy.enabled and policy.rewind_enabled


def retention(app: Any, channel: str) -> Retention:
    return policy_for(app, channel).retention


def max_page_size(app: Any, channel: str) -> int:
    return policy_for(app, channel).max_page_size
