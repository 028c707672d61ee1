"""Shared helpers for the live-server test modules (errors, limits, fuzz, presence/features).

Everything here is bounded: each wait has a timeout, so a misbehaving server fails a test instead
of hanging it. Tests are sync functions that call ``run(coro)``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed

from realtime.protocol.signatures import sign_channel, sign_user
from realtime.testing import LiveServer, PusherClient, signed_query

WAIT = 5.0  # upper bound of any single wait
SUCCEEDED = "pusher_internal:subscription_succeeded"


def run(coro: Any, budget: float = 60.0) -> Any:
    """Run one test body on a fresh loop with a hard time budget."""

    async def guarded() -> Any:
        return await asyncio.wait_for(coro, budget)

    return asyncio.run(guarded())


def uid() -> str:
    return uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class AppCreds:
    id: str
    key: str
    secret: str


def default_app(server: LiveServer) -> AppCreds:
    return AppCreds(server.app_id, server.key, server.secret)


def extra_app(app_id: str, **fields: Any) -> dict[str, Any]:
    """One entry of ``SOCKUDO_APPS`` (key ``key-<id>``, secret ``secret-<id>``)."""
    return {"id": app_id, "key": f"key-{app_id}", "secret": f"secret-{app_id}", **fields}


def creds_of(entry: dict[str, Any]) -> AppCreds:
    return AppCreds(entry["id"], entry["key"], entry["secret"])


def apps_env(*entries: dict[str, Any]) -> dict[str, str]:
    return {"SOCKUDO_APPS": json.dumps(list(entries))}


_CREATE_APPS = """
import json
from apps_admin.fields import app_from_mapping
from apps_admin.models import App
for data in json.loads({payload!r}):
    App(**app_from_mapping(data)).save(force_insert=True)
"""


@contextmanager
def serving(env: dict[str, str] | None = None, apps: Iterable[dict[str, Any]] = ()) -> Iterator[LiveServer]:
    """A live server with the default app (from ``env``) plus ``apps`` (``extra_app`` entries),
    stored the way the server keeps apps: in its database, or in ``SOCKUDO_APPS`` when static."""
    apps = list(apps)
    live = LiveServer(env={**(env or {}), **apps_env(*apps)})
    live.start()
    try:
        if apps and live.database:
            live.manage("shell", "-c", _CREATE_APPS.format(payload=json.dumps(apps)))
        yield live
    finally:
        live.stop()


def ws_url(
    server: LiveServer, key: str | None = None, query: str = "protocol=7&client=test&version=1"
) -> str:
    return f"ws://{server.host}:{server.port}/app/{key or server.key}?{query}"


async def connect(server: LiveServer, app: AppCreds | None = None, **kwargs: Any) -> PusherClient:
    """A connected client (``connection_established`` already read)."""
    return await PusherClient.connect(ws_url(server, app.key if app else None), **kwargs)


async def raw_connect(server: LiveServer, key: str | None = None, query: str | None = None, **kwargs: Any):
    """A bare websockets connection: nothing read yet (for handshake-time errors)."""
    url = ws_url(server, key) if query is None else ws_url(server, key, query)
    return await websockets.connect(url, open_timeout=WAIT, max_size=None, **kwargs)


@dataclass
class Closed:
    frames: list[dict]
    code: int | None
    reason: str


async def read_until_closed(ws: Any, timeout: float = WAIT) -> Closed:
    """Collect frames until the server closes the socket; fail if it stays open past ``timeout``."""
    frames: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"socket still open after {timeout}s; frames: {frames}")
        try:
            raw = await asyncio.wait_for(ws.recv(), remaining)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return Closed(frames, rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
        except TimeoutError:
            continue
        frames.append(json.loads(raw))


async def expect_error(client: PusherClient, code: int, timeout: float = WAIT) -> dict:
    """The next ``pusher:error``; assert its code and shape (``data`` is an object)."""
    frame = await client.expect("pusher:error", timeout=timeout)
    assert isinstance(frame["data"], dict), frame
    assert frame["data"]["code"] == code, frame
    assert isinstance(frame["data"]["message"], str) and frame["data"]["message"], frame
    assert "channel" not in frame, frame
    return frame


def transport(server: LiveServer) -> str:
    """``tuned`` or ``stock``: the transport the server says it runs (``/stats`` ``node.transport``,
    ``SERVER_FAST_PATHS``), asked once per server."""
    known = _transports.get(id(server))
    if known is None or known[0] is not server:
        stats = httpx.get(f"{server.http_url}/stats", timeout=WAIT).json()
        known = _transports[id(server)] = (server, stats["node"]["transport"])
    return known[1]


_transports: dict[int, tuple[LiveServer, str]] = {}


def close_reason(server: LiveServer, message: str) -> str:
    """The reason text a close carries: the message on the tuned transport. Stock daphne sends
    close frames without a reason (its ``websocket.close`` handling passes only the code), so
    there the reason is empty; the message still reaches the client in the ``pusher:error`` frame."""
    return message if transport(server) == "tuned" else ""


def upgrade_refused_status(server: LiveServer, status: int) -> int:
    """The HTTP status of a refused upgrade: ``status`` (429, 503) on the tuned transport; stock
    daphne can only answer 403 to an upgrade closed before accept."""
    return status if transport(server) == "tuned" else 403


async def expect_fatal(
    server: LiveServer, client_or_ws: Any, code: int, with_frame: bool = True, timeout: float = WAIT
) -> Closed:
    """The server closes with ``code``; with ``with_frame`` a matching pusher:error came first, and
    the close reason is its message (``close_reason``: empty on the stock transport)."""
    ws = getattr(client_or_ws, "ws", client_or_ws)
    backlog = list(getattr(client_or_ws, "backlog", []))
    closed = await read_until_closed(ws, timeout)
    closed.frames = backlog + closed.frames
    assert closed.code == code, (closed.code, closed.reason, closed.frames)
    errors = [f for f in closed.frames if f.get("event") == "pusher:error"]
    if with_frame:
        assert errors, closed.frames
        assert errors[-1]["data"]["code"] == code, closed.frames
        assert closed.reason == close_reason(server, errors[-1]["data"]["message"]), (closed.reason, errors)
    else:
        assert not errors, closed.frames
    return closed


async def still_open(client: PusherClient) -> None:
    """The socket is alive: a ``pusher:ping`` is answered with ``pusher:pong`` (no data key)."""
    await client.send("pusher:ping", {})
    pong = await client.expect("pusher:pong")
    assert pong == {"event": "pusher:pong"}, pong


async def subscribed(
    client: PusherClient, channel: str, app: AppCreds | None = None, channel_data: Any = None
) -> dict:
    """Subscribe (signing when the channel needs it) and return the subscription_succeeded frame."""
    needs_auth = channel.startswith(("private-", "presence-"))
    if needs_auth:
        assert app is not None
        await client.subscribe(channel, app.key, app.secret, channel_data)
    else:
        await client.subscribe(channel)
    return await client.expect(SUCCEEDED, channel)


async def signed_in(client: PusherClient, app: AppCreds, user: dict) -> str:
    user_data = await client.signin(app.key, app.secret, user)
    frame = await client.expect("pusher:signin_success")
    assert frame["data"] == {"user_data": user_data}, frame
    return user_data


def channel_auth(app: AppCreds, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    return sign_channel(app.key, app.secret, socket_id, channel, channel_data)


def user_auth(app: AppCreds, socket_id: str, user_data: str) -> str:
    return sign_user(app.key, app.secret, socket_id, user_data)


# -- HTTP API -------------------------------------------------------------------------------------
async def api(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    app: AppCreds | None = None,
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
    content_type: str = "application/json",
    query: str | None = None,
) -> httpx.Response:
    """A signed API request. ``body`` may be bytes (sent as-is) or JSON-able; ``query`` overrides
    the whole query string (for deliberately broken signatures)."""
    app = app or default_app(server)
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    if query is None:
        query = signed_query(method, path, app.key, app.secret, raw, params, timestamp=timestamp)
    headers = {"Content-Type": content_type} if content_type else {}
    url = f"{server.http_url}{path}" + (f"?{query}" if query else "")
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return await http.request(
            method, url, content=raw if method.upper() != "GET" else None, headers=headers
        )


async def publish(
    server: LiveServer,
    channels: str | Iterable[str],
    name: str,
    data: Any,
    *,
    app: AppCreds | None = None,
    **extra: Any,
) -> httpx.Response:
    """POST /apps/{id}/events and assert 200."""
    app = app or default_app(server)
    body: dict[str, Any] = {"name": name, "data": data, **extra}
    if isinstance(channels, str):
        body["channel"] = channels
    else:
        body["channels"] = list(channels)
    response = await api(server, "POST", f"/apps/{app.id}/events", body, app=app)
    assert response.status_code == 200, response.text
    return response


def assert_api_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The JSON error envelope ``{"error", "code", "status"}``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) >= {"error", "code", "status"}, body
    assert body["status"] == status, body
    assert isinstance(body["error"], str) and body["error"], body
    if code is not None:
        assert body["code"] == code, body
    return body


async def assert_serves(server: LiveServer, app: AppCreds | None = None) -> None:
    """A fresh client can connect, subscribe and receive an HTTP-published event."""
    client = await connect(server, app)
    try:
        channel = f"alive-{uid()}"
        await subscribed(client, channel)
        await publish(server, channel, "still-alive", {"ok": True}, app=app)
        frame = await client.expect("still-alive", channel)
        assert frame["data"] == '{"ok":true}', frame
    finally:
        await client.close()


async def close_all(*clients: Any) -> None:
    for client in clients:
        if client is not None:
            ws = getattr(client, "ws", client)
            with suppress(Exception):  # already closed by the server
                await asyncio.wait_for(ws.close(), WAIT)


async def eventually(check: Any, timeout: float = WAIT, interval: float = 0.05) -> Any:
    """Retry an async check until it stops failing (server-side cleanup is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


def full_log(server: LiveServer) -> str:
    try:
        return server.log_path.read_text()
    except OSError:
        return ""
