"""The rate limiter ON at its defaults, against one live server, everything from one address
(127.0.0.1): real users get through, floods are refused, refusals are logged and counted.

One server for the whole module, in this order (the bad-signature flood locks 127.0.0.1 out of the
API for the rest of its minute, so it comes after the publishes): 500 WebSocket connects, 300 signed
publishes, a handshake flood past the bucket, a bad-signature flood, then ``/metrics`` and the log.
Every wait is bounded and every test prints the figure it measured.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from realtime.testing import LiveServer, PusherClient, signed_query

from .._live import transport

OFFICE = 500  # people behind one NAT address opening the app within a minute
BURST = 1000  # RATE_LIMITER_WS_MAX_REQUESTS' default
REFILL = BURST / 60  # ... refilled per RATE_LIMITER_WS_WINDOW_SECONDS' default
PUBLISHES = 300
FAILURE_BUDGET = 20  # RATE_LIMITER_API_MAX_REQUESTS' default


@pytest.fixture(scope="module")
def server():
    live = LiveServer(
        env={"RATE_LIMITER_ENABLED": "true", "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true"}
    ).start()
    yield live
    live.stop()


def refusals(server: LiveServer) -> dict[str, float]:
    """``sockudo_rate_limit_refusals_total`` of the default app, by limit."""
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    found = {}
    for limit, value in re.findall(
        rf'^sockudo_rate_limit_refusals_total\{{app_id="{server.app_id}",limit="(\w+)"\}} (\S+)$', text, re.M
    ):
        found[limit] = float(value)
    return found


async def upgrade_status(server: LiveServer) -> int:
    """Send one WebSocket upgrade on a fresh socket; the status line's code (0 if none)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), 5)
    try:
        writer.write(
            (
                f"GET /app/{server.key}?protocol=7&client=flood&version=1 HTTP/1.1\r\n"
                f"Host: {server.host}:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        line = await asyncio.wait_for(reader.readline(), 10)
        parts = line.split()
        return int(parts[1]) if len(parts) > 1 else 0
    finally:
        writer.close()


def test_500_connects_from_one_address_within_a_minute_all_succeed(server):
    async def scenario() -> float:
        started = time.monotonic()
        clients: list[PusherClient] = []
        try:
            for _ in range(OFFICE // 50):  # 50 at a time, as fast as the server takes them
                clients += await asyncio.gather(*(PusherClient.connect(server.ws_url) for _ in range(50)))
            elapsed = time.monotonic() - started
            assert len(clients) == OFFICE
            assert all(client.socket_id for client in clients)
            return elapsed
        finally:
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)

    elapsed = asyncio.run(asyncio.wait_for(scenario(), 60))
    print(f"\n{OFFICE} WebSocket connects from one address: all accepted in {elapsed:.2f} s")
    assert elapsed < 60


def test_backend_publishing_from_one_address_is_not_held_back(server):
    path = f"/apps/{server.app_id}/events"

    def publish(i: int) -> int:
        raw = json.dumps({"name": "order", "channel": f"orders-{i % 10}", "data": str(i)}).encode()
        query = signed_query("POST", path, server.key, server.secret, raw)
        response = client.post(
            f"{server.http_url}{path}?{query}", content=raw, headers={"Content-Type": "application/json"}
        )
        return response.status_code

    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=8)) as client:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(publish, range(PUBLISHES)))
        elapsed = time.monotonic() - started
    ok = statuses.count(200)
    print(
        f"\n{PUBLISHES} signed publishes from one address in {elapsed:.2f} s "
        f"({PUBLISHES / elapsed:.0f} events/s): {ok} got 200 (Sockudo's defaults: 100)"
    )
    assert ok == PUBLISHES, {status: statuses.count(status) for status in set(statuses)}
    assert elapsed < 30


def test_handshake_flood_past_the_burst_is_refused(server):
    """The 500 connects above used half the bucket; a flood of 1,500 more from the same address
    gets the other half plus the refill and no more."""
    flood = 1500
    refused_status = 429 if transport(server) == "tuned" else 403

    async def scenario() -> tuple[list[int], float]:
        gate = asyncio.Semaphore(100)

        async def one() -> int:
            async with gate:
                return await upgrade_status(server)

        started = time.monotonic()
        statuses = await asyncio.gather(*(one() for _ in range(flood)))
        return statuses, time.monotonic() - started

    statuses, elapsed = asyncio.run(asyncio.wait_for(scenario(), 90))
    accepted, refused = statuses.count(101), statuses.count(refused_status)
    # Since the first connect: BURST tokens plus the refill over the whole module so far.
    print(
        f"\nhandshake flood from one address: {flood} upgrades in {elapsed:.2f} s "
        f"({flood / elapsed:.0f}/s): {accepted} accepted, {refused} refused ({refused_status})"
    )
    assert accepted + refused == flood, {status: statuses.count(status) for status in set(statuses)}
    assert refused >= flood - (BURST - OFFICE) - REFILL * (elapsed + 60)
    assert refused > flood / 2


def test_bad_signatures_are_refused_after_the_budget_and_cheaply(server):
    path = f"/apps/{server.app_id}/channels"
    statuses, seconds = [], []
    with httpx.Client(timeout=10) as client:
        for _ in range(200):
            query = signed_query("GET", path, server.key, "guessed-secret")
            started = time.perf_counter()
            statuses.append(client.get(f"{server.http_url}{path}?{query}").status_code)
            seconds.append(time.perf_counter() - started)
        signed = signed_query("GET", path, server.key, server.secret)
        locked = client.get(f"{server.http_url}{path}?{signed}")
    through = statuses.count(401)
    checked = [s for s, status in zip(seconds, statuses, strict=True) if status == 401]
    refused = [s for s, status in zip(seconds, statuses, strict=True) if status == 429]
    print(
        f"\n200 bad signatures from one address: {through} verified and answered 401, "
        f"{len(refused)} refused 429 before verification "
        f"(mean {1000 * sum(checked) / len(checked):.2f} ms vs {1000 * sum(refused) / len(refused):.2f} ms); "
        f"a correctly signed request from that address then: {locked.status_code}"
    )
    assert through == FAILURE_BUDGET
    assert statuses[FAILURE_BUDGET:] == [429] * (200 - FAILURE_BUDGET)
    assert locked.status_code == 429  # locked out for the rest of the window, signed or not


def test_refusals_are_counted_and_logged_once_per_client(server):
    counted = refusals(server)
    log = server.log_path.read_text()
    lines = [line for line in log.splitlines() if "rate limit refusal:" in line]
    print(f"\n/metrics refusals: {counted}; log lines: {len(lines)}")
    for line in lines:
        print("   ", line.strip()[:200])
    assert counted.get("upgrade_ip", 0) > 500
    assert counted.get("auth_failures", 0) == 200 - FAILURE_BUDGET + 1  # the flood, then the signed one
    upgrade_lines = [line for line in lines if "limit=upgrade_ip" in line]
    auth_lines = [line for line in lines if "limit=auth_failures" in line]
    assert len(upgrade_lines) == 1 and f"app={server.app_id} client=127.0.0.1" in upgrade_lines[0]
    assert len(auth_lines) == 1 and f"app={server.app_id} client=127.0.0.1" in auth_lines[0]
