"""Per-channel message positions for Protocol V2 (see ``base.Sequencer`` for the guarantees).

The driver is ``SEQUENCER_DRIVER`` (``local``, ``redis`` or a dotted path), or follows
``ADAPTER_DRIVER`` when empty: a cluster over Redis needs the Redis sequencer.
"""

from __future__ import annotations

import threading

from django.utils.module_loading import import_string

from history.sequencer.base import HeadLoader, Position, Sequencer, new_stream_id
from history.store import get_store
from realtime.conf import server_settings

__all__ = ["HeadLoader", "Position", "Sequencer", "get_sequencer", "new_stream_id", "sequencer_path"]

DRIVERS = {
    "local": "history.sequencer.local.LocalSequencer",
    "redis": "history.sequencer.redis.RedisSequencer",
}

_lock = threading.Lock()
_sequencer: Sequencer | None = None


def sequencer_path(settings: dict) -> str:
    name = settings.get("SEQUENCER_DRIVER") or settings.get("ADAPTER_DRIVER") or "local"
    return DRIVERS.get(name, name)


async def durable_head(app_id: str, channel: str) -> Position | None:
    """The default head loader: the history store's durable head of the channel."""

    return await get_store().ahead(app_id, channel)


def get_sequencer() -> Sequencer:
    """The process-wide sequencer, seeded from the history store on each channel's first use."""
    global _sequencer
    if _sequencer is None:
        with _lock:
            if _sequencer is None:
                _sequencer = import_string(sequencer_path(server_settings()))(head_loader=durable_head)
    return _sequencer
