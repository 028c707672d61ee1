"""A PostgreSQL blip under durable history: the server's database (PostgreSQL only) is reached
through a ``TcpProxy`` that each test cuts for ``CUT_SECONDS``. Publishes during the cut must fail
loudly (503 ``service_unavailable``); after the database is back every history surface must work
again within ``RECOVERY_BUDGET`` seconds, without a restart: HTTP history, ``sockudo:channel_history``,
a V2 subscribe with rewind, cold resume, the retention pass; and the stream keeps gapless serials.

Needs PostgreSQL at ``TEST_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/postgres``):
with ``CI=true`` these tests fail without it, elsewhere they skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from realtime.testing import LiveServer, PusherClient, TcpProxy, signed_query

PG_URL = os.environ.get("TEST_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
CUT_SECONDS = 3.0
RECOVERY_BUDGET = 10.0  # seconds after the database is back within which every surface must work
TEST_BUDGET = 60.0

ENV = {
    "HISTORY_ENABLED": "true",
    "CONNECTION_RECOVERY_ENABLED": "true",
    "CONNECTION_RECOVERY_BUFFER_TTL": "1",  # cold resume after 1 s
    "CONNECTION_RECOVERY_MAX_BUFFER_SIZE": "20",
    "HISTORY_PURGE_INTERVAL_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


class ProxyThread:
    """A ``TcpProxy`` on its own event loop in a thread: the server's migrations and queries pass
    through it while the tests block on HTTP calls."""

    def __init__(self, target_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy(target_port)
        self.port = self.proxy.port
        self.call(self.proxy.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def cut(self) -> None:
        self.call(self.proxy.cut())

    def restore(self) -> None:
        self.call(self.proxy.start())

    def close(self) -> None:
        self.call(self.proxy.cut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _postgres_or_skip() -> tuple[str, int]:
    if not PG_URL.startswith(("postgres://", "postgresql://")):
        pytest.skip(f"TEST_DATABASE_URL is not PostgreSQL: {PG_URL}")
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
            port = conn.info.port
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL here
        message = f"PostgreSQL is not reachable at {PG_URL}: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)
        pytest.skip(message)
    return PG_URL.rsplit("/", 1)[0], port


@pytest.fixture(scope="module")
def outage() -> Iterator[tuple[LiveServer, ProxyThread]]:
    import psycopg

    base, port = _postgres_or_skip()
    name = f"sockudo_outage_{os.getpid()}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    proxy = ProxyThread(port)
    host_part = base.split("://", 1)[1].rsplit("@", 1)[0] + "@" if "@" in base else ""
    url = f"postgres://{host_part}127.0.0.1:{proxy.port}/{name}"
    server = LiveServer(env=ENV, database_url=url)
    try:
        server.start()
        yield server, proxy
    finally:
        server.stop()
        if os.environ.get("SHOW_SERVER_LOG"):
            print(server.log())
        proxy.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- helpers -------------------------------------------------------------------------------------


def run(coro: Any) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, TEST_BUDGET)

    return asyncio.run(guarded())


def publish(server: LiveServer, channel: str, data: str) -> httpx.Response:
    raw = json.dumps({"name": "msg", "channel": channel, "data": data}).encode()
    path = f"/apps/{server.app_id}/events"
    query = signed_query("POST", path, server.key, server.secret, raw)
    return httpx.post(
        f"{server.http_url}{path}?{query}",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


def history_http(server: LiveServer, channel: str, **params: Any) -> httpx.Response:
    path = f"/apps/{server.app_id}/channels/{channel}/history"
    query = signed_query(
        "GET", path, server.key, server.secret, params={k: str(v) for k, v in params.items()}
    )
    return httpx.get(f"{server.http_url}{path}?{query}", timeout=10)


def metric(server: LiveServer, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


async def connect_v2(server: LiveServer) -> PusherClient:
    import websockets

    ws = await websockets.connect(
        f"ws://{server.host}:{server.port}/app/{server.key}?protocol=2", open_timeout=5
    )
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return PusherClient(ws, json.loads(first["data"])["socket_id"], first)


async def subscribed(server: LiveServer, channel: str, **extra: Any) -> tuple[PusherClient, dict]:
    client = await connect_v2(server)
    await client.send("sockudo:subscribe", {"channel": channel, "auth": "", **extra})
    frame = await first_of(client, ("sockudo_internal:subscription_succeeded", "sockudo:error"))
    return client, frame


async def first_of(client: PusherClient, events: tuple[str, ...], timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"none of {events} within {timeout}s")
        frame = await client.recv(remaining)
        if frame.get("event") in events:
            return frame


async def ws_history(client: PusherClient, channel: str) -> dict:
    """One ``sockudo:channel_history`` (oldest first): the page, or the error frame."""
    await client.send(
        "sockudo:channel_history", {"channel": channel, "direction": "oldest_first", "limit": 100}
    )
    return await first_of(client, ("sockudo:channel_history", "sockudo:error"))


async def publish_ok(server: LiveServer, channel: str, data: str) -> None:
    response = await asyncio.to_thread(publish, server, channel, data)
    assert response.status_code == 200, response.text


async def cut_for(server: LiveServer, proxy: ProxyThread, channel: str) -> list[str]:
    """Cut the database for CUT_SECONDS, publishing once per 0.5 s meanwhile: every publish must be
    refused loudly (503 service_unavailable, nothing delivered). Returns the refused payloads."""
    await asyncio.to_thread(proxy.cut)
    cut_at = time.monotonic()
    refused = []
    i = 0
    while time.monotonic() - cut_at < CUT_SECONDS:
        started = time.monotonic()
        response = await asyncio.to_thread(publish, server, channel, f"during-{i}")
        took = time.monotonic() - started
        assert response.status_code == 503, (response.status_code, response.text)
        assert response.json()["code"] == "service_unavailable"
        assert response.headers.get("Retry-After")
        refused.append(f"during-{i}")
        i += 1
        await asyncio.sleep(max(0.0, 0.5 - took))
    await asyncio.to_thread(proxy.restore)
    return refused


async def until(check: Any, budget: float = RECOVERY_BUDGET) -> tuple[float, int, Any]:
    """Call ``check`` until it returns a truthy value: (seconds it took, failed tries, value)."""
    start = time.monotonic()
    failures = 0
    while True:
        value = await check()
        if value:
            return time.monotonic() - start, failures, value
        failures += 1
        assert time.monotonic() - start < budget, f"not recovered within {budget} s"
        await asyncio.sleep(0.2)


def log_lines(server: LiveServer, pattern: str) -> list[str]:
    text = server.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if re.search(pattern, line)]


def uid() -> str:
    return uuid.uuid4().hex[:8]


# -- tests ---------------------------------------------------------------------------------------


def test_publishes_fail_loudly_during_the_cut_and_serials_stay_gapless(outage):
    server, proxy = outage
    channel = f"pub-{uid()}"

    async def body() -> None:
        subscriber, ack = await subscribed(server, channel)
        assert ack["event"] == "sockudo_internal:subscription_succeeded", ack
        for i in range(3):
            await publish_ok(server, channel, f"before-{i}")
        refused = await cut_for(server, proxy, channel)

        async def accepted() -> bool:
            return (await asyncio.to_thread(publish, server, channel, "after-0")).status_code == 200

        took, failed, _ = await until(accepted)
        for i in range(1, 3):
            await publish_ok(server, channel, f"after-{i}")
        page = (await asyncio.to_thread(history_http, server, channel, direction="oldest_first")).json()
        serials = [item["serial"] for item in page["items"]]
        data = [item["message"]["data"] for item in page["items"]]
        live = [f for f in await subscriber.nothing(1.0) if f.get("event") == "msg"]
        print(
            f"\n[db outage] publishes refused during the {CUT_SECONDS:.0f} s cut: {len(refused)} (all 503); "
            f"first accepted publish {took:.2f} s after restore ({failed} refused after it); "
            f"stored serials {serials}"
        )
        assert data == [*(f"before-{i}" for i in range(3)), *(f"after-{i}" for i in range(3))]
        assert serials == list(range(1, 7)), "a refused publish left a hole in the stream"
        assert page["continuity"]["complete"] is True
        # Nothing refused was delivered; live subscribers saw the same gapless serials.
        assert [f["data"] for f in live] == data and [f["serial"] for f in live] == serials
        await subscriber.close()

    run(body())


def test_websocket_history_reads_recover_and_failures_are_logged_and_counted(outage):
    server, proxy = outage
    channel = f"read-{uid()}"

    async def body() -> None:
        for i in range(3):
            await publish_ok(server, channel, f"m{i}")
        # Several sockets reading at once, so several worker threads hold a database connection.
        clients = [(await subscribed(server, channel))[0] for _ in range(4)]
        pages = await asyncio.gather(*(ws_history(c, channel) for c in clients))
        assert all(p["event"] == "sockudo:channel_history" for p in pages), pages
        failures_before = metric(server, "sockudo_history_read_failures_total", operation="channel_history")

        await asyncio.to_thread(proxy.cut)
        during = await ws_history(clients[0], channel)
        assert during["event"] == "sockudo:error" and during["data"]["code"] == 4303, during
        await asyncio.sleep(CUT_SECONDS)
        await asyncio.to_thread(proxy.restore)

        async def every_socket_reads() -> bool:
            got = await asyncio.gather(*(ws_history(c, channel) for c in clients))
            return all(p["event"] == "sockudo:channel_history" for p in got)

        took, failed, _ = await until(every_socket_reads)
        # And keep working: no read fails afterwards (each socket reads several times).
        for _ in range(3):
            assert await every_socket_reads()
        page = (await ws_history(clients[0], channel))["data"]
        assert [i["serial"] for i in page["items"]] == [1, 2, 3]
        logged = log_lines(server, rf"history read failed.*{server.app_id}.*{channel}")
        failures = metric(server, "sockudo_history_read_failures_total", operation="channel_history")
        recoveries = metric(server, "sockudo_history_read_recoveries_total", app_id=server.app_id)
        print(
            f"\n[db outage] channel_history over the WebSocket: working again {took:.2f} s after restore "
            f"({failed} failed rounds after it); failures logged {len(logged)}, counted "
            f"{failures - failures_before:.0f}; recoveries counted {recoveries:.0f}"
        )
        assert logged, "the failed history read was not logged with the app id and channel"
        assert "reason=" in logged[0]
        assert failures - failures_before >= 1
        assert recoveries >= 1
        for c in clients:
            await c.close()

    run(body())


def test_v2_subscribe_with_rewind_attaches_after_the_cut(outage):
    server, proxy = outage
    warm = f"warm-{uid()}"

    async def body() -> None:
        for i in range(2):
            await publish_ok(server, warm, f"w{i}")
        # Fresh channels are read from the database at attach (their head) and by the rewind.
        clients = [(await subscribed(server, f"{warm}-{n}", rewind={"count": 5}))[0] for n in range(4)]
        await asyncio.to_thread(proxy.cut)
        await asyncio.sleep(CUT_SECONDS)
        await asyncio.to_thread(proxy.restore)

        async def attaches() -> dict | None:
            client, frame = await subscribed(server, warm, rewind={"count": 5})
            if frame["event"] != "sockudo_internal:subscription_succeeded":
                await client.close()
                return None
            done = await first_of(client, ("sockudo:rewind_complete", "sockudo:error"))
            await client.close()
            return done if done["event"] == "sockudo:rewind_complete" else None

        took, failed, done = await until(attaches)
        fresh = f"fresh-{uid()}"
        client, frame = await subscribed(server, fresh, rewind={"count": 5})
        assert frame["event"] == "sockudo_internal:subscription_succeeded", frame
        print(
            f"\n[db outage] V2 subscribe with rewind: attached {took:.2f} s after restore "
            f"({failed} refused after it); rewind replayed {done['data']['historical_count']}"
        )
        assert done["data"]["historical_count"] == 2
        for c in [*clients, client]:
            await c.close()

    run(body())


def test_cold_resume_works_after_the_cut(outage):
    server, proxy = outage
    channel = f"cold-{uid()}"

    async def body() -> None:
        client, _ = await subscribed(server, channel)
        await publish_ok(server, channel, "seen")
        seen = await client.expect("msg", channel)
        await client.close()
        for i in range(3):
            await publish_ok(server, channel, f"missed-{i}")
        await asyncio.to_thread(proxy.cut)
        await asyncio.sleep(CUT_SECONDS)  # longer than the 1 s hot buffer: the replay is cold
        await asyncio.to_thread(proxy.restore)
        position = {
            "stream_id": seen["stream_id"],
            "serial": seen["serial"],
            "last_message_id": seen["message_id"],
        }

        async def resumes() -> list | None:
            again, _ = await subscribed(server, channel)
            await again.send("sockudo:resume", {"channel_positions": {channel: position}})
            report = json.loads((await again.expect("sockudo:resume_success"))["data"])
            replayed = [f["data"] for f in again.backlog if f.get("event") == "msg"]
            await again.close()
            if report["failed"]:
                return None
            assert report["recovered"][0]["source"] == "cold", report
            return replayed

        took, failed, replayed = await until(resumes)
        print(
            f"\n[db outage] cold resume: replayed {len(replayed)} from history {took:.2f} s after restore ({failed} failed after it)"
        )
        assert replayed == [f"missed-{i}" for i in range(3)]

    run(body())


def test_retention_pass_runs_again_after_the_cut(outage):
    server, proxy = outage

    async def body() -> None:
        await publish_ok(server, f"ret-{uid()}", "x")
        await asyncio.sleep(1.5)  # at least one pass on a pooled connection
        failed_before = metric(server, "sockudo_history_retention_passes_total", outcome="failed")
        await asyncio.to_thread(proxy.cut)
        await asyncio.sleep(CUT_SECONDS)
        failed_during = metric(server, "sockudo_history_retention_passes_total", outcome="failed")
        ok_before = metric(server, "sockudo_history_retention_passes_total", outcome="ok")
        await asyncio.to_thread(proxy.restore)

        async def passed() -> bool:
            return metric(server, "sockudo_history_retention_passes_total", outcome="ok") > ok_before

        took, _, _ = await until(passed)
        print(
            f"\n[db outage] retention: {failed_during - failed_before:.0f} passes failed during the cut, "
            f"a pass succeeded {took:.2f} s after restore"
        )
        assert failed_during > failed_before

    run(body())
