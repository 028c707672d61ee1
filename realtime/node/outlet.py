"""A connection's bounded outbox: writing frames to a socket without awaiting it.

``Outlet`` is the interface the node writes through; ``send`` returns False when the connection
can no longer keep up, and the node then closes it as a slow consumer (4100), so nobody else waits.
``AsgiOutlet`` works on any ASGI server (a bounded queue and one writer task per busy socket). The
server layer may register a faster outlet for its own transport (``register_outlet_factory``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.protocol.outframe import OutFrame

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]
OutletFactory = Callable[[AsgiSend, tuple[int, int]], "Outlet | None"]


class Outlet:
    """Interface: ``send`` returns False when the connection can no longer keep up (or is gone)."""

    __slots__ = ()

    def send(self, frame: OutFrame) -> bool:
        raise NotImplementedError

    def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    @property
    def open(self) -> bool:
        raise NotImplementedError

    @property
    def last_pong(self) -> float:
        """Monotonic time of the last native WebSocket pong (0 when not observable)."""
        return 0.0

    def native_ping(self) -> bool:
        """Send a WebSocket ping frame; False when this server cannot."""
        return False


class AsgiOutlet(Outlet):
    """Portable path for any ASGI server: a bounded queue and one writer task per busy socket."""

    __slots__ = ("asgi_send", "limit", "queue", "writer", "closing")

    def __init__(self, asgi_send: AsgiSend, limit: int) -> None:
        self.asgi_send = asgi_send
        self.limit = limit
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.writer: asyncio.Task | None = None
        self.closing = False

    @property
    def open(self) -> bool:
        return not self.closing

    def send(self, frame: OutFrame) -> bool:
        if self.closing:
            return False
        if len(self.queue) >= self.limit:
            return False
        self._enqueue({"type": "websocket.send", "text": frame.text})
        return True

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self._enqueue({"type": "websocket.close", "code": code, "reason": reason})

    def _enqueue(self, message: dict[str, Any]) -> None:
        self.queue.append(message)
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.queue:
                await self.asgi_send(self.queue.popleft())
        except Exception:  # the socket went away; the consumer's disconnect cleans up
            self.queue.clear()
        finally:
            self.writer = None


_factories: list[OutletFactory] = []


def register_outlet_factory(factory: OutletFactory) -> None:
    """A transport-specific outlet, tried before the portable one (a factory returns None when the
    ASGI ``send`` is not its server's)."""
    if factory not in _factories:
        _factories.insert(0, factory)


def unregister_outlet_factory(factory: OutletFactory) -> None:
    if factory in _factories:
        _factories.remove(factory)


def make_outlet(send: AsgiSend, limits: tuple[int, int]) -> Outlet:
    """The fastest outlet the server allows. ``limits`` = (max buffered bytes, max queued frames)."""
    for factory in _factories:
        outlet = factory(send, limits)
        if outlet is not None:
            return outlet
    return AsgiOutlet(send, limits[1])
