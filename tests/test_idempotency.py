"""Idempotent HTTP publishes: a retried request with the same key is delivered once and stored once."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from realtime.testing import LiveServer, PusherClient, signed_query


def post(server, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    raw = json.dumps(body).encode()
    query = signed_query("POST", path, server.key, server.secret, raw)
    return httpx.post(
        f"{server.http_url}{path}?{query}",
        content=raw,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def events(server, body: dict, headers: dict | None = None) -> httpx.Response:
    return post(server, f"/apps/{server.app_id}/events", body, headers)


async def listener(server, channel: str) -> PusherClient:
    client = await PusherClient.connect(server.ws_url)
    await client.subscribe(channel)
    await client.expect("pusher_internal:subscription_succeeded", channel)
    return client


async def received(client: PusherClient, name: str) -> list[dict]:
    return [f for f in await client.nothing(0.6) if f.get("event") == name]


def test_a_retried_publish_is_delivered_once_with_the_first_response(server):
    channel = f"idem-{uuid.uuid4().hex[:6]}"
    key = uuid.uuid4().hex

    async def body():
        client = await listener(server, channel)
        first = await asyncio.to_thread(
            events,
            server,
            {
                "name": "e",
                "channel": channel,
                "data": "1",
                "idempotency_key": key,
                "info": "subscription_count",
            },
        )
        second = await asyncio.to_thread(
            events,
            server,
            {
                "name": "e",
                "channel": channel,
                "data": "1",
                "idempotency_key": key,
                "info": "subscription_count",
            },
        )
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == {"channels": {channel: {"subscription_count": 1}}}
        assert len(await received(client, "e")) == 1
        header = uuid.uuid4().hex
        for _ in range(3):
            response = await asyncio.to_thread(
                events, server, {"name": "h", "channel": channel, "data": "x"}, {"X-Idempotency-Key": header}
            )
            assert response.status_code == 200
        assert len(await received(client, "h")) == 1
        other = await asyncio.to_thread(
            events,
            server,
            {"name": "h", "channel": channel, "data": "x"},
            {"X-Idempotency-Key": uuid.uuid4().hex},
        )
        assert other.status_code == 200 and len(await received(client, "h")) == 1
        await client.close()

    asyncio.run(body())


def test_a_failed_request_does_not_burn_its_key(server):
    channel = f"idem-{uuid.uuid4().hex[:6]}"
    key = uuid.uuid4().hex

    async def body():
        client = await listener(server, channel)
        bad = await asyncio.to_thread(
            events, server, {"name": "e", "channel": "bad channel!", "data": "1", "idempotency_key": key}
        )
        assert bad.status_code == 400
        good = await asyncio.to_thread(
            events, server, {"name": "e", "channel": channel, "data": "1", "idempotency_key": key}
        )
        assert good.status_code == 200
        assert len(await received(client, "e")) == 1
        too_long = await asyncio.to_thread(
            events, server, {"name": "e", "channel": channel, "data": "1", "idempotency_key": "k" * 129}
        )
        assert too_long.status_code == 400
        await client.close()

    asyncio.run(body())


def test_batch_items_with_a_used_key_are_skipped_and_batches_replay(server):
    channel = f"idem-{uuid.uuid4().hex[:6]}"
    item_key = uuid.uuid4().hex
    path = f"/apps/{server.app_id}/batch_events"

    async def body():
        client = await listener(server, channel)
        batch = {
            "batch": [
                {"name": "a", "channel": channel, "data": "1", "idempotency_key": item_key},
                {"name": "b", "channel": channel, "data": "2"},
            ]
        }
        assert (await asyncio.to_thread(post, server, path, batch)).status_code == 200
        assert (await asyncio.to_thread(post, server, path, batch)).status_code == 200
        frames = await client.nothing(0.6)
        assert [f["event"] for f in frames if f.get("event") in ("a", "b")].count("a") == 1
        assert [f["event"] for f in frames if f.get("event") in ("a", "b")].count("b") == 2
        header = {"X-Idempotency-Key": uuid.uuid4().hex}
        plain = {"batch": [{"name": "c", "channel": channel, "data": "3"}]}
        for _ in range(2):
            assert (await asyncio.to_thread(post, server, path, plain, header)).status_code == 200
        assert len(await received(client, "c")) == 1
        await client.close()

    asyncio.run(body())


def test_keys_are_shared_across_cluster_nodes():
    prefix = f"idem-{uuid.uuid4().hex[:8]}:"
    env = {"ADAPTER_DRIVER": "redis", "REDIS_PREFIX": prefix}
    with LiveServer(env=env) as a, LiveServer(env=env) as b:

        async def body():
            channel = "shared"
            client = await listener(a, channel)
            await asyncio.sleep(0.3)
            key = uuid.uuid4().hex
            for node in (a, b, a):
                response = await asyncio.to_thread(
                    events, node, {"name": "e", "channel": channel, "data": "1", "idempotency_key": key}
                )
                assert response.status_code == 200
            assert len(await received(client, "e")) == 1
            await client.close()

        asyncio.run(body())
