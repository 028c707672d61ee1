"""Writing frames to a socket without awaiting it: one outlet per connection.

A broadcast is encoded once into an ``OutFrame``; delivering it to a subscriber is a buffer append.
Under daphne the outlet collects the prebuilt WebSocket frames (the same bytes for every subscriber)
and writes them to the socket in one go once the event loop has run the work already queued; its
unsent bytes (corked plus what the Twisted transport holds) are the bounded outbox: past the limit
the connection is closed as a slow consumer (4100) and nobody else waits.
Any other ASGI server gets a bounded per-connection queue drained by one writer task.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from realtime.protocol.frames import to_v2

log = logging.getLogger(__name__)
AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


_UNSET = object()
FLUSH_BYTES = 64 * 1024  # corked bytes per socket past which they are written at once


class OutFrame:
    """One encoded outbound frame, shared by every recipient; WebSocket bytes built on first use.

    A frame has one text per protocol: ``text`` for V1 (None = not delivered to V1) and ``v2`` for
    V2, given explicitly (messages with V2 metadata) or derived once from the V1 text (the
    ``sockudo:`` spelling of system events). ``v2_only`` frames never reach V1 connections.
    """

    __slots__ = ("text", "_wire", "_v2", "_v2_given", "v2_text", "position", "_view")

    def __init__(self, text: str | None, v2: str | None = None, position: tuple | None = None) -> None:
        self.text = text
        self.position = position  # V2 identity (message_id, stream_id, serial), if it has one
        self._view: Any = _UNSET
        self._wire: bytes | None = None
        self._v2: OutFrame | None = None
        self._v2_given = v2 is not None
        self.v2_text = v2  # the explicit V2 text (shipped to other nodes as is), if any
        if v2 is not None:
            self._v2 = OutFrame(v2, position=position) if v2 != text else self

    @classmethod
    def v2_only(cls, text: str) -> OutFrame:
        return cls(None, text)

    @property
    def view(self) -> Any:
        """What V2 subscription filters see (parsed once per broadcast, only when a filtered
        subscriber asks; None for system frames, which filters never hide)."""
        if self._view is _UNSET:
            from realtime.protocol.filters import message_from_frame

            text = self.v2_text or self.text
            self._view = message_from_frame(text) if text else None
        return self._view

    @property
    def v2(self) -> OutFrame | None:
        """The frame for V2 connections (None: not delivered to V2)."""
        if not self._v2_given:
            self._v2_given = True
            text = to_v2(self.text) if self.text is not None else None
            self._v2 = self if text == self.text else OutFrame(text)
        return self._v2

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            payload = self.text.encode()
            size = len(payload)
            if size < 126:
                header = bytes((0x81, size))
            elif size < 65536:
                header = struct.pack("!BBH", 0x81, 126, size)
            else:
                header = struct.pack("!BBQ", 0x81, 127, size)
            wire = self._wire = header + payload
        return wire


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


class DaphneOutlet(Outlet):
    """Direct writes to daphne's autobahn protocol and its Twisted transport, corked.

    ``send`` only appends the frame's bytes to the connection's pending list; one callback writes
    each connection's pending bytes with a single ``send()``: at the end of the event-loop turn
    when the loop is idle, after the work already queued when it is busy (bounded by
    ``set_flush_max_delay``). Under load a socket receives many frames per write, so the kernel
    (ours and the reader's) handles one write and one read where it would handle one per frame.
    """

    __slots__ = ("protocol", "limit", "direct", "pending", "pending_bytes", "backlog")

    def __init__(self, protocol: Any, limit: int) -> None:
        self.protocol = protocol
        self.limit = limit
        transport = protocol.transport
        # Plain TCP only: with TLS in the transport the bytes must go through Twisted.
        self.direct = plain_tcp(transport)
        self.pending: list[bytes] | None = None  # corked bytes, written at the end of this turn
        self.pending_bytes = 0
        self.backlog = 0  # bytes Twisted still held after the last write (re-read when it matters)

    @property
    def open(self) -> bool:
        return self.protocol.state == 3  # autobahn STATE_OPEN

    def send(self, frame: OutFrame) -> bool:
        if self.protocol.state != 3:
            return False
        wire = frame.wire
        pending = self.pending
        if pending is None:
            self.pending = [wire]
            self.pending_bytes = len(wire)
            _cork(self)
        else:
            pending.append(wire)
            self.pending_bytes += len(wire)
        if self.pending_bytes >= FLUSH_BYTES:
            # A big turn goes out now: only what the kernel refuses counts against the limit, so a
            # burst of large frames in one turn never looks like a slow consumer.
            self.flush()
            return self.backlog <= self.limit
        if self.pending_bytes + self.backlog > self.limit:
            self.backlog = _unsent(self.protocol.transport)
            return self.pending_bytes + self.backlog <= self.limit
        return True

    def flush(self) -> None:
        """Write the corked bytes: straight to the kernel when Twisted holds nothing for this socket
        (``write_through``)."""
        pending = self.pending
        if pending is None:
            return
        self.pending = None
        protocol = self.protocol
        if protocol.state != 3:
            return  # closed or closing: the peer will not read frames after the close handshake
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        transport = protocol.transport
        if self.direct:
            self.backlog = write_through(transport, data)
        else:
            self.backlog = _unsent(transport) + len(data)
            transport.write(data)

    @property
    def last_pong(self) -> float:
        return getattr(self.protocol, "pong_at", 0.0)

    def native_ping(self) -> bool:
        if self.protocol.state != 3:
            return False
        self.flush()
        self.protocol.sendPing()
        return True

    def close(self, code: int, reason: str) -> None:
        protocol = self.protocol
        if protocol.state in (1, 3):  # connecting or open
            self.flush()  # frames sent before the close go out before it
            protocol.sendClose(code=code, reason=reason[:120])


def write_through(transport: Any, data: bytes) -> int:
    """Write ``data`` to a plain TCP transport's socket now, when Twisted holds nothing for it;
    only what the kernel refuses goes through Twisted. Returns the bytes Twisted holds after.

    Twisted's write() would register the socket for writability and write on a later loop turn
    (three extra syscalls)."""
    unsent = _unsent(transport)
    if unsent or transport.disconnecting:
        transport.write(data)
        return unsent + len(data)
    try:
        sent = transport.socket.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        transport.write(data)  # let Twisted notice the broken socket and close it
        return len(data)
    if sent < len(data):
        transport.write(data[sent:])
    return len(data) - sent


def plain_tcp(transport: Any) -> bool:
    """Whether ``transport`` is a Twisted TCP connection without TLS (its socket may be written)."""
    return getattr(transport, "TLS", True) is False and hasattr(transport, "socket")


def _unsent(transport: Any) -> int:
    """Bytes the Twisted transport has buffered but not yet written to the socket."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


_corked: list[DaphneOutlet] = []
_corked_since = 0.0  # loop time of the first cork since the last write
_last_write = float("-inf")  # loop time the last write round ended
_deferrals = 0
_polled = False  # this write round already let the loop poll for I/O once
FLUSH_MAX_DEFERRALS = 32  # a busy loop still writes after this many re-queued turns
_flush_max_delay = 0.1  # seconds; see ``set_flush_max_delay``


def set_flush_max_delay(seconds: float) -> None:
    """How long corked frames may wait for a busy event loop (0: write at the end of every turn).

    Idle, frames are written at the end of the turn that sent them. Busy (the last write round was
    less than this delay ago and callbacks are already queued: publishes, reads, other fan-outs),
    the write waits for that work, so a socket gets the frames of many broadcasts in one ``send()``.
    Each write to a TCP socket costs the sender and the reader far more than its bytes do, so under
    load this multiplies what a node (and its clients) can carry; the wait is bounded by this delay.
    """
    global _flush_max_delay
    _flush_max_delay = max(0.0, seconds)


def _cork(outlet: DaphneOutlet) -> None:
    """Remember ``outlet`` for the next write (one callback for all of them)."""
    global _corked_since
    if not _corked:
        loop = asyncio.get_running_loop()
        _corked_since = loop.time()
        loop.call_soon(_uncork, loop)
    _corked.append(outlet)


def _uncork(loop: asyncio.AbstractEventLoop) -> None:
    global _deferrals, _last_write, _polled
    if (
        _deferrals < FLUSH_MAX_DEFERRALS
        and _corked_since - _last_write < _flush_max_delay  # busy: frames keep coming
        and loop.time() - _corked_since < _flush_max_delay
    ):
        if getattr(loop, "_ready", None):  # asyncio's queue of callbacks due this turn or next
            _deferrals += 1
            loop.call_soon(_uncork, loop)  # after the work already queued
            return
        if not _polled:
            # Nothing queued: one more turn costs a zero-timeout poll, which queues the requests
            # and messages that arrived meanwhile ahead of this write instead of after it.
            _polled = True
            _deferrals += 1
            loop.call_soon(_uncork, loop)
            return
    _deferrals = 0
    _polled = False
    outlets = _corked[:]
    _corked.clear()
    for outlet in outlets:
        try:
            outlet.flush()
        except Exception:  # one broken socket must not keep the others' frames unsent
            log.exception("writing to a socket failed")
    _last_write = loop.time()


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


def make_outlet(send: AsgiSend, limits: tuple[int, int]) -> Outlet:
    """Pick the fastest outlet the server allows. ``limits`` = (max buffered bytes, max queued frames)."""
    protocol = _daphne_protocol(send)
    if protocol is not None:
        return DaphneOutlet(protocol, limits[0])
    return AsgiOutlet(send, limits[1])


def _daphne_protocol(send: AsgiSend) -> Any | None:
    """daphne hands each app ``partial(server.handle_reply, protocol)``; recognise exactly that."""
    if not isinstance(send, partial) or not send.args:
        return None
    protocol = send.args[0]
    from daphne.ws_protocol import WebSocketProtocol

    if not isinstance(protocol, WebSocketProtocol):
        return None
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "_tempDataLen"):
        return None
    return protocol
