"""Per-connection cost trims for daphne's WebSocket protocol (autobahn), measured with py-spy.

autobahn's ``_connectionMade`` copies ~40 configuration attributes from the factory onto every
protocol instance (a large per-socket ``__dict__``) and pretty-prints them for a debug log line
whether or not debug logging is on: 15 % of the CPU of a connect and several KB per socket. Here
the options become class attributes of a protocol subclass (so nothing is copied per instance)
and the debug pretty-print is skipped unless debug logging is enabled.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

import autobahn.websocket.protocol as autobahn_protocol
from daphne import http_protocol as daphne_http
from daphne import server as daphne_server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import protocol, reactor
from twisted.protocols.policies import ProtocolWrapper
from twisted.web import http

from realtime.conf import server_settings
from realtime.node import drain as shutdown
from realtime.ratelimit import upgrade as upgrade_decision
from realtime.server import http_channel as publish_channel
from realtime.server import refusal
from realtime.server import upgrade_limit as ratelimit_upgrade

_original_pformat = autobahn_protocol.pformat

# What a WebSocket upgrade gets while the node drains: clients and load balancers retry elsewhere.
DRAINING_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 8\r\n"
    b"X-Health-Check: DRAINING\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"DRAINING"
)

CLOSE_HANDSHAKE_TIMEOUT = 2  # seconds, before whole-second rounding: a peer gets 1 - 2 s

# autobahn protocol options of the node's WebSocket factory, on either transport (``NodeServer``).
PROTOCOL_OPTIONS = {
    # Oversized messages get a 1009 close frame (protocol-v1 §1.3), not a bare TCP drop.
    "failByDrop": False,
    # autobahn's timers round deadlines down to the whole second (txaio's batched timer), so its
    # default 1 s gave a peer anywhere from 0 to 1 s to answer our close frame before the
    # connection was aborted.
    "closeHandshakeTimeout": CLOSE_HANDSHAKE_TIMEOUT,
}


def _lazy_pformat(value: object) -> str:
    if logging.getLogger("autobahn").isEnabledFor(logging.DEBUG):
        return _original_pformat(value)
    return ""


class _RequestPath:
    """What daphne still reads from the handshake request after the socket is open."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class LeanWebSocketProtocol(WebSocketProtocol):
    pong_at = 0.0

    def onPong(self, payload: bytes) -> None:  # noqa: N802 - autobahn's name
        self.pong_at = time.monotonic()  # read by the engine's heartbeat sweep (V2 native pings)

    def onOpen(self) -> None:  # noqa: N802 - autobahn's name
        super().onOpen()
        # The handshake's request text, header dicts and response text are not read again;
        # holding them would cost ~3 KB per idle socket.
        self.request = _RequestPath(self.request.path)
        self.http_headers = self.http_request_data = self.http_response_data = None
        self.clean_headers = None
        # daphne upgraded this socket from an HTTP channel, which keeps its request, header and
        # line buffers alive until its 60 s idle timer fires; the channel stays registered as the
        # transport's producer (write back-pressure), so release what it holds instead.
        channel = getattr(self.transport, "producer", None)
        if isinstance(channel, http.HTTPChannel):
            channel.setTimeout(None)
            channel._buffer = b""
            channel.requests = []


class LeanQueue:
    """daphne's per-socket input queue, without asyncio.Queue's four deques and Event (~3 KB).

    Only what daphne and an ASGI app use: ``put_nowait`` from the protocol, ``get`` from the app.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque | None = None
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item: Any) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(item)
            return
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)

    async def get(self) -> Any:
        items = self._items
        if items:
            item = items.popleft()
            if not items:
                self._items = None
            return item
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items


class UpgradeSniffer(protocol.Protocol):
    """First protocol of every TCP connection: WebSocket upgrades go straight to autobahn.

    daphne parses each upgrade request with Twisted's HTTP server, then serialises it again and
    feeds it to autobahn, which parses it a second time; a third of a connect's CPU. Here the
    request head is only sniffed: a ``GET`` with ``Upgrade: websocket`` is handed to daphne's
    WebSocket protocol directly, anything else to daphne's normal HTTP channel, unchanged.
    """

    MAX_HEAD = 16384
    HEAD_TIMEOUT = 10.0

    def __init__(self, factory: SniffingHTTPFactory, addr: Any) -> None:
        self.factory = factory
        self.addr = addr
        self.buffer = b""
        self.timer: Any = None
        self.deciding: asyncio.Future | None = None  # the rate limiter's pending verdict
        self.lost = False

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.timer = reactor.callLater(self.HEAD_TIMEOUT, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.buffer += data
        if self.deciding is not None:
            # Kept until the rate limiter's verdict on this upgrade arrives (a client sends
            # nothing before the 101; the cap only stops one that streams regardless).
            if len(self.buffer) > 4 * self.MAX_HEAD:
                self.transport.abortConnection()
            return
        end = self.buffer.find(b"\r\n\r\n")
        if refusal.bare_lf(self.buffer):
            self._stop_timer()
            self.buffer = b""
            refusal.refuse(self.transport, refusal.BAD_REQUEST)
            return
        if end < 0 and len(self.buffer) < self.MAX_HEAD:
            # A head that has not fully arrived yet, of any method: handed on in part, a head
            # whose bare-LF line ends arrive later would leave daphne waiting for a CRLF.
            return
        self._stop_timer()
        head = self.buffer[: end if end >= 0 else 0].lower()
        upgrade = head.startswith(b"get ") and is_upgrade(head)
        if upgrade and shutdown.draining:  # graceful shutdown: new sockets belong on another node
            self._refuse(DRAINING_RESPONSE)
            return
        if upgrade:
            # Per-IP upgrade limit: refused with a plain HTTP 429 before any handshake.
            target = self.buffer.split(b"\r\n", 1)[0].split(b" ")
            verdict = ratelimit_upgrade.check(
                head, getattr(self.addr, "host", None), target[1] if len(target) > 1 else None
            )
            if isinstance(verdict, bytes):
                self._refuse(verdict)
                return
            if verdict is not None:
                self.deciding = asyncio.ensure_future(self._upgrade_after(verdict, head))
                return
        self._hand_off(head, upgrade)

    async def _upgrade_after(self, verdict: Awaitable[bytes | None], head: bytes) -> None:
        refusal = await verdict
        if self.lost:
            return
        if refusal is not None:
            self._refuse(refusal)
        else:
            self._hand_off(head, True)

    def _refuse(self, response: bytes) -> None:
        self.buffer = b""
        self.transport.write(response)
        self.transport.loseConnection()

    def _hand_off(self, head: bytes, upgrade: bool) -> None:
        if upgrade:
            handler = self.factory.server.ws_factory.buildProtocol(self.transport.getPeer())
            target = self.buffer[4 : head.find(b" ", 4)]
            handler._raw_query_string = target.split(b"?", 1)[1] if b"?" in target else b""
        elif publish_channel.takes(self.buffer):
            handler = publish_channel.PublishChannel(
                self.factory.server,
                self._to_daphne_http,
                server_settings().HTTP_API_REQUEST_LIMIT_IN_MB << 20,
            )
        else:
            handler = self._daphne_http()
        data, self.buffer = self.buffer, b""
        _switch(self.transport, handler, data)

    def _daphne_http(self) -> Any:
        handler = daphne_http.HTTPFactory.buildProtocol(self.factory, self.addr)
        handler.requestFactory = BodyOnlyRequest
        return handler

    def _to_daphne_http(self, channel: Any, data: bytes) -> None:
        """A publish channel's connection goes on in daphne's HTTP channel, from ``data`` on."""
        _switch(channel.transport, self._daphne_http(), data)

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        self.lost = True
        self._stop_timer()


def is_upgrade(head: bytes) -> bool:
    """Whether a lower-cased request head asks for a WebSocket upgrade: an ``Upgrade`` field (any
    case, optional whitespace around the value, RFC 9110 §5.6.3) listing ``websocket``. Counted
    generously: the upgrade limit must see every request daphne or autobahn would upgrade."""
    if b"\r\nupgrade: websocket\r\n" in head:
        return True
    if b"upgrade" not in head:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if (
            colon
            and name.strip(b" \t") == b"upgrade"
            and any(token.strip(b" \t") == b"websocket" for token in value.split(b","))
        ):
            return True
    return False


def _switch(transport: Any, handler: Any, data: bytes) -> None:
    """Make ``handler`` the protocol of ``transport`` and feed it the bytes read so far."""
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = handler
    else:
        transport.protocol = handler
    handler.makeConnection(transport)
    handler.dataReceived(data)


class BodyOnlyRequest(daphne_http.WebRequest):
    """daphne's request, with the limits the tuned transport adds to every request of a connection
    that daphne's HTTP channel serves:

    * the body limit (``HTTP_API_REQUEST_LIMIT_IN_MB``) before the body is kept: a larger
      ``Content-Length`` is answered 413 at once, a chunked body as soon as it passes the limit
      (Twisted would spool it to a file and daphne then queue all of it in memory);
    * the per-IP upgrade limit and the drain refusal on an upgrade that is not the connection's
      first request (the sniffer saw only that one).

    It also skips Twisted's parse of form arguments, which daphne never reads (an ``email``-module
    Content-Type parse on every POST, about 9 % of a publish's CPU)."""

    refused = False
    received = 0
    max_body = 10 << 20  # HTTP_API_REQUEST_LIMIT_IN_MB in bytes, set by ``install``

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, parsePOSTFormSubmission=False)

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        if length is not None and length > self.max_body:
            self.content = io.BytesIO()
            self._refuse(refusal.too_large(self.max_body))
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.refused:
            return
        self.received += len(data)
        if self.received > self.max_body:
            self._refuse(refusal.too_large(self.max_body))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().requestReceived(command, path, version)

    def process(self) -> Any:
        upgrade = self.requestHeaders.getRawHeaders(b"upgrade")
        if upgrade and b"websocket" in (
            token.strip(b" \t").lower() for token in b",".join(upgrade).split(b",")
        ):
            if shutdown.draining:
                self._refuse(DRAINING_RESPONSE)
                return None
            verdict = ratelimit_upgrade.check(
                self._head(), getattr(self.getClientAddress(), "host", None), self.uri
            )
            if isinstance(verdict, bytes):
                self._refuse(verdict)
                return None
            if verdict is not None:
                self.notifyFinish().addErrback(self._gone)  # fires if the client goes meanwhile
                return asyncio.ensure_future(self._process_after(verdict))
        return super().process()

    async def _process_after(self, verdict: Awaitable[bytes | None]) -> None:
        refusal_bytes = await verdict
        if self.refused:
            return  # the client went away meanwhile
        if refusal_bytes is not None:
            self._refuse(refusal_bytes)
        else:
            super().process()

    def _gone(self, failure: Any) -> None:
        self.refused = True

    def _head(self) -> bytes:
        """The lower-cased request head the upgrade limit reads (the forwarding headers)."""
        lines = [self.method + b" " + self.uri]
        for name, values in self.requestHeaders.getAllRawHeaders():
            lines.extend(name + b": " + value for value in values)
        return b"\r\n".join(lines).lower()

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` on the raw connection, which daphne's channel then never reads again."""
        self.refused = True
        channel = self.channel
        channel.setTimeout(None)
        refusal.refuse(channel.transport, response)


class SniffingHTTPFactory(daphne_http.HTTPFactory):
    def buildProtocol(self, addr: Any) -> UpgradeSniffer:  # noqa: N802 - Twisted's name
        return UpgradeSniffer(self, addr)

    def log(self, request: Any) -> None:
        """Twisted's combined-format access line, built only when something reads it: at daphne's
        verbosity 0 and 1 its log goes nowhere, and formatting the line cost ~3 % of a publish."""
        if self.logPath is not None or self.server.verbosity > 1:
            super().log(request)


class TunedServer(daphne_server.Server):
    def create_application(self, protocol: Any, scope: dict) -> LeanQueue | None:
        """daphne's ``create_application`` with the lean input queue."""
        assert "application_instance" not in self.connections[protocol]  # noqa: S101 - daphne's check
        input_queue = LeanQueue()
        scope.setdefault("asgi", {"version": "3.0"})
        instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
        return input_queue


class TunedWebSocketFactory(WebSocketFactory):
    protocol = LeanWebSocketProtocol

    def setProtocolOptions(self, **options) -> None:  # noqa: N802 - autobahn's name
        for name, value in PROTOCOL_OPTIONS.items():
            options.setdefault(name, value)
        super().setProtocolOptions(**options)
        attrs = {}
        for name in WebSocketProtocol.CONFIG_ATTRS:
            value = getattr(self, name)
            # Plain functions (e.g. perMessageCompressionAccept) must not become bound methods.
            attrs[name] = staticmethod(value) if callable(value) else value
        self.protocol = type("TunedWebSocketProtocol", (LeanWebSocketProtocol,), attrs)


def _plain(value: object) -> str:
    return ""


def install() -> None:
    """Make daphne build tuned protocols (call before ``daphne.server.Server.run``)."""
    autobahn_protocol.pformat = _lazy_pformat
    if not logging.getLogger("autobahn").isEnabledFor(logging.DEBUG):
        # autobahn colours function names for its debug lines on every connect, eagerly
        # (about 5 % of a connect's CPU); only worth it when those lines are shown.
        import autobahn.twisted.websocket as autobahn_twisted

        for module in (autobahn_protocol, autobahn_twisted):
            module.hltype = module.hlval = _plain
    BodyOnlyRequest.max_body = server_settings().HTTP_API_REQUEST_LIMIT_IN_MB << 20
    daphne_server.WebSocketFactory = TunedWebSocketFactory
    daphne_server.HTTPFactory = SniffingHTTPFactory
    # The sniffer applies the upgrade limit: the WebSocket entry must not count upgrades again.
    upgrade_decision.applied_by_listener()
