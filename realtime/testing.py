"""Test helpers shipped with the package: a signed HTTP API request builder, a raw Pusher
WebSocket client, and a live server process runner. Used by this project's tests; useful to
anyone testing an app that talks to this server."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from realtime.protocol.signatures import sign_channel, sign_user, signed_query

__all__ = [
    "LIVE_SECRET_KEY",
    "LiveServer",
    "PusherClient",
    "TcpProxy",
    "call_asgi",
    "free_port",
    "signed_query",
]

ROOT = Path(__file__).resolve().parent.parent

# The Django secret key of servers started here when the environment sets none: random, but one per
# process, so the nodes of one test cluster accept each other's signed history cursors.
LIVE_SECRET_KEY = secrets.token_urlsafe(50)


class PusherClient:
    """A minimal Pusher protocol 7 client over ``websockets`` for tests."""

    def __init__(self, ws: Any, socket_id: str, established: dict) -> None:
        self.ws = ws
        self.socket_id = socket_id
        self.established = established
        self.backlog: list[dict] = []

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> PusherClient:
        import websockets

        ws = await websockets.connect(url, open_timeout=5, max_size=None, **kwargs)
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if first.get("event") != "pusher:connection_established":
            await ws.close()
            raise ConnectionError(f"unexpected first frame {first}")
        data = json.loads(first["data"])
        return cls(ws, data["socket_id"], data)

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event}
        if data is not None:
            frame["data"] = data
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict:
        if self.backlog:
            return self.backlog.pop(0)
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, event: str, channel: str | None = None, timeout: float = 5.0) -> dict:
        """Next frame named ``event`` (on ``channel``); earlier other frames are kept for later."""
        for i, frame in enumerate(self.backlog):
            if frame.get("event") == event and (channel is None or frame.get("channel") == channel):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {event} within {timeout}s; saw {self.backlog}")
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            if frame.get("event") == event and (channel is None or frame.get("channel") == channel):
                return frame
            self.backlog.append(frame)

    async def nothing(self, timeout: float = 0.3) -> list[dict]:
        """Frames that arrive within ``timeout`` (tests assert this is empty)."""
        got = list(self.backlog)
        self.backlog.clear()
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                got.append(json.loads(await asyncio.wait_for(self.ws.recv(), remaining)))
            except TimeoutError:
                break
        return got

    async def subscribe(
        self, channel: str, key: str | None = None, secret: str | None = None, channel_data: Any = None
    ) -> dict:
        data: dict[str, Any] = {"channel": channel, "auth": ""}
        if channel_data is not None and not isinstance(channel_data, str):
            channel_data = json.dumps(channel_data)
        if secret is not None:
            data["auth"] = sign_channel(key or "", secret, self.socket_id, channel, channel_data)
        if channel_data is not None:
            data["channel_data"] = channel_data
        await self.send("pusher:subscribe", data)
        return data

    async def signin(self, key: str, secret: str, user: dict) -> str:
        user_data = json.dumps(user)
        await self.send(
            "pusher:signin",
            {"auth": sign_user(key, secret, self.socket_id, user_data), "user_data": user_data},
        )
        return user_data

    async def close(self) -> None:
        await self.ws.close()


async def call_asgi(app: Any, scope: dict, messages: list[dict]) -> list[dict]:
    """Run ``app`` on one HTTP request: it receives ``messages`` (then nothing, as if the client
    waited); returns the messages it sent."""
    pending, sent = list(messages), []

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real server process (``manage.py serve``) on a free port, for tests and benchmarks."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        app_id: str = "1001",
        key: str = "app-key",
        secret: str = "app-secret",
        database: bool = True,
        args: tuple[str, ...] = (),
        database_url: str | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.app_id, self.key, self.secret = app_id, key, secret
        self.tmp = tempfile.TemporaryDirectory(prefix="sockudo-test-")
        self.pg_database: str | None = None
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": self.host,
            # ``database_url``: a database the caller owns (e.g. PostgreSQL behind a ``TcpProxy``).
            "DATABASE_URL": database_url or self._database_url(),
            "APP_MANAGER_DRIVER": "database" if database else "static",
            "SOCKUDO_DEFAULT_APP_ID": app_id,
            "SOCKUDO_DEFAULT_APP_KEY": key,
            "SOCKUDO_DEFAULT_APP_SECRET": secret,
            "PYTHONUNBUFFERED": "1",
            # A server with DEBUG off refuses the public development key (realtime.E002).
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or LIVE_SECRET_KEY,
            # Tests open many sockets and API calls from 127.0.0.1: the per-IP limits would refuse
            # them. Off unless the caller's ``env`` switches them on.
            "RATE_LIMITER_ENABLED": "false",
            **(env or {}),
        }
        self.database = database
        self.args = args  # extra ``serve`` arguments, e.g. ("--workers", "2")
        self.process: subprocess.Popen | None = None
        self.log_path = Path(self.tmp.name) / "server.log"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/app/{self.key}?protocol=7&client=test&version=1&flash=false"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def _database_url(self) -> str:
        """SQLite in a temporary folder, or a fresh PostgreSQL database when ``TEST_DATABASE_URL``
        names a PostgreSQL server (so the whole suite runs on either store)."""
        base = os.environ.get("TEST_DATABASE_URL", "")
        if not base.startswith(("postgres://", "postgresql://")):
            return f"sqlite:///{self.tmp.name}/db.sqlite3"
        import psycopg

        self.pg_database = f"sockudo_t_{os.getpid()}_{self.port}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}"')
            conn.execute(f'CREATE DATABASE "{self.pg_database}"')
        return base.rsplit("/", 1)[0] + "/" + self.pg_database

    def _drop_database(self) -> None:
        if self.pg_database is None:
            return
        import psycopg

        with psycopg.connect(os.environ["TEST_DATABASE_URL"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
        self.pg_database = None

    def start(self) -> LiveServer:
        log = open(self.log_path, "w")  # noqa: SIM115 - lives as long as the process
        prepare = ["--prepare"] if self.database else []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port), *prepare, *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not listen within 30 s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._drop_database()
        self.tmp.cleanup()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TcpProxy:
    """A cuttable TCP proxy on 127.0.0.1 in front of a service (Redis, PostgreSQL): fault tests point
    a server at ``port``, then ``cut()`` drops every connection and refuses new ones (the service
    went away) and ``start()`` again lets connections through (it came back)."""

    def __init__(self, target_port: int = 6379) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
