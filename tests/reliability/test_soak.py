"""A short soak: publishes at a steady rate to 200 subscribers of one channel for about 25 s.

What must hold: every subscriber receives every publish exactly once and in order (0 lost, 0
duplicates), and the server's resident memory stays flat within a bound.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from realtime.testing import LiveServer, PusherClient, signed_query
from tests.reliability._measure import rss_kb

pytestmark = pytest.mark.timeout(90)

SUBSCRIBERS = 200
RATE = 20  # publishes per second
DURATION = 25.0  # seconds of publishing
CHANNEL = "soak"
RSS_BOUND_KB = 8 * 1024  # end minus start (after warm-up)


def test_steady_publishes_reach_every_subscriber_once_with_flat_memory():
    async def scenario() -> None:
        server = await asyncio.to_thread(
            lambda: LiveServer(
                env={"RATE_LIMITER_ENABLED": "false", "SERVER_FAST_PATHS": "true"}, database=False
            ).start()
        )
        clients: list[PusherClient] = []
        try:
            for _ in range(SUBSCRIBERS):
                client = await PusherClient.connect(server.ws_url)
                await client.subscribe(CHANNEL)
                await client.expect("pusher_internal:subscription_succeeded", CHANNEL)
                clients.append(client)
            received: list[list[int]] = [[] for _ in clients]
            others: list[dict] = []

            async def read(index: int, client: PusherClient) -> None:
                async for raw in client.ws:
                    frame = json.loads(raw)
                    if frame.get("event") == "tick":
                        received[index].append(int(frame["data"]))
                    else:
                        others.append(frame)

            readers = [asyncio.create_task(read(i, c)) for i, c in enumerate(clients)]
            path = f"/apps/{server.app_id}/events"
            total = int(DURATION * RATE)
            samples: list[tuple[float, int]] = []
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:

                async def publish(seq: int) -> None:
                    raw = json.dumps({"name": "tick", "channel": CHANNEL, "data": str(seq)}).encode()
                    query = signed_query("POST", path, server.key, server.secret, raw)
                    response = await http.post(
                        f"{path}?{query}", content=raw, headers={"Content-Type": "application/json"}
                    )
                    assert response.status_code == 200, response.text

                for seq in range(RATE):  # warm-up second, not counted
                    await publish(-1 - seq)
                await asyncio.sleep(1.0)
                for index in range(len(received)):
                    received[index].clear()
                started = time.monotonic()
                samples.append((0.0, rss_kb(server.process.pid)))
                for seq in range(total):
                    await asyncio.sleep(max(0.0, started + seq / RATE - time.monotonic()))
                    await publish(seq)
                    if seq % (5 * RATE) == 0 and seq:
                        samples.append((time.monotonic() - started, rss_kb(server.process.pid)))
                published_in = time.monotonic() - started
            deadline = time.monotonic() + 10
            while any(len(r) < total for r in received) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything late (a duplicate) would land now
            samples.append((time.monotonic() - started, rss_kb(server.process.pid)))
            for task in readers:
                task.cancel()

            expected = list(range(total))
            lost = sum(len(set(expected) - set(r)) for r in received)
            duplicates = sum(len(r) - len(set(r)) for r in received)
            in_order = all(r == sorted(r) for r in received)
            deliveries = sum(len(r) for r in received)
            start_kb, end_kb = samples[0][1], samples[-1][1]
            print(
                f"soak: {total} publishes in {published_in:.1f} s ({total / published_in:.1f}/s) to "
                f"{SUBSCRIBERS} subscribers: {deliveries} deliveries, {lost} lost, {duplicates} duplicates, "
                f"in order: {in_order}; RSS start {start_kb / 1024:.1f} MiB, end {end_kb / 1024:.1f} MiB "
                f"(samples {[round(kb / 1024, 1) for _, kb in samples]})"
            )
            assert lost == 0 and duplicates == 0 and in_order
            assert deliveries == total * SUBSCRIBERS
            assert [f for f in others if f.get("event") == "pusher:error"] == []
            assert end_kb - start_kb < RSS_BOUND_KB, samples
            assert server.process.poll() is None
        finally:
            for client in clients:
                client.ws.transport.abort()
            await asyncio.to_thread(server.stop)

    asyncio.run(scenario())
