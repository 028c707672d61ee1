"""Which subscriptions a message reaches: V2 wildcard patterns and subscription filters.

Used by the live fan-out and by every replay (rewind, recovery), so a filtered subscriber sees the
same messages whichever way they reach it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.protocol.outframe import OutFrame


def wildcard_matches(pattern: str, channel: str) -> bool:
    """``pre*``, ``*suf`` or ``pre*suf`` (exactly one ``*``)."""
    prefix, _, suffix = pattern.partition("*")
    return (
        len(channel) >= len(prefix) + len(suffix) and channel.startswith(prefix) and channel.endswith(suffix)
    )


def passes(conn: Connection, channel: str, frame: OutFrame) -> bool:
    """A V2 subscription filter's verdict on an application event (system frames always pass)."""
    rule = conn.filters.get(channel) if conn.filters else None
    if rule is None:
        return True
    view = frame.view
    return view is None or rule.matches(view)
