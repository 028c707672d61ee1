"""Per-channel message positions for Protocol V2 (see ``base.Sequencer`` for the guarantees).

The driver is ``SEQUENCER_DRIVER`` (``local``, ``redis`` or a dotted path), or follows
``ADAPTER_DRIVER`` when empty: a cluster over Redis needs the Redis sequencer.
"""

from __future__ import annotations

from typing import Any

from history.sequencer.base import HeadLoader, Position, Sequencer, new_stream_id
from history.store import get_store
from realtime.conf import server_settings
from realtime.conf.drivers import Driver, resolve

__all__ = ["HeadLoader", "Position", "Sequencer", "get_sequencer", "new_stream_id", "sequencer_path"]

DRIVERS = {
    "local": "history.sequencer.local.LocalSequencer",
    "redis": "history.sequencer.redis.RedisSequencer",
}


def sequencer_name(settings: Any) -> str:
    return settings.get("SEQUENCER_DRIVER") or settings.get("ADAPTER_DRIVER") or "local"


def sequencer_path(settings: Any) -> str:
    return resolve(DRIVERS, sequencer_name(settings))


async def durable_head(app_id: str, channel: str) -> Position | None:
    """The default head loader: the history store's durable head of the channel."""
    return await get_store().ahead(app_id, channel)


# Seeded from the history store on each channel's first use.
_sequencer: Driver[Sequencer] = Driver(
    DRIVERS,
    choose=lambda: sequencer_name(server_settings()),
    build=lambda cls: cls(head_loader=durable_head),
)
get_sequencer = _sequencer.get
