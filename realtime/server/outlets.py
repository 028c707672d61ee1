"""daphne's corked outlet: frames written straight to the Twisted transport's socket.

A broadcast is encoded once into an ``OutFrame``; delivering it to a subscriber is a buffer append.
Under daphne the outlet collects the prebuilt WebSocket frames (the same bytes for every subscriber)
and writes them to the socket in one go once the event loop has run the work already queued; its
unsent bytes (corked plus what the Twisted transport holds) are the bounded outbox: past the limit
the connection is closed as a slow consumer (4100) and nobody else waits.
Any other ASGI server gets the node's portable ``AsgiOutlet``.

Framework privates read here (each has a contract test): Twisted's ``transport.dataBuffer``,
``offset`` and ``_tempDataLen`` (unsent bytes), asyncio's ``loop._ready`` (queued callbacks).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from twisted.internet.interfaces import ISSLTransport

from realtime.node.outlet import AsgiSend, Outlet
from realtime.protocol.outframe import OutFrame

log = logging.getLogger(__name__)
FLUSH_BYTES = 64 * 1024  # corked bytes per socket past which they are written at once
# Seconds a slow consumer has to read its backlog (at most WEBSOCKET_MAX_BUFFER_KB plus the kernel's
# buffers) and answer the 4100 close frame behind it before the connection is dropped.
SLOW_CLOSE_TIMEOUT = 10


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
            corked = self.pending_bytes if self.pending is not None else 0
            if corked + _unsent(protocol.transport) > self.limit:
                # A slow consumer: the frames never written are dropped, so the close frame goes
                # right behind what Twisted already holds (a whole-frame boundary), and the peer
                # gets SLOW_CLOSE_TIMEOUT to read that far and answer it (autobahn's handshake
                # timeout, read per instance) instead of a reset after two seconds.
                self.pending = None
                self.pending_bytes = 0
                protocol.closeHandshakeTimeout = SLOW_CLOSE_TIMEOUT
            else:
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
    """Whether ``transport`` is a Twisted TCP connection without TLS (its socket may be written).

    A TLS endpoint's transport is Twisted's TLS wrapper, which forwards unknown attributes (``TLS``,
    ``socket``) to the TCP connection underneath: only the interface tells it apart."""
    return (
        getattr(transport, "TLS", True) is False
        and hasattr(transport, "socket")
        and not ISSLTransport.providedBy(transport)
    )


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


def daphne_outlet(send: AsgiSend, limits: tuple[int, int]) -> Outlet | None:
    """The corked outlet for a daphne WebSocket (registered by the server's fast paths)."""
    protocol = _daphne_protocol(send)
    return DaphneOutlet(protocol, limits[0]) if protocol is not None else None


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
