"""Framework contracts: every private attribute, internal signature or monkeypatch of daphne,
Twisted, autobahn, asyncio, asgiref, Django, django-prometheus and prometheus_client that the
server relies on (``realtime/server/``, the metrics middleware and ``realtime/node/metrics.py``),
each exercised for real, so that an upgrade which changes one fails here, with the module to fix,
instead of somewhere in production. ``requirements.txt`` pins these frameworks exactly; to upgrade
one, bump its pin and run this file.

Twisted, daphne, autobahn, asyncio and prometheus_client are checked in this process, on real
objects: Twisted TCP transports over a loopback connection (driven by calling ``doRead`` and
``doWrite`` by hand, the reactor never runs), real daphne servers and autobahn protocols doing a
real opening handshake. The Django contracts need Django set up, which this test process stays
without (``tests/test_history_store.py`` sets it up with its own database): they run together in
one fresh interpreter and report a verdict per contract.
"""

from __future__ import annotations

import asyncio
import dis
import hashlib
import inspect
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

# daphne installs Twisted's asyncio reactor when imported; it must come before the reactor.
import daphne.server as daphne_server  # isort:skip
import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
from daphne import http_protocol as daphne_http
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.internet import protocol as twisted_protocol
from twisted.internet import reactor, tcp
from twisted.web import http

from realtime.node import metrics as node_metrics
from realtime.protocol.outframe import OutFrame
from realtime.server import outlets, tuning
from realtime.server.http_channel import PublishChannel

ROOT = Path(__file__).resolve().parent.parent


def broken(framework: str, what: str, where: str) -> str:
    return f"{framework} no longer {what}: {where} needs updating"


# -- helpers: real Twisted TCP transports ------------------------------------------------------------
class Connections:
    """Loopback TCP connections whose server side is a real ``twisted.internet.tcp.Server``."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.opened: list[tuple[tcp.Server, socket.socket]] = []

    def open(self, proto: twisted_protocol.Protocol) -> tuple[tcp.Server, socket.socket]:
        peer = socket.create_connection(self.listener.getsockname(), timeout=2)
        ours, address = self.listener.accept()
        ours.setblocking(False)
        transport = tcp.Server(ours, proto, address, None, len(self.opened) + 1, reactor)
        proto.makeConnection(transport)
        self.opened.append((transport, peer))
        return transport, peer

    def close(self) -> None:
        for transport, peer in self.opened:
            transport.stopReading()
            transport.stopWriting()
            transport.socket.close()
            peer.close()
        self.listener.close()


@pytest.fixture
def connections() -> Iterator[Connections]:
    pool = Connections()
    yield pool
    pool.close()
    for call in reactor.getDelayedCalls():  # timers the protocols started (the reactor never ran)
        if call.active():
            call.cancel()


def feed(transport: tcp.Server, peer: socket.socket, data: bytes) -> None:
    """The peer sends ``data``; Twisted reads it (as the reactor would on readability)."""
    peer.sendall(data)
    time.sleep(0.01)
    transport.doRead()


def received(peer: socket.socket, size: int | None = None, timeout: float = 2.0) -> bytes:
    """Everything the peer can read now (at least ``size`` bytes when given)."""
    data = b""
    deadline = time.monotonic() + timeout
    peer.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            chunk = peer.recv(1 << 20)
        except (TimeoutError, BlockingIOError):
            if size is None or len(data) >= size:
                break
            continue
        if not chunk:
            break
        data += chunk
    return data


# -- Twisted transports (realtime/server/outlets.py, http_channel.py) ---------------------------------
def test_twisted_transport_unsent_bytes_are_databuffer_offset_and_tempdatalen(connections):
    """``outlets._unsent``: ``len(dataBuffer) - offset + _tempDataLen`` is what Twisted holds."""
    transport, peer = connections.open(twisted_protocol.Protocol())
    where = "realtime/server/outlets.py _unsent"
    for name in ("dataBuffer", "offset", "_tempDataLen"):
        assert hasattr(transport, name), broken("Twisted", f"has transport.{name}", where)
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    total = 1 << 18
    transport.write(b"x" * total)
    assert outlets._unsent(transport) == total, broken("Twisted", "counts write() in _tempDataLen", where)
    transport.doWrite()  # the kernel takes part of it; the rest stays in dataBuffer past offset
    left = outlets._unsent(transport)
    assert 0 < left < total, broken("Twisted", "keeps a partial write in dataBuffer/offset", where)
    got = len(received(peer, total - left))
    assert got == total - left, broken("Twisted", "report unsent bytes as dataBuffer - offset", where)
    while outlets._unsent(transport):
        transport.doWrite()
        got += len(received(peer))
    got += len(received(peer, total - got))
    assert got == total, broken("Twisted", "drain dataBuffer to zero unsent bytes", where)


def test_twisted_transport_socket_and_disconnecting(connections):
    """``outlets.write_through``: ``transport.socket`` is the connected socket (writing to it reaches
    the peer), ``transport.disconnecting`` turns true on ``loseConnection``."""
    transport, peer = connections.open(twisted_protocol.Protocol())
    where = "realtime/server/outlets.py write_through"
    assert isinstance(transport.socket, socket.socket), broken("Twisted", "exposes transport.socket", where)
    assert not transport.disconnecting, broken("Twisted", "starts with transport.disconnecting false", where)
    assert outlets.write_through(transport, b"hello") == 0
    assert received(peer, 5) == b"hello", broken("Twisted", "hands transport.socket for writes", where)
    transport.write(b"held")  # Twisted holds bytes: later writes queue behind them
    assert outlets.write_through(transport, b"!") == 5, broken(
        "Twisted", "keeps written bytes in _tempDataLen", where
    )
    transport.loseConnection()
    assert transport.disconnecting, broken("Twisted", "sets transport.disconnecting on loseConnection", where)


def test_twisted_transport_tls_attribute_tells_plain_tcp_from_tls(connections):
    """``outlets.plain_tcp``: a TCP transport has ``TLS`` False and a socket; a TLS endpoint's
    transport (Twisted's TLS wrapper, which forwards ``TLS`` and ``socket`` to the TCP connection
    underneath) must not count as plain: its bytes have to be encrypted."""
    from twisted.internet.ssl import CertificateOptions
    from twisted.protocols.tls import TLSMemoryBIOFactory

    where = "realtime/server/outlets.py plain_tcp"
    transport, _ = connections.open(twisted_protocol.Protocol())
    assert transport.TLS is False, broken("Twisted", "marks a TCP transport TLS = False", where)
    assert outlets.plain_tcp(transport), broken("Twisted", "gives a TCP transport TLS and socket", where)
    inner = twisted_protocol.Protocol()
    tls = TLSMemoryBIOFactory(CertificateOptions(), True, twisted_protocol.Factory.forProtocol(lambda: inner))
    connections.open(tls.buildProtocol(None))
    assert inner.transport is not None and inner.transport is not transport
    assert not outlets.plain_tcp(inner.transport), broken(
        "Twisted", "marks TLS transports ISSLTransport", where
    )


def test_twisted_transport_protocol_switch(connections):
    """``tuning._switch``: assigning ``transport.protocol`` makes Twisted deliver later reads to it."""
    first, second = twisted_protocol.Protocol(), _Recorder()
    transport, peer = connections.open(first)
    tuning._switch(transport, second, b"head")
    feed(transport, peer, b"more")
    assert second.data == [b"head", b"more"], broken(
        "Twisted", "reads into transport.protocol.dataReceived", "realtime/server/tuning.py _switch"
    )


class _Recorder(twisted_protocol.Protocol):
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.data.append(data)


def test_twisted_http_channel_producer_buffer_requests_and_timeout(connections):
    """``LeanWebSocketProtocol.onOpen`` releases the upgraded HTTP channel: it is the transport's
    ``producer``, keeps partial lines in ``_buffer`` and requests in ``requests``, and
    ``setTimeout(None)`` cancels its idle timer."""
    where = "realtime/server/tuning.py LeanWebSocketProtocol.onOpen"
    server = _daphne_server()
    generic = daphne_http.HTTPFactory(server).buildProtocol(None)  # HTTP/1.1 or HTTP/2 inside
    transport, peer = connections.open(generic)
    channel = transport.producer
    assert isinstance(channel, http.HTTPChannel), broken(
        "Twisted", "registers HTTPChannel as transport.producer", where
    )
    feed(transport, peer, b"GET / HTTP/1.1\r\nHost: exa")
    assert isinstance(channel.requests, list) and len(channel.requests) == 1, broken(
        "Twisted", "keeps HTTPChannel.requests as a list of requests", where
    )
    assert bytes(channel._buffer) == b"Host: exa", broken(
        "Twisted", "buffers partial lines in HTTPChannel._buffer", where
    )
    timers = [
        c for c in reactor.getDelayedCalls() if c.active() and getattr(c.func, "__self__", None) is channel
    ]
    assert timers, broken("Twisted", "starts an idle timer for HTTPChannel (TimeoutMixin)", where)
    channel.setTimeout(None)
    assert not any(c.active() for c in timers), broken(
        "Twisted", "cancels the idle timer on setTimeout(None)", where
    )


def test_twisted_request_takes_parse_post_form_submission(connections):
    """``BodyOnlyRequest`` passes ``parsePOSTFormSubmission=False`` through daphne's ``WebRequest``
    to Twisted's ``Request``, which then leaves a form body unparsed."""
    where = "realtime/server/tuning.py BodyOnlyRequest"

    class Probe(tuning.BodyOnlyRequest):
        def process(self) -> None:
            pass

    transport, _ = connections.open(daphne_http.HTTPFactory(_daphne_server()).buildProtocol(None))
    channel = transport.producer
    for cls, parsed in (
        (Probe, False),
        (type("Stock", (Probe,), {"__init__": daphne_http.WebRequest.__init__}), True),
    ):
        request = cls(channel)
        request.requestHeaders.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
        request.gotLength(7)
        request.handleContentChunk(b"a=1&b=2")
        request.requestReceived(b"POST", b"/apps/1/events", b"HTTP/1.1")
        assert bool(request.args) is parsed, broken(
            "Twisted", "honour Request(parsePOSTFormSubmission=False)", where
        )
        assert request.content.read() == b"a=1&b=2"


# -- asyncio (realtime/server/outlets.py) -------------------------------------------------------------
def test_asyncio_loop_ready_holds_the_callbacks_due():
    """``outlets._uncork`` reads ``loop._ready``: the callbacks due this turn or the next."""
    where = "realtime/server/outlets.py _uncork"
    loop = asyncio.new_event_loop()
    try:
        assert hasattr(loop, "_ready"), broken("asyncio", "has loop._ready", where)
        assert not loop._ready
        loop.call_soon(lambda: None)
        assert len(loop._ready) == 1, broken("asyncio", "queues call_soon callbacks in loop._ready", where)
        loop.run_until_complete(asyncio.sleep(0))
        assert not loop._ready, broken("asyncio", "empties loop._ready as callbacks run", where)
    finally:
        loop.close()


# -- daphne (realtime/server/outlets.py, tuning.py, node.py, http_channel.py) --------------------------
def _daphne_server(cls: type = daphne_server.Server, application=None) -> daphne_server.Server:
    server = cls(application=application, endpoints=["tcp:port=0"], server_name="contract")
    server.connections = {}  # daphne builds it in run()
    return server


HANDSHAKE = (
    b"GET /app/key?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Handshake:
    """One WebSocket connection accepted by a real daphne server and autobahn protocol (the stock
    classes or the tuned ones) over a real TCP transport; ``app`` sees what daphne hands it."""

    def __init__(self, connections: Connections, tuned: bool) -> None:
        self.scope: dict | None = None
        self.send = None
        self.server = _daphne_server(tuning.TunedServer if tuned else daphne_server.Server, self.app)
        factory_cls = tuning.TunedWebSocketFactory if tuned else WebSocketFactory
        self.factory = factory_cls(self.server, server="contract")
        self.factory.setProtocolOptions(openHandshakeTimeout=0, allowNullOrigin=True)
        self.server.ws_factory = self.factory
        self.protocol = self.factory.buildProtocol(None)
        self.protocol._raw_query_string = b"protocol=7"
        self.transport, self.peer = connections.open(self.protocol)

    async def app(self, scope, receive, send) -> None:
        self.scope, self.send = scope, send
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()

    async def open(self) -> bytes:
        feed(self.transport, self.peer, HANDSHAKE)
        for _ in range(5):
            await asyncio.sleep(0)
        self.transport.doWrite()
        return received(self.peer, 12)

    def flush(self) -> bytes:
        self.transport.doWrite()
        return received(self.peer)


@pytest.fixture
def reset_outlets() -> Iterator[None]:
    yield
    outlets._corked.clear()
    outlets._last_write = float("-inf")


@pytest.mark.parametrize("tuned", [False, True], ids=["stock", "tuned"])
def test_daphne_hands_the_app_partial_handle_reply_and_the_outlet_writes_to_it(
    connections, reset_outlets, tuned
):
    """daphne hands each app ``partial(server.handle_reply, protocol)`` (``outlets._daphne_protocol``
    recognises exactly that), reads the query string from ``protocol._raw_query_string`` (set by
    ``UpgradeSniffer``), and the corked outlet's frames, ping and close reach the socket."""
    where = "realtime/server/outlets.py _daphne_protocol"

    async def main() -> None:
        ws = Handshake(connections, tuned)
        answer = await ws.open()
        assert answer.startswith(b"HTTP/1.1 101"), answer
        send = ws.send
        assert (
            isinstance(send, partial) and send.func == ws.server.handle_reply and send.args == (ws.protocol,)
        ), broken("daphne 4.x", "hands the app partial(server.handle_reply, protocol)", where)
        assert ws.scope["query_string"] == b"protocol=7", broken(
            "daphne",
            "reads protocol._raw_query_string into the scope",
            "realtime/server/tuning.py UpgradeSniffer._hand_off",
        )
        assert ws.protocol.state == autobahn_protocol.WebSocketProtocol.STATE_OPEN
        outlet = outlets.daphne_outlet(send, (1 << 20, 0))
        assert isinstance(outlet, outlets.DaphneOutlet), broken("daphne", "hands a recognisable send", where)
        assert outlet.direct, broken("Twisted", "gives daphne's protocol a plain TCP transport", where)
        assert outlet.send(OutFrame('{"event":"a"}')) and outlet.send(OutFrame('{"event":"b"}'))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert received(ws.peer, 30) == b'\x81\x0d{"event":"a"}\x81\x0d{"event":"b"}', broken(
            "daphne/autobahn", "let the outlet write frames to transport.socket", "realtime/server/outlets.py"
        )
        assert outlet.native_ping() and ws.flush() == b"\x89\x00", broken(
            "autobahn",
            "sends an empty ping on sendPing()",
            "realtime/server/outlets.py DaphneOutlet.native_ping",
        )
        outlet.close(4100, "slow")
        assert ws.flush() == b"\x88\x06\x10\x04slow", broken(
            "autobahn",
            "sends sendClose(code=, reason=) as a close frame",
            "realtime/server/outlets.py DaphneOutlet.close",
        )
        assert ws.protocol.state == autobahn_protocol.WebSocketProtocol.STATE_CLOSING
        assert ws.protocol.closeHandshakeTimeoutCall is not None, broken(
            "autobahn", "times the close handshake with closeHandshakeTimeout", "realtime/server/tuning.py"
        )
        for details in ws.server.connections.values():
            details["application_instance"].cancel()
        await asyncio.sleep(0)

    asyncio.run(main())


def test_tuned_protocol_releases_handshake_state_daphne_does_not_read_again(connections):
    """``LeanWebSocketProtocol.onOpen`` drops autobahn's handshake state (``http_headers``,
    ``http_request_data``, ``http_response_data``) and daphne's ``clean_headers``, and keeps only
    ``request.path``: daphne must still close the socket cleanly with that."""
    where = "realtime/server/tuning.py LeanWebSocketProtocol.onOpen"

    async def main() -> None:
        ws = Handshake(connections, tuned=True)
        await ws.open()
        proto = ws.protocol
        for name in ("http_headers", "http_request_data", "http_response_data", "clean_headers"):
            assert name in vars(proto) and getattr(proto, name) is None, broken(
                "autobahn/daphne", f"sets {name}", where
            )
        assert isinstance(proto.request, tuning._RequestPath)
        proto.connectionLost(twisted_protocol.connectionDone)  # daphne's onClose reads request.path
        assert ws.server.connections[proto].get("disconnected"), broken(
            "daphne", "closes with request.path only", where
        )
        ws.server.connections[proto]["application_instance"].cancel()
        await asyncio.sleep(0)

    asyncio.run(main())


def test_daphne_create_application_is_the_one_tuned_server_copies():
    """``TunedServer.create_application`` is daphne's with a lean input queue: the stock method must
    still be the one it was copied from."""
    source = inspect.getsource(daphne_server.Server.create_application)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == "f1e300b4ecf636c8", broken(
        "daphne",
        f"has the create_application TunedServer copies (digest {digest})",
        "realtime/server/tuning.py TunedServer.create_application (re-sync it, then this digest)",
    )
    assert list(inspect.signature(daphne_server.Server.create_application).parameters) == [
        "self",
        "protocol",
        "scope",
    ]


@pytest.mark.parametrize("cls", [daphne_server.Server, tuning.TunedServer], ids=["stock", "tuned"])
def test_daphne_create_application_and_connections(cls):
    """``Server.connections`` maps each protocol to its details; ``create_application`` stores the
    app's future there and returns a queue with ``put_nowait``/``get`` (both servers alike);
    ``protocol_disconnected`` marks ``disconnected``, which ``NodeServer._open_websockets`` reads."""
    where = "realtime/server/tuning.py TunedServer / node.py NodeServer._open_websockets"
    seen: list[dict] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope)
        seen.append(await receive())

    async def main() -> None:
        server = _daphne_server(cls, app)
        proto = object()
        server.protocol_connected(proto)
        queue = server.create_application(proto, {"type": "websocket"})
        queue.put_nowait({"type": "websocket.connect"})
        task = server.connections[proto]["application_instance"]
        assert isinstance(task, asyncio.Future), broken(
            "daphne", "stores application_instance in connections", where
        )
        await task
        assert seen == [{"type": "websocket", "asgi": {"version": "3.0"}}, {"type": "websocket.connect"}]
        server.protocol_disconnected(proto)
        assert "disconnected" in server.connections[proto], broken(
            "daphne", "marks connections[p]['disconnected']", where
        )

    asyncio.run(main())


def test_daphne_server_run_builds_factories_from_module_globals():
    """``tuning.install`` replaces ``daphne.server.HTTPFactory`` and ``WebSocketFactory``: ``run``
    must look them up as module globals when it runs, and set ``connections``, ``http_factory`` and
    ``ws_factory`` (read by ``NodeServer`` and ``UpgradeSniffer``)."""
    where = "realtime/server/tuning.py install / node.py NodeServer"
    instructions = list(dis.get_instructions(daphne_server.Server.run))
    globals_read = {i.argval for i in instructions if i.opname == "LOAD_GLOBAL"}
    stored = {i.argval for i in instructions if i.opname == "STORE_ATTR"}
    for name in ("HTTPFactory", "WebSocketFactory"):
        assert name in globals_read, broken("daphne", f"looks up daphne.server.{name} at run time", where)
    for name in ("connections", "http_factory", "ws_factory"):
        assert name in stored, broken("daphne", f"sets Server.{name} in run()", where)


def test_daphne_server_attributes_the_server_layer_reads():
    """``PublishChannel`` serves with daphne's ``application``, ``root_path`` and ``server_name``;
    ``SniffingHTTPFactory.log`` reads ``verbosity``; ``NodeServer`` passes ``signal_handlers``."""
    where = "realtime/server/http_channel.py PublishChannel / tuning.py SniffingHTTPFactory / node.py"
    server = daphne_server.Server(
        application="app", endpoints=["tcp:port=0"], signal_handlers=False, server_name="n"
    )
    for name, value in (("application", "app"), ("root_path", ""), ("server_name", "n"), ("verbosity", 1)):
        assert getattr(server, name, None) == value, broken("daphne", f"keeps Server.{name}", where)
    assert server.signal_handlers is False
    assert PublishChannel(server, None, 1).server is server


def test_daphne_http_factory_build_protocol_on_another_factory():
    """``UpgradeSniffer._daphne_http`` calls ``daphne.http_protocol.HTTPFactory.buildProtocol`` on the
    sniffing factory: it must return Twisted's HTTP channel bound to that factory, with daphne's
    request class; ``SniffingHTTPFactory.log`` relies on Twisted's ``logPath`` and ``log``."""
    where = "realtime/server/tuning.py UpgradeSniffer._daphne_http / SniffingHTTPFactory.log"
    factory = tuning.SniffingHTTPFactory(_daphne_server())
    channel = daphne_http.HTTPFactory.buildProtocol(factory, None)
    assert channel.factory is factory and callable(channel.dataReceived), broken(
        "daphne", "builds an HTTP channel for the given factory", where
    )
    assert channel.requestFactory is daphne_http.WebRequest, broken(
        "daphne", "sets requestFactory = WebRequest", where
    )
    assert factory.logPath is None and callable(http.HTTPFactory.log), broken(
        "Twisted", "has HTTPFactory.logPath/log", where
    )


# -- autobahn (realtime/server/tuning.py, outlets.py) ----------------------------------------------------
def test_autobahn_state_numbers():
    """``DaphneOutlet`` compares ``protocol.state`` with autobahn's numbers as literals."""
    states = autobahn_protocol.WebSocketProtocol
    assert (states.STATE_CONNECTING, states.STATE_OPEN) == (1, 3), broken(
        "autobahn", "numbers STATE_CONNECTING 1 and STATE_OPEN 3", "realtime/server/outlets.py DaphneOutlet"
    )


def test_autobahn_copies_config_attrs_only_when_absent(connections):
    """``TunedWebSocketFactory`` turns ``WebSocketProtocol.CONFIG_ATTRS`` into class attributes;
    autobahn's ``_connectionMade`` must then copy nothing onto the instance."""
    where = "realtime/server/tuning.py TunedWebSocketFactory"
    config = set(WebSocketProtocol.CONFIG_ATTRS)
    assert "closeHandshakeTimeout" in config and "failByDrop" in config
    stock = WebSocketFactory(_daphne_server(), server="contract").buildProtocol(None)
    connections.open(stock)
    assert config <= set(vars(stock)), broken(
        "autobahn", "copies CONFIG_ATTRS from the factory per socket", where
    )
    factory = tuning.TunedWebSocketFactory(_daphne_server(), server="contract")
    factory.setProtocolOptions()
    tuned = factory.buildProtocol(None)
    connections.open(tuned)
    assert not config & set(vars(tuned)), broken(
        "autobahn", "skips CONFIG_ATTRS the protocol class has", where
    )
    assert (tuned.closeHandshakeTimeout, tuned.failByDrop) == (tuning.CLOSE_HANDSHAKE_TIMEOUT, False), broken(
        "autobahn", "accepts closeHandshakeTimeout/failByDrop in setProtocolOptions", where
    )


def test_autobahn_reads_pformat_hltype_and_hlval_as_module_globals(connections, monkeypatch):
    """``tuning.install`` replaces ``pformat`` in ``autobahn.websocket.protocol`` and ``hltype``/``hlval``
    there and in ``autobahn.twisted.websocket``: autobahn must call them through those globals."""
    where = "realtime/server/tuning.py install"
    calls: list[str] = []
    for module in (autobahn_protocol, autobahn_twisted):
        for name in ("hltype", "hlval") + (("pformat",) if module is autobahn_protocol else ()):
            assert hasattr(module, name), broken("autobahn", f"has {module.__name__}.{name}", where)
            label = f"{module.__name__}.{name}"
            monkeypatch.setattr(module, name, lambda value, label=label: calls.append(label) or "")
    proto = WebSocketFactory(_daphne_server(), server="contract").buildProtocol(None)
    connections.open(proto)
    for label in (
        "autobahn.websocket.protocol.pformat",
        "autobahn.twisted.websocket.hltype",
        "autobahn.twisted.websocket.hlval",
    ):
        assert label in calls, broken("autobahn", f"calls {label} on connect", where)
    transport, peer = connections.opened[-1]
    feed(transport, peer, HANDSHAKE[:20])
    assert "autobahn.websocket.protocol.hltype" in calls or "autobahn.websocket.protocol.hlval" in calls, (
        broken("autobahn", "calls autobahn.websocket.protocol.hltype/hlval on data", where)
    )


# -- prometheus_client (realtime/node/metrics.py) ------------------------------------------------------
def test_prometheus_histogram_buckets_sum_and_upper_bounds():
    """``_add_observations`` adds per-bucket counts to ``child._buckets[i]`` and the total to
    ``child._sum``; ``_PendingHistogram`` bisects ``child._upper_bounds``: the series must equal
    those of ``observe``."""
    where = "realtime/node/metrics.py _add_observations / _PendingHistogram"
    registry = CollectorRegistry()
    direct = Histogram("contract_direct", "d", ["app"], buckets=(0.1, 1.0), registry=registry)
    pending = Histogram("contract_pending", "p", ["app"], buckets=(0.1, 1.0), registry=registry)
    child = pending.labels("a")
    assert list(child._upper_bounds) == [0.1, 1.0, float("inf")], broken(
        "prometheus_client", "has _upper_bounds", where
    )
    assert len(child._buckets) == 3 and hasattr(child._sum, "inc"), broken(
        "prometheus_client", "has _buckets/_sum", where
    )
    metric = node_metrics.PendingMetric(pending)
    try:
        for value in (0.05, 0.1, 0.5, 2.0, 3.0):
            direct.labels("a").observe(value)
            metric.labels("a").observe(value)
        metric.flush()
    finally:
        node_metrics._pending.remove(metric)
    for le in ("0.1", "1.0", "+Inf"):
        got = registry.get_sample_value("contract_pending_bucket", {"app": "a", "le": le})
        assert got == registry.get_sample_value("contract_direct_bucket", {"app": "a", "le": le}), broken(
            "prometheus_client", "keeps per-bucket counts in _buckets", where
        )
    assert registry.get_sample_value("contract_pending_sum", {"app": "a"}) == pytest.approx(5.65)


def test_prometheus_metric_labelnames():
    """``PendingMetric`` reads a metric's label names from ``metric._labelnames``."""
    counter = Counter("contract_counter", "c", ["app_id", "code"], registry=CollectorRegistry())
    assert tuple(counter._labelnames) == ("app_id", "code"), broken(
        "prometheus_client", "has metric._labelnames", "realtime/node/metrics.py PendingMetric"
    )


# -- Django, asgiref, django-prometheus, Channels (in a fresh interpreter with Django set up) ----------
DJANGO_PROBE = r"""
import asyncio, inspect, json, threading, traceback
from concurrent.futures import ThreadPoolExecutor
import django
django.setup()
from django.conf import settings

results = {}

def check(name):
    def run(fn):
        try:
            fn()
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc(limit=3)
    return run

@check("base_handler_middleware_chain_ends_in_get_response_async")
def _():
    from django.core.handlers.base import BaseHandler
    class Handler(BaseHandler):
        async def _get_response_async(self, request):
            return ("innermost", request)
    saved, settings.MIDDLEWARE = settings.MIDDLEWARE, []
    try:
        handler = Handler()
        handler.load_middleware(is_async=True)
    finally:
        settings.MIDDLEWARE = saved
    assert handler._view_middleware == []
    assert asyncio.run(handler._middleware_chain("req")) == ("innermost", "req")

@check("load_middleware_reads_settings_middleware_at_call_time")
def _():
    from realtime.server.api_handler import APIHandler
    full = list(settings.MIDDLEWARE)
    handler = APIHandler()
    assert settings.MIDDLEWARE == full
    owners = {type(hook.__self__).__name__ for hook in handler._view_middleware}
    assert owners == {"PrometheusAfterMiddleware"}, owners
    owners = {type(hook.__self__).__name__ for hook in handler.publishes._view_middleware}
    assert owners == {"PrometheusAfterMiddleware"}, owners

@check("asgi_handler_calls_handle_and_send_response")
def _():
    from realtime.server.api_handler import APIHandler
    calls, sent = [], []
    class Handler(APIHandler):
        async def handle(self, scope, receive, send):
            calls.append("handle")
            await super().handle(scope, receive, send)
        async def send_response(self, response, send):
            calls.append("send_response")
            await super().send_response(response, send)
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)
    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "GET", "path": "/live", "raw_path": b"/live", "query_string": b"",
             "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "scheme": "http",
             "http_version": "1.1", "root_path": "", "asgi": {"version": "3.0"}}
    asyncio.run(Handler()(scope, receive, send))
    assert calls == ["handle", "send_response"], calls
    assert sent[0]["status"] == 200 and (b"Content-Length", b"0") in sent[0]["headers"], sent[0]

@check("thread_sensitive_context_takes_an_executor")
def _():
    from asgiref.sync import ThreadSensitiveContext, sync_to_async
    executor = ThreadPoolExecutor(1)
    own = executor.submit(threading.get_ident).result()
    async def main():
        async with ThreadSensitiveContext(executor=executor):
            return await sync_to_async(threading.get_ident)()
    assert asyncio.run(main()) == own
    executor.shutdown()

@check("middleware_mixin_marks_async_instances_and_keeps_hooks")
def _():
    from asgiref.sync import iscoroutinefunction
    from realtime.api.metrics_middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware
    async def get_response(request):
        return None
    for cls in (PrometheusBeforeMiddleware, PrometheusAfterMiddleware):
        middleware = cls(get_response)
        assert iscoroutinefunction(middleware), cls
        assert middleware.get_response is get_response
        assert callable(middleware.process_request) and callable(middleware.process_response)
        assert not iscoroutinefunction(cls(lambda request: None))

@check("django_prometheus_metrics_cls_and_get_instance")
def _():
    from django_prometheus import middleware as stock
    from prometheus_client import Counter, Histogram
    from realtime.api.metrics_middleware import PendingRequestMetrics, PrometheusBeforeMiddleware
    from realtime.node.metrics import PendingMetric
    metrics = stock.Metrics.get_instance()
    assert metrics is stock.Metrics.get_instance()
    series = [name for name, value in vars(metrics).items() if isinstance(value, Counter | Histogram)]
    assert len(series) >= 10, series
    middleware = PrometheusBeforeMiddleware(lambda request: None)
    assert isinstance(middleware.metrics, PendingRequestMetrics)
    assert all(isinstance(getattr(middleware.metrics, name), PendingMetric) for name in series)

@check("django_prometheus_process_view_is_sync")
def _():
    from asgiref.sync import iscoroutinefunction
    from django_prometheus.middleware import PrometheusAfterMiddleware
    hook = PrometheusAfterMiddleware.process_view
    assert not iscoroutinefunction(hook)
    assert list(inspect.signature(hook).parameters) == ["self", "request", "view_func", "view_args", "view_kwargs"]

@check("log_response_takes_a_response_without_a_request")
def _():
    from django.utils.log import log_response
    from realtime.server.fast_publish import JSONAnswer
    answer = JSONAnswer(404, b"{}", {})
    log_response("%s: %s", answer.reason_phrase, "/apps/1/events", response=answer)
    assert inspect.signature(log_response).parameters["request"].default is None

@check("channels_async_consumer_needs_no_init")
def _():
    from channels.consumer import AsyncConsumer
    from realtime.websocket.consumer import RealtimeConsumer
    assert "__init__" not in vars(AsyncConsumer)
    assert RealtimeConsumer.__call__ is not AsyncConsumer.__call__

print(json.dumps(results))
"""

DJANGO_CONTRACTS = {
    "base_handler_middleware_chain_ends_in_get_response_async": (
        "Django 5.2",
        "builds BaseHandler._middleware_chain around _get_response_async with _view_middleware",
        "realtime/server/fast_publish.py PublishServer",
    ),
    "load_middleware_reads_settings_middleware_at_call_time": (
        "Django 5.2",
        "reads settings.MIDDLEWARE when load_middleware runs",
        "realtime/server/api_handler.py APIHandler.load_middleware",
    ),
    "asgi_handler_calls_handle_and_send_response": (
        "Django 5.2",
        "serves through ASGIHandler.handle(scope, receive, send) and send_response(response, send)",
        "realtime/server/api_handler.py APIHandler",
    ),
    "thread_sensitive_context_takes_an_executor": (
        "asgiref",
        "runs thread-sensitive calls on ThreadSensitiveContext(executor=...)",
        "realtime/server/api_handler.py APIHandler.__call__",
    ),
    "middleware_mixin_marks_async_instances_and_keeps_hooks": (
        "Django 5.2",
        "marks MiddlewareMixin instances coroutine functions for async get_response",
        "realtime/api/metrics_middleware.py _InlineHooks",
    ),
    "django_prometheus_metrics_cls_and_get_instance": (
        "django-prometheus",
        "builds its middleware metrics from metrics_cls.get_instance() with the series as attributes",
        "realtime/api/metrics_middleware.py PendingRequestMetrics",
    ),
    "django_prometheus_process_view_is_sync": (
        "django-prometheus",
        "has a sync PrometheusAfterMiddleware.process_view(request, view_func, *args, **kwargs)",
        "realtime/api/metrics_middleware.py PrometheusAfterMiddleware.process_view",
    ),
    "log_response_takes_a_response_without_a_request": (
        "Django 5.2",
        "logs log_response(..., response=) without a request",
        "realtime/server/fast_publish.py PublishServer.serve",
    ),
    "channels_async_consumer_needs_no_init": (
        "Channels",
        "lets AsyncConsumer subclasses skip its __init__ and replace __call__",
        "realtime/websocket/consumer.py RealtimeConsumer",
    ),
}


@pytest.fixture(scope="module")
def django_verdicts() -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "sockudo_project.settings"}
    result = subprocess.run(
        [sys.executable, "-c", DJANGO_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("contract", sorted(DJANGO_CONTRACTS))
def test_django_contract(django_verdicts, contract):
    framework, what, where = DJANGO_CONTRACTS[contract]
    verdict = django_verdicts.get(contract, "not run")
    assert verdict == "ok", broken(framework, what, where) + "\n" + verdict
