"""The sequencer interface: per-channel message positions (Protocol V2 ``stream_id`` + ``serial``).

Guarantees every driver gives (tests/test_history_store.py checks them over every driver):

* ``next`` returns a serial strictly greater than every serial returned before for the same
  (app, channel) and stream, starting at 1 on a new stream, in every process sharing the driver's
  backend (one process for ``local``, the whole cluster for ``redis``). A serial is reused only
  after ``release`` gave it back (its message was never stored nor delivered), which succeeds only
  while it is still the newest one taken; otherwise a failed caller leaves it skipped.
* The stream id stays the same until ``reset`` (or the loss of the backend's state, which is
  continuity lost: a new stream id, never old serials again under the old id).
* A channel seen for the first time is initialised from the durable history head when a
  ``head_loader`` is configured, so serials continue across restarts and stay consistent with the
  rows already stored.

Calls are coroutines and cost no database round trip after a channel's first use in a process.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from history.records import Position

# ``async (app_id, channel) -> Position | None``: the durable head (newest serial ever written to the
# current durable stream), or None when the channel has no durable stream.
HeadLoader = Callable[[str, str], Awaitable[Position | None]]


def new_stream_id() -> str:
    return str(uuid.uuid4())


class Sequencer:
    def __init__(self, head_loader: HeadLoader | None = None) -> None:
        self.head_loader = head_loader

    async def next(self, app_id: str, channel: str) -> Position:
        """Reserve the next position of the channel's stream."""
        raise NotImplementedError

    async def current(self, app_id: str, channel: str) -> Position:
        """The newest reserved position (serial 0 when none yet); initialises the stream if needed."""
        raise NotImplementedError

    async def release(self, app_id: str, channel: str, position: Position) -> bool:
        """Give back ``position`` (from ``next``) whose message was neither stored nor delivered:
        when it is still the channel's newest (same stream, nothing taken after it), the next
        ``next`` returns it again. Returns whether it was given back."""
        return False

    async def reset(self, app_id: str, channel: str) -> str:
        """Start a new stream for the channel (serials restart at 1); returns its id."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections (drivers with a backend)."""

    async def _initial(self, app_id: str, channel: str) -> Position:
        """Where a channel seen for the first time starts: the durable head, else a new stream."""
        head = await self.head_loader(app_id, channel) if self.head_loader else None
        return head if head is not None else Position(new_stream_id(), 0)
