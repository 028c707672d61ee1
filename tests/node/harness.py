"""Drive one node in-process: an ``Engine`` on the local adapter, sockets replaced by recorders.

A ``FakeSocket`` stands for the ASGI ``send`` of one WebSocket; the outlet factory this module
registers turns it into a ``RecordingOutlet``, which keeps every frame the node writes (decoded JSON)
and every close (code, reason), and can play a slow consumer (``capacity``: frames it still accepts
before ``send`` returns False). Everything runs on the test's own event loop; nothing listens on a
port and nothing touches the database.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from realtime.node.connection import Connection
from realtime.node.engine import Engine
from realtime.node.events import EventSink
from realtime.node.outlet import Outlet
from realtime.protocol.outframe import OutFrame
from realtime.protocol.signatures import sign_channel, sign_user

APP_ID = "1001"
APP_KEY = "app-key"
APP_SECRET = "app-secret"


def make_app(**fields: Any) -> Any:
    """An unsaved ``App`` (id 1001, key app-key, secret app-secret) with ``fields`` changed."""
    from apps_admin.models import App  # needs Django set up (the conftest does it)

    return App(**{"id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, **fields})


# -- the fake transport ------------------------------------------------------------------------
class FakeSocket:
    """The ASGI ``send`` of one test socket (the node never calls it: the outlet records instead)."""

    def __init__(self) -> None:
        self.frames: list[dict] = []  # every frame written, decoded
        self.texts: list[str] = []  # the same frames as sent on the wire
        self.closes: list[tuple[int, str]] = []
        self.capacity: int | None = None  # frames still accepted (None: no limit)
        self.native_pings: int | None = None  # None: no native ping; else count of pings sent
        self.last_pong = 0.0  # monotonic time of the last native pong

    async def __call__(self, message: dict[str, Any]) -> None:  # pragma: no cover - never used
        raise AssertionError(f"the recording outlet should have taken {message!r}")


class RecordingOutlet(Outlet):
    __slots__ = ("socket",)

    def __init__(self, socket: FakeSocket) -> None:
        self.socket = socket

    def send(self, frame: OutFrame) -> bool:
        socket = self.socket
        if socket.closes:
            return False
        if socket.capacity is not None:
            if socket.capacity <= 0:
                return False
            socket.capacity -= 1
        socket.texts.append(frame.text)
        socket.frames.append(json.loads(frame.text))
        return True

    def close(self, code: int, reason: str) -> None:
        if not self.socket.closes:
            self.socket.closes.append((code, reason))

    @property
    def open(self) -> bool:
        return not self.socket.closes

    @property
    def last_pong(self) -> float:
        return self.socket.last_pong

    def native_ping(self) -> bool:
        if self.socket.native_pings is None:
            return False
        self.socket.native_pings += 1
        return True


def recording_outlet_factory(send: Any, limits: tuple[int, int]) -> Outlet | None:
    """Registered with ``register_outlet_factory`` while a test node exists."""
    return RecordingOutlet(send) if isinstance(send, FakeSocket) else None


class RecordingSink(EventSink):
    """An event sink (``WEBHOOK_SINK``) that keeps every lifecycle event: ``(app_id, event)``."""

    def __init__(self, engine: Engine) -> None:
        self.events: list[tuple[str, dict]] = []

    def emit(self, app_id: str, event: dict[str, Any]) -> None:
        self.events.append((app_id, event))


# -- clients -----------------------------------------------------------------------------------
@dataclass
class Client:
    """One test socket: its recorder and, once admitted, its connection on the node."""

    socket: FakeSocket
    conn: Connection | None
    seen: int = field(default=0)  # frames already returned by ``new``

    @property
    def frames(self) -> list[dict]:
        return self.socket.frames

    @property
    def socket_id(self) -> str:
        assert self.conn is not None
        return self.conn.socket_id

    @property
    def closed_with(self) -> tuple[int, str] | None:
        return self.socket.closes[0] if self.socket.closes else None

    def events(self) -> list[str]:
        return [f["event"] for f in self.frames]

    def new(self) -> list[dict]:
        """Frames received since the last call."""
        fresh = self.frames[self.seen :]
        self.seen = len(self.frames)
        return fresh

    def of(self, event: str) -> list[dict]:
        return [f for f in self.frames if f["event"] == event]

    def last(self, event: str | None = None) -> dict:
        frames = self.frames if event is None else self.of(event)
        assert frames, f"no {event or 'frame'} in {self.events()}"
        return frames[-1]


# -- the node ----------------------------------------------------------------------------------
class Node:
    """An engine on the local adapter plus helpers to connect sockets and feed them frames."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.clients: list[Client] = []
        self.closed = False

    async def connect(
        self,
        app: Any = None,
        protocol: int | None = 7,
        query: str = "",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> Client:
        """Open a socket for ``app`` (default ``make_app()``) with ``?protocol=…&query`` (``protocol=None``
        sends none). Refused sockets come back with ``conn`` None and their error frame and close."""
        parts = [] if protocol is None else [f"protocol={protocol}"]
        if query:
            parts.append(query)
        scope = {"type": "websocket", "query_string": "&".join(parts).encode(), "headers": list(headers)}
        socket = FakeSocket()
        conn = await self.engine.connect(scope, socket, make_app() if app is None else app)
        client = Client(socket, conn)
        self.clients.append(client)
        return client

    async def connect_missing_app(self, protocol: int | None = 7) -> Client:
        """Open a socket for an app key the node does not know."""
        socket = FakeSocket()
        query = b"" if protocol is None else f"protocol={protocol}".encode()
        conn = await self.engine.connect({"type": "websocket", "query_string": query}, socket, None)
        return Client(socket, conn)

    async def send(self, client: Client, event: str, data: Any = None, channel: str | None = None) -> None:
        """One frame from the client, as a JSON text message."""
        frame: dict[str, Any] = {"event": event}
        if data is not None:
            frame["data"] = data
        if channel is not None:
            frame["channel"] = channel
        await self.send_raw(client, json.dumps(frame))

    async def send_raw(self, client: Client, raw: str | bytes) -> None:
        """Hand ``raw`` to ``engine.handle`` and await what it returns, as the consumer does."""
        assert client.conn is not None, "the socket was refused"
        pending = self.engine.handle(client.conn, raw)
        if pending is not None:
            await pending

    def frames_of(self, client: Client) -> list[dict]:
        return client.frames

    async def settle(self) -> None:
        """Run the background tasks the engine spawned (presence leaves) until none is left."""
        for _ in range(100):
            await asyncio.sleep(0)
            pending = [t for t in self.engine._background if not t.done()]
            if not pending:
                return
            await asyncio.wait(pending, timeout=1.0)
        raise AssertionError("background tasks keep spawning")

    # -- conveniences of the protocol --------------------------------------------------------
    async def subscribe(
        self, client: Client, channel: str, *, auth: str | None = None, channel_data: Any = None, **extra: Any
    ) -> None:
        """Subscribe; private and presence channels are signed with the app's secret unless ``auth``
        is given (pass ``auth=""`` for none)."""
        data: dict[str, Any] = {"channel": channel, **extra}
        if channel_data is not None and not isinstance(channel_data, str):
            channel_data = json.dumps(channel_data)
        if channel.startswith(("private-", "presence-")):
            app = client.conn.app
            if auth is None:
                auth = sign_channel(app.key, app.secret, client.socket_id, channel, channel_data)
            if auth:
                data["auth"] = auth
            if channel_data is not None:
                data["channel_data"] = channel_data
        event = "sockudo:subscribe" if client.conn.protocol == 2 else "pusher:subscribe"
        await self.send(client, event, data)

    async def join(self, client: Client, channel: str, user_id: str, user_info: Any = None) -> None:
        """Subscribe to a presence channel as ``user_id``."""
        channel_data: dict[str, Any] = {"user_id": user_id}
        if user_info is not None:
            channel_data["user_info"] = user_info
        await self.subscribe(client, channel, channel_data=channel_data)

    async def signin(self, client: Client, user: dict, *, auth: str | None = None) -> None:
        user_data = json.dumps(user)
        app = client.conn.app
        if auth is None:
            auth = sign_user(app.key, app.secret, client.socket_id, user_data)
        event = "sockudo:signin" if client.conn.protocol == 2 else "pusher:signin"
        await self.send(client, event, {"auth": auth, "user_data": user_data})

    # -- teardown ----------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop every timer and task of the engine (run on the test's loop, before it closes)."""
        engine = self.engine
        for handle in engine._count_pending.values():
            handle.cancel()
        engine._count_pending.clear()
        tasks = [t for t in engine._background if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await engine.stop()
        self.closed = True

    @property
    def events(self) -> list[tuple[str, dict]]:
        """Lifecycle events the node reported (its ``RecordingSink``): ``(app_id, event)``."""
        return self.engine.events.events


def data_of(frame: dict) -> Any:
    """A frame's ``data``, decoded when it is a JSON string (Pusher system frames double-encode)."""
    data = frame.get("data")
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data
