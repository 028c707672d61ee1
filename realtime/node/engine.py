"""The engine of one node: connection lifecycle, frame dispatch, local fan-out and timers.

Runs on the event loop thread only. Consumers are thin (they hand frames here); HTTP views reach it
through ``realtime.api.bridge``. Nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from django.utils.module_loading import import_string

from history.policy import history_enabled
from history.sequencer import get_sequencer
from realtime.conf import adapter_path, server_settings
from realtime.node import frames as handlers
from realtime.node import metrics
from realtime.node.connection import Connection
from realtime.node.events import EventSink, make_sink
from realtime.node.hotbuffer import HotBuffer, recovery_settings
from realtime.node.matching import passes, wildcard_matches
from realtime.node.ordering import KeyedOrder
from realtime.node.origins import origin_allowed
from realtime.node.outlet import make_outlet
from realtime.node.registry import Registry
from realtime.protocol import errors, frames
from realtime.protocol.channels import META_PREFIX
from realtime.protocol.errors import ProtocolError
from realtime.protocol.outframe import OutFrame

if TYPE_CHECKING:
    from apps_admin.models import App
    from realtime.cluster.base import Adapter

log = logging.getLogger(__name__)


def _no_app(app_id: str) -> App | None:
    return None


# How the node reaches what lives outside it, set once by the Django app config (``realtime.apps``):
# the node never imports the app store or the ORM itself.
find_cached_app: Callable[[str], App | None] = _no_app  # an app by id from the in-process cache
SERVICES: list[Callable[[], Awaitable[None]]] = []  # long-running tasks of the node (history retention)


def configure(
    *, find_app: Callable[[str], App | None], services: list[Callable[[], Awaitable[None]]]
) -> None:
    global find_cached_app
    find_cached_app = find_app
    SERVICES[:] = services


SUPPORTED_V1 = (5, 6, 7)


class Engine:
    def __init__(self) -> None:
        s = server_settings()
        self.registry = Registry()
        self.adapter: Adapter = import_string(adapter_path(s.ADAPTER_DRIVER))(self)
        self.activity_timeout = int(s.ACTIVITY_TIMEOUT)
        self.pong_timeout = float(s.PONG_TIMEOUT)
        self.max_payload = int(s.WEBSOCKET_MAX_PAYLOAD_KB) * 1024
        self.max_connections = int(s.SOCKUDO_MAX_CONNECTIONS)
        self.user_auth_timeout = float(s.USER_AUTHENTICATION_TIMEOUT)
        self.cache_ttl = float(s.CACHE_CHANNEL_TTL)
        self.presence_v2_lease = float(s.PRESENCE_V2_UNGRACEFUL_TIMEOUT_SECONDS)
        self.watchlist_max = int(s.WATCHLIST_MAX_SIZE)
        self.sweep_interval = float(s.HEARTBEAT_SWEEP_INTERVAL)
        self.count_interval = float(s.SUBSCRIPTION_COUNT_INTERVAL)
        self.outlet_limits = (int(s.WEBSOCKET_MAX_BUFFER_KB) * 1024, int(s.WEBSOCKET_MAX_MESSAGES))
        self.cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._count_pending: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._count_last: dict[tuple[str, str], float] = {}
        self._count_value: dict[tuple[str, str], int] = {}
        self.events: EventSink = make_sink(self)  # webhooks (WEBHOOK_SINK)
        self._background: set[asyncio.Future] = set()
        self.presence_order = KeyedOrder()  # presence joins/leaves per (app, channel, user)
        self.hot = HotBuffer()
        self._sequencer: Any = None
        self._sweeper: asyncio.Task | None = None
        self._services: list[asyncio.Task] = []
        self._flusher: asyncio.Task | None = None
        self.stats = metrics.STATS  # plain counters; realtime.node.metrics flushes them to Prometheus
        self.accepting = True  # False once a graceful shutdown began
        self._system = handlers.SYSTEM_FRAMES

    async def start(self) -> None:
        await self.adapter.start()
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep_forever())
        self._services = [loop.create_task(service()) for service in SERVICES]
        if metrics.MULTIPROCESS:
            self._flusher = loop.create_task(metrics.flush_forever(self))

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for service in self._services:
            service.cancel()
        if self._flusher:
            self._flusher.cancel()
        try:  # before the adapter stops: delayed leave events re-check cluster state through it
            await self.events.close()
        except Exception:
            log.warning("event sink did not close cleanly", exc_info=True)
        await self.adapter.stop()

    async def shutdown(self, timeout: float) -> None:
        """Graceful shutdown (operations.md §3.2): admit no new socket, close every local socket with
        4200 (clients reconnect at once, to another node), let the presence leaves this causes reach
        the cluster, then leave it (``stop``). Bounded by ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.accepting = False
        for state in list(self.registry.apps.values()):
            for conn in list(state.connections.values()):
                self.close(conn, errors.RECONNECT_NOW, errors.SHUTDOWN_REASON)
        if self._background:
            await asyncio.wait(set(self._background), timeout=max(0.0, deadline - loop.time()))
        try:
            await asyncio.wait_for(self.stop(), max(0.1, deadline - loop.time()))
        except Exception:  # a backend that is down or slow must not keep the process alive
            log.warning("adapter did not stop cleanly within the shutdown budget", exc_info=True)

    # -- connection lifecycle ------------------------------------------------------------------
    async def connect(self, scope: dict[str, Any], send: Callable, app: App | None) -> Connection | None:
        """Admit an accepted socket: send ``connection_established`` or an error and a close."""
        outlet = make_outlet(send, self.outlet_limits)
        protocol, echo = 7, True
        try:
            protocol, echo = self._negotiate(scope)
            if app is None:
                raise errors.app_not_found()
            if not app.enabled:
                raise errors.app_disabled()
            if app.allowed_origins and not origin_allowed(_header(scope, b"origin"), app.allowed_origins):
                raise errors.origin_not_allowed()
            if not self.accepting:
                raise ProtocolError(errors.RECONNECT_NOW, errors.SHUTDOWN_REASON, fatal=True)
            if self.max_connections and self.registry.connection_count >= self.max_connections:
                raise errors.server_over_capacity()
            if app.max_connections and await self.adapter.connection_count(app.id) >= app.max_connections:
                raise errors.app_over_quota()
        except ProtocolError as error:
            self.stats.error(app.id if app is not None else "unknown", error.code)
            text = frames.error_frame(error)
            v2 = protocol == 2 or _wants_v2(scope)
            outlet.send(OutFrame(frames.to_v2(text) if v2 else text))
            outlet.close(error.code, error.message)
            return None
        conn = Connection(app, outlet, protocol)
        conn.echo = echo
        self.registry.add_connection(conn)
        self.stats.opened(app.id)
        self.adapter.connections_changed(app.id)
        if app.enable_user_authentication and app.enforce_user_authentication:
            conn.auth_deadline = time.monotonic() + self.user_auth_timeout
        self.send(conn, frames.connection_established(conn.socket_id, self.activity_timeout))
        return conn

    @staticmethod
    def _negotiate(scope: dict[str, Any]) -> tuple[int, bool]:
        """(protocol, echo) from the upgrade's query string: 2 is V2, 5-7 or none is V1."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        values = query.get("protocol")
        if not values:
            return 7, True
        raw = values[-1]
        try:
            version = int(raw)
        except ValueError:
            raise errors.invalid_version(raw[:20]) from None
        if version == 2:
            fmt = (query.get("format") or ["json"])[-1].strip().lower()
            if fmt not in ("json", ""):
                raise errors.unsupported_format(fmt[:20])
            echo = (query.get("echo_messages") or ["true"])[-1].strip().lower() != "false"
            return 2, echo
        if version not in SUPPORTED_V1:
            raise errors.unsupported_protocol(version)
        return version, True

    def disconnect(self, conn: Connection, code: int | None = None) -> None:
        """The socket is gone (client closed, network dropped, or we closed it).

        A V2 socket that dropped without a clean close (not 1000/1001) keeps its presence
        membership for ``PRESENCE_V2_UNGRACEFUL_TIMEOUT_SECONDS`` (V1: removed at once)."""
        abrupt = code not in (1000, 1001, None)
        lease = self.presence_v2_lease if conn.protocol == 2 and abrupt else 0.0
        self._cleanup(conn, lease)

    def close(self, conn: Connection, code: int, reason: str, error: ProtocolError | None = None) -> None:
        """Close a socket from the server side, optionally after an error frame."""
        if conn.closed:
            return
        if error is not None:
            self.send(conn, frames.error_frame(error))
        conn.outlet.close(code, reason)
        self._cleanup(conn)

    def _cleanup(self, conn: Connection, lease: float = 0.0) -> None:
        if conn.closed:
            return
        conn.closed = True
        for channel in list(conn.channels):
            handlers.leave_channel(self, conn, channel, lease)
        if conn.user_id is not None:
            handlers.forget_user(self, conn)
        self.registry.remove_connection(conn)
        self.adapter.connections_changed(conn.app.id)
        self.stats.closed(conn.app.id)

    # -- inbound frames ------------------------------------------------------------------------
    def handle(self, conn: Connection, raw: str | bytes | None) -> Awaitable[None] | None:
        """Process one frame. Returns an awaitable when the frame needs the cluster (a presence
        join); the consumer awaits it before reading the next frame, keeping frames in order."""
        if conn.closed or raw is None:
            return None
        conn.last_seen = time.monotonic()
        conn.ping_sent_at = 0.0
        size = len(raw)
        self.stats.received(conn.app.id, size)
        if size > self.max_payload:
            self.stats.error(conn.app.id, errors.MESSAGE_TOO_BIG)
            self.close(conn, errors.MESSAGE_TOO_BIG, "Message too big")
            return None
        try:
            handlers.check_message_rate(self, conn)
            frame = frames.decode(raw)
            if frame.system is not None:
                handler = self._system.get(frame.system)
                if handler is not None:
                    pending = handler(self, conn, frame)
                    if pending is not None:
                        return self._guard(conn, pending)
            elif frame.event == "channel_history":  # V2 accepts the bare name too
                pending = handlers.channel_history(self, conn, frame)
                if pending is not None:
                    return self._guard(conn, pending)
            elif frame.event.startswith("client-"):
                handlers.client_event(self, conn, frame)
            # Other event names are ignored, as Pusher does.
        except ProtocolError as error:
            self.fail(conn, error)
        return None

    async def _guard(self, conn: Connection, pending: Awaitable[None]) -> None:
        try:
            await pending
        except ProtocolError as error:
            self.fail(conn, error)
        except Exception:  # a backend failure must not take the socket (or others) down
            log.exception("frame handling failed for %s", conn.socket_id)
            if not conn.closed:
                self.fail(conn, errors.broadcast_error("internal error, try again"))

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run cluster bookkeeping in the background; the task is kept until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def fail(self, conn: Connection, error: ProtocolError) -> None:
        self.stats.error(conn.app.id, error.code)
        if error.fatal:
            self.close(conn, error.code, error.message, error)
        else:
            self.send(conn, frames.error_frame(error))

    # -- outbound ------------------------------------------------------------------------------
    def send(self, conn: Connection, text: str) -> None:
        """Send a frame built for this one connection (V2 gets its spelling and a message_id)."""
        if conn.protocol == 2:
            text = frames.with_message_id(frames.to_v2(text), str(uuid.uuid4()))
        out = OutFrame(text)
        if conn.outlet.send(out):
            self.stats.sent(conn.app.id, len(out.wire))
        elif not conn.closed:
            self._slow(conn)

    def send_frame(self, conn: Connection, frame: OutFrame) -> None:
        """Send a shared frame in the connection's protocol (skipped if it has no such variant)."""
        if conn.protocol == 2:
            frame = frame.v2
            if frame is None:
                return
        elif frame.text is None:
            return
        if conn.outlet.send(frame):
            self.stats.sent(conn.app.id, len(frame.wire))
        elif not conn.closed:
            self._slow(conn)

    def _slow(self, conn: Connection) -> None:
        if conn.outlet.open:
            log.info("closing slow consumer %s", conn.socket_id)
        self.stats.error(conn.app.id, errors.OVER_CAPACITY)
        self.close(conn, errors.OVER_CAPACITY, errors.SLOW_CONSUMER_REASON)

    def deliver_local(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> int:
        """Fan a prebuilt frame out to this node's subscribers; never waits on a socket."""
        subs = self.registry.subscribers(app_id, channel)
        if not subs:
            return self._deliver_patterns(app_id, channel, frame, except_socket_id, None)
        started = time.perf_counter()
        slow = None
        sent = 0
        v1 = frame if frame.text is not None else None
        v2 = None
        for conn in subs:
            if except_socket_id is not None and conn.socket_id == except_socket_id:
                continue
            if conn.protocol == 2:
                if v2 is None:
                    v2 = frame.v2 or _SKIP
                out = v2
            else:
                out = v1
            if out is None or out is _SKIP:
                continue
            if conn.filters is not None and not passes(conn, channel, frame):
                continue
            if conn.hold is not None and channel in conn.hold:
                conn.hold[channel].append(out)  # attaching (V2): released after the ack
                continue
            if conn.outlet.send(out):
                sent += 1
            elif slow is None:
                slow = [conn]
            else:
                slow.append(conn)
        if sent:
            # Once per broadcast: bytes at the V1 size when a broadcast reached both protocols.
            ref = v1 if v1 is not None else v2
            self.stats.broadcast(app_id, channel, sent, len(ref.wire), time.perf_counter() - started)
        if slow:
            for conn in slow:
                if not conn.closed:
                    self._slow(conn)
        return sent + self._deliver_patterns(app_id, channel, frame, except_socket_id, subs)

    def _deliver_patterns(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None, exact: Any
    ) -> int:
        """V2 wildcard subscribers whose pattern matches ``channel`` (each socket at most once, even
        with an exact subscription too; a message passing any one subscription's filter is sent)."""
        state = self.registry.apps.get(app_id)
        if state is None or not state.patterns or channel.startswith(("private-", "presence-", "#")):
            return 0
        v2 = frame.v2
        if v2 is None:
            return 0
        chosen: dict[Connection, None] = {}
        for pattern, conns in state.patterns.items():
            if not wildcard_matches(pattern, channel):
                continue
            for conn in conns:
                if conn in chosen or (exact is not None and conn in exact and passes(conn, channel, frame)):
                    continue
                if except_socket_id is not None and conn.socket_id == except_socket_id:
                    continue
                if passes(conn, pattern, frame):
                    chosen[conn] = None
        sent = 0
        for conn in chosen:
            if conn.outlet.send(v2):
                sent += 1
            elif not conn.closed:
                self._slow(conn)
        return sent

    def deliver_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        for conn in self.registry.user_connections(app_id, user_id):
            self.send_frame(conn, frame)

    def close_user(self, app_id: str, user_id: str, code: int, reason: str) -> int:
        conns = self.registry.user_connections(app_id, user_id)
        for conn in conns:
            self.close(conn, code, reason)
        return len(conns)

    # -- Protocol V2 message identity ----------------------------------------------------------
    def identity_enabled(self, app: App, channel: str) -> bool:
        """Broadcasts carry message_id/stream_id/serial when recovery or history is on."""
        if recovery_settings(app)[0]:
            return True
        return history_enabled(app, channel)

    @property
    def sequencer(self) -> Any:
        if self._sequencer is None:
            self._sequencer = get_sequencer()
        return self._sequencer

    async def identity(self, app: App, channel: str, message_id: str | None) -> tuple[str, str, int] | None:
        """(message_id, stream_id, serial) for a new message, or None when identity is off."""
        if not self.identity_enabled(app, channel):
            return None
        position = await self.sequencer.next(app.id, channel)
        return (message_id or str(uuid.uuid4()), position.stream_id, position.serial)

    def remember(self, app: App, channel: str, frame: OutFrame) -> None:
        """Keep a V2 message with identity in the hot replay buffer."""
        message_id, stream_id, serial = frame.position
        self.hot.append(app, channel, stream_id, serial, message_id, frame.v2_text)

    def remember_remote(self, app_id: str, channel: str, frame: OutFrame) -> None:
        """A message with identity published on another node joins this node's replay buffer."""
        app = find_cached_app(app_id)
        if app is not None and frame.position is not None:
            self.remember(app, channel, frame)

    # -- cache channels ------------------------------------------------------------------------
    def cache_put(self, app_id: str, channel: str, text: str) -> None:
        self.cache[(app_id, channel)] = (text, time.monotonic() + self.cache_ttl)

    def cache_get(self, app_id: str, channel: str) -> tuple[str, float] | None:
        entry = self.cache.get((app_id, channel))
        if entry is None:
            return None
        remaining = entry[1] - time.monotonic()
        if remaining <= 0:
            del self.cache[(app_id, channel)]
            return None
        return entry[0], remaining

    # -- subscription_count --------------------------------------------------------------------
    def cluster_count_changed(self, app_id: str, channel: str, before: int, after: int) -> None:
        """This node's write moved a channel's cluster-wide subscription count from ``before`` to
        ``after``: the webhooks (once per change, here) and this node's count events. The adapter
        tells the other nodes, which call ``count_seen``."""
        if channel.startswith(META_PREFIX):
            return  # metachannels have no lifecycle events of their own
        if before == 0 and after > 0:
            self.events.emit(app_id, {"name": "channel_occupied", "channel": channel})
        elif before > 0 and after == 0:
            self.events.emit(app_id, {"name": "channel_vacated", "channel": channel})
        if before != after and not channel.startswith("presence-"):
            self.events.emit(
                app_id, {"name": "subscription_count", "channel": channel, "subscription_count": after}
            )
        self.count_seen(app_id, channel, before, after)

    def counts_wanted(self, app_id: str, channel: str) -> bool:
        """Whether subscribers of ``channel`` get ``subscription_count`` events (an unknown app:
        yes, to be safe). [meta] watchers are the adapter's to find out."""
        if channel.startswith(("presence-", META_PREFIX)):
            return False
        app = find_cached_app(app_id)
        return app is None or bool(app.enable_subscription_count)

    def count_seen(self, app_id: str, channel: str, before: int, after: int) -> None:
        """A channel's cluster-wide count moved (here or on another node): tell this node's
        ``[meta]`` watchers and, coalesced, its subscribers. Never emits webhooks."""
        if before == after or channel.startswith(META_PREFIX):
            return
        self._meta_counts(app_id, channel, before, after)
        if channel.startswith("presence-"):
            return
        subs = self.registry.subscribers(app_id, channel)
        if subs and next(iter(subs)).app.enable_subscription_count:
            self._count_value[(app_id, channel)] = after
            self.schedule_subscription_count(app_id, channel)

    def member_joined(self, app_id: str, channel: str, user_id: str) -> None:
        self.events.emit(app_id, {"name": "member_added", "channel": channel, "user_id": user_id})
        self.meta_event(app_id, channel, "member_added", {"channel": channel, "user_id": user_id})

    def member_left_cluster(self, app_id: str, channel: str, user_id: str) -> None:
        self.events.emit(app_id, {"name": "member_removed", "channel": channel, "user_id": user_id})
        self.meta_event(app_id, channel, "member_removed", {"channel": channel, "user_id": user_id})

    def adapter_outage(self, reason: str) -> None:
        metrics.ADAPTER_OUTAGES.inc()

    def adapter_recovered(self, reason: str) -> None:
        metrics.ADAPTER_RECOVERIES.inc()

    def meta_event(self, app_id: str, channel: str, name: str, data: dict[str, Any]) -> None:
        """Tell this node's ``[meta]<channel>`` subscribers (V2 only) what happened to ``channel``."""
        meta = META_PREFIX + channel
        if self.registry.subscribers(app_id, meta):
            text = frames.encode(f"sockudo_internal:{name}", data, meta)
            self.deliver_local(app_id, meta, OutFrame.v2_only(text))

    def _meta_counts(self, app_id: str, channel: str, before: int, after: int) -> None:
        if not self.registry.subscribers(app_id, META_PREFIX + channel):
            return
        data = {"channel": channel, "subscription_count": after}
        if before == 0 and after > 0:
            self.meta_event(app_id, channel, "channel_occupied", data)
        if after > 0:
            self.meta_event(app_id, channel, "subscription_count", data)
        else:
            self.meta_event(app_id, channel, "channel_vacated", data)

    def schedule_subscription_count(self, app_id: str, channel: str) -> None:
        key = (app_id, channel)
        if key in self._count_pending:
            return
        now = time.monotonic()
        delay = max(0.0, self._count_last.get(key, 0.0) + self.count_interval - now)
        loop = asyncio.get_running_loop()
        self._count_pending[key] = loop.call_later(delay, self._flush_subscription_count, key)

    def _flush_subscription_count(self, key: tuple[str, str]) -> None:
        self._count_pending.pop(key, None)
        self._count_last[key] = time.monotonic()
        subs = self.registry.subscribers(*key)
        count = self._count_value.pop(key, None)
        if not subs:
            self._count_last.pop(key, None)
            return
        self.deliver_local(key[0], key[1], OutFrame(frames.subscription_count(key[1], count or len(subs))))

    # -- timers --------------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                self.sweep(time.monotonic())
            except Exception:  # never let one bad connection stop the timers of all others
                log.exception("heartbeat sweep failed")

    def sweep(self, now: float) -> None:
        """Ping quiet sockets, close those that stayed silent (4201) or never signed in (4009)."""
        idle_after = self.activity_timeout
        ping = OutFrame(frames.PING)
        to_close: list[tuple[Connection, int, str]] = []
        for state in list(self.registry.apps.values()):
            for conn in state.connections.values():
                if conn.ping_sent_at and conn.outlet.last_pong >= conn.ping_sent_at:
                    conn.ping_sent_at = 0.0  # a native pong (V2) answered
                    conn.last_seen = conn.outlet.last_pong
                if conn.ping_sent_at:
                    if now - conn.ping_sent_at > self.pong_timeout:
                        to_close.append((conn, errors.PONG_NOT_RECEIVED, errors.PONG_TIMEOUT_REASON))
                        continue
                elif now - conn.last_seen > idle_after:
                    conn.ping_sent_at = now
                    # V1 gets Pusher's app-level ping; V2 a native WebSocket ping where possible.
                    if conn.protocol == 2 and conn.outlet.native_ping():
                        continue
                    if not conn.outlet.send(ping if conn.protocol != 2 else ping.v2):
                        to_close.append((conn, errors.OVER_CAPACITY, errors.SLOW_CONSUMER_REASON))
                        continue
                if conn.auth_deadline and now > conn.auth_deadline:
                    to_close.append((conn, errors.UNAUTHORIZED, errors.AUTH_TIMEOUT_REASON))
        for conn, code, reason in to_close:
            self.stats.error(conn.app.id, code)
            self.close(conn, code, reason)


_SKIP = OutFrame(None)


def _wants_v2(scope: dict[str, Any]) -> bool:
    """Whether a refused upgrade asked for V2 (so its error frame uses the V2 spelling)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return (query.get("protocol") or [""])[-1] == "2"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


_engine: Engine | None = None
_engine_lock: asyncio.Lock | None = None


def current_engine() -> Engine | None:
    """The node's engine if it was started (it is created on first use), else None."""
    return _engine


async def get_engine() -> Engine:
    """The node's engine, created and started on first use inside the running loop."""
    global _engine, _engine_lock
    if _engine is not None:
        return _engine
    if _engine_lock is None:
        _engine_lock = asyncio.Lock()
    async with _engine_lock:
        if _engine is None:
            engine = Engine()
            await engine.start()
            _engine = engine
    return _engine
