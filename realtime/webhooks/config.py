"""An app's ``webhooks`` list, parsed once per loaded App object (spec/webhooks.md §2 and §5).

Entries are read leniently: one malformed entry (no target, no ``event_types``) is skipped with a
warning, the others still work. An invalid ``channel_pattern`` makes its webhook receive nothing,
as upstream does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from realtime.protocol.channels import logical_name

log = logging.getLogger(__name__)


def namespace_of(channel: str) -> str | None:
    """``presence-orders:123`` -> ``orders``; ``chat:room-1`` -> ``chat``; ``orders-1`` -> None."""
    base = logical_name(channel)
    return base.split(":", 1)[0] if ":" in base else None


@dataclass(frozen=True, slots=True)
class ChannelFilter:
    """Every present field must match (logical AND)."""

    prefix: str | None = None
    suffix: str | None = None
    pattern: re.Pattern[str] | None = None
    namespaces: frozenset[str] | None = None
    broken: bool = False  # an invalid pattern: nothing matches

    @classmethod
    def parse(cls, raw: Any) -> ChannelFilter | None:
        if not isinstance(raw, Mapping) or not raw:
            return None
        pattern, broken = None, False
        if raw.get("channel_pattern") is not None:
            try:
                pattern = re.compile(str(raw["channel_pattern"]))
            except re.error as exc:
                log.warning(
                    "webhook channel_pattern %r is invalid (%s): it matches nothing",
                    raw["channel_pattern"],
                    exc,
                )
                broken = True
        namespaces: set[str] | None = None
        if raw.get("channel_namespace") is not None:
            namespaces = {str(raw["channel_namespace"])}
        if isinstance(raw.get("channel_namespaces"), list):
            listed = {str(n) for n in raw["channel_namespaces"]}
            namespaces = listed if namespaces is None else namespaces & listed
        return cls(
            prefix=_opt_str(raw.get("channel_prefix")),
            suffix=_opt_str(raw.get("channel_suffix")),
            pattern=pattern,
            namespaces=frozenset(namespaces) if namespaces is not None else None,
            broken=broken,
        )

    def matches(self, channel: str) -> bool:
        if self.broken:
            return False
        if self.prefix is not None and not channel.startswith(self.prefix):
            return False
        if self.suffix is not None and not channel.endswith(self.suffix):
            return False
        if self.pattern is not None and self.pattern.search(channel) is None:
            return False
        return self.namespaces is None or namespace_of(channel) in self.namespaces


@dataclass(frozen=True, slots=True)
class Webhook:
    index: int  # position in the app's list (tasks name their webhook by index and target)
    target: str  # the URL, else the Lambda function name
    url: str | None
    lambda_function: str | None
    event_types: frozenset[str]
    filter: ChannelFilter | None
    headers: tuple[tuple[str, str], ...]
    retry: Mapping[str, Any]
    request_timeout_ms: int | None

    def accepts(self, event: Mapping[str, Any]) -> bool:
        if event.get("name") not in self.event_types:
            return False
        if self.filter is None:
            return True
        channel = event.get("channel")
        return isinstance(channel, str) and self.filter.matches(channel)


def parse_webhook(index: int, raw: Any) -> Webhook | None:
    if not isinstance(raw, Mapping):
        return None
    url = _opt_str(raw.get("url"))
    lam = raw.get("lambda")
    lambda_function = _opt_str(raw.get("lambda_function")) or (
        _opt_str(lam.get("function_name")) if isinstance(lam, Mapping) else None
    )
    types = raw.get("event_types")
    if not (url or lambda_function) or not isinstance(types, list):
        return None
    headers = raw.get("headers") if isinstance(raw.get("headers"), Mapping) else {}
    timeout = raw.get("request_timeout_ms")
    return Webhook(
        index=index,
        target=url or lambda_function or "",
        url=url,
        lambda_function=lambda_function,
        event_types=frozenset(str(t) for t in types),
        filter=ChannelFilter.parse(raw.get("filter")),
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
        retry=dict(raw["retry"]) if isinstance(raw.get("retry"), Mapping) else {},
        request_timeout_ms=int(timeout) if isinstance(timeout, int) and timeout > 0 else None,
    )


@dataclass(frozen=True, slots=True)
class AppWebhooks:
    hooks: tuple[Webhook, ...]
    names: frozenset[str]  # every event name some webhook lists: the cheap check

    def wanted(self, event: Mapping[str, Any]) -> bool:
        return event.get("name") in self.names and any(h.accepts(event) for h in self.hooks)

    def find(self, index: int, target: str) -> Webhook | None:
        """The webhook a task was made for: same position and target, else the first with that
        target (entries were reordered), else None (it was removed)."""
        same = [h for h in self.hooks if h.target == target]
        return next((h for h in same if h.index == index), same[0] if same else None)


NONE = AppWebhooks((), frozenset())
_cache: dict[str, tuple[Any, AppWebhooks]] = {}


def webhooks_of(app: Any) -> AppWebhooks:
    """The parsed webhooks of ``app``; re-parsed only when the app manager loads a new App object."""
    entry = _cache.get(app.id)
    if entry is not None and entry[0] is app:
        return entry[1]
    raw = app.webhooks or []
    parsed = AppWebhooks(NONE.hooks, NONE.names)
    if isinstance(raw, list) and raw:
        hooks = []
        for i, item in enumerate(raw):
            hook = parse_webhook(i, item)
            if hook is None:
                log.warning("app %s: webhook #%d needs a url (or lambda) and event_types; ignored", app.id, i)
            else:
                hooks.append(hook)
        parsed = AppWebhooks(tuple(hooks), frozenset().union(*(h.event_types for h in hooks)))
    _cache[app.id] = (app, parsed)
    return parsed


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
