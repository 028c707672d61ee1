"""One node under daphne: the listening socket and graceful shutdown (operations.md §3.2).

``NodeServer`` listens on daphne endpoint strings, or adopts already-listening sockets handed down
by ``serve --workers`` (``realtime.server.workers``). On SIGTERM or SIGINT it drains instead of stopping at
once: the node is marked draining (new WebSocket upgrades get 503, ``/up`` answers DRAINING), every
local socket is closed with 4200 "Server shutting down" (clients reconnect at once, to another
node), the presence leaves and the adapter's cluster cleanup run (``Engine.shutdown``), and the
process exits 0 once every socket has gone or SHUTDOWN_GRACE_PERIOD has passed. A second SIGINT
(Ctrl-C twice) stops at once. daphne's own signal handlers (an immediate reactor stop) stay off.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from typing import Any

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

from realtime.conf import server_settings
from realtime.node import drain as shutdown
from realtime.node import metrics
from realtime.node.engine import current_engine
from realtime.server.tuning import PROTOCOL_OPTIONS, TunedServer

log = logging.getLogger(__name__)

# daphne refuses to build a server without endpoints; adopted sockets are not endpoint strings.
_ADOPTED = "adopted-socket"


class NodeServer(Server):
    def __init__(
        self,
        *,
        endpoints: list[str] | None = None,
        listen_fds: tuple[int, ...] = (),
        watch_parent: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs["signal_handlers"] = False
        super().__init__(endpoints=list(endpoints or []) or [_ADOPTED], **kwargs)
        self.endpoints = list(endpoints or [])
        self.listen_fds = listen_fds
        self.grace = float(server_settings().SHUTDOWN_GRACE_PERIOD)
        self.parent_pid = os.getppid() if watch_parent else None
        self.adopted: list[Any] = []

    def run(self) -> None:
        tune_garbage_collector(server_settings().GC_GEN0_THRESHOLD)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        reactor.callWhenRunning(self._when_running)
        super().run()

    def _when_running(self) -> None:
        # Before the first connection: stock daphne builds its WebSocket factory in ``run`` without
        # these (an oversized message would be a bare TCP drop instead of a 1009 close).
        self.ws_factory.setProtocolOptions(**PROTOCOL_OPTIONS)
        for fd in self.listen_fds:
            sock = socket.socket(fileno=fd)  # detects the address family
            sock.setblocking(False)  # Twisted accepts until EAGAIN; a blocking socket would hang it
            try:
                self.adopted.append(reactor.adoptStreamPort(sock.fileno(), sock.family, self.http_factory))
            finally:
                sock.close()  # Twisted holds its own duplicate
        if self.parent_pid is not None:
            reactor.callLater(1.0, self._watch_parent)

    def _watch_parent(self) -> None:
        """A worker whose supervisor died (SIGKILL, OOM) drains rather than lingering as an orphan."""
        if os.getppid() != self.parent_pid:
            log.warning("supervisor %s is gone; shutting down", self.parent_pid)
            self._begin(signal.SIGTERM)
        elif not shutdown.draining:
            reactor.callLater(1.0, self._watch_parent)

    # -- shutdown ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        # Runs in the main thread between bytecodes: only set the flag (so the very next upgrade
        # is refused) and hand the rest to the reactor.
        if shutdown.draining:
            if signum == signal.SIGINT:
                reactor.callFromThread(self._force_stop)
            return
        shutdown.begin()
        reactor.callFromThread(self._begin, signum)

    def _begin(self, signum: int) -> None:
        shutdown.begin()
        if getattr(self, "_draining_task", None) is None:
            log.info("%s: draining for up to %.0fs", signal.Signals(signum).name, self.grace)
            self._draining_task = asyncio.ensure_future(self._drain())

    def _force_stop(self) -> None:
        log.warning("second interrupt: stopping without waiting")
        self.stop()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        engine = current_engine()
        try:
            if engine is not None:
                # The cluster cleanup gets at least a second even with a zero grace period.
                await engine.shutdown(max(self.grace, 1.0))
            while loop.time() < deadline and self._open_websockets():
                await asyncio.sleep(0.05)  # close handshakes still in flight
            metrics.flush(engine)  # connection gauges to 0; the last counts reach the shared files
        except Exception:
            log.exception("graceful shutdown failed; stopping anyway")
        self.stop()

    def _open_websockets(self) -> bool:
        return any(
            isinstance(protocol, WebSocketProtocol) and "disconnected" not in details
            for protocol, details in self.connections.items()
        )


class TunedNodeServer(TunedServer, NodeServer):
    """The node on the tuned transport (``SERVER_FAST_PATHS``): daphne's lean input queue."""


def tune_garbage_collector(gen0_threshold: int) -> None:
    """Keep the cyclic garbage collector off the hot path of a server holding many sockets.

    Everything loaded at start-up (Django, the apps, the URL conf) is moved to a permanent
    generation that collections never scan again, and young collections run every
    ``gen0_threshold`` allocations instead of every 700: each socket's objects are long-lived, and
    frequent collections that promote them into ever larger older generations cost a third of a
    connect storm's CPU, while a full collection over a node holding 1,000 sockets stalls the event
    loop for 80 - 110 ms. Reference counting still frees almost everything at once; only cyclic
    garbage waits longer. ``gen0_threshold`` 0 leaves the collector as Python configures it.
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, 20, 100)
