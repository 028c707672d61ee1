"""Two server processes sharing one real Redis behave as one server.

Needs Redis on 127.0.0.1:6379 (``.ci/run`` starts it); these tests fail, never skip, without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid

import httpx
import pytest

from realtime.testing import LiveServer, PusherClient, TcpProxy, signed_query
from tests.reliability._cluster import publish

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FAST_HEALTH = {
    "CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS": "300",
    "CLUSTER_HEALTH_NODE_TIMEOUT_MS": "2000",
    "CLUSTER_HEALTH_CLEANUP_INTERVAL_MS": "300",
}


def cluster_env(prefix: str, redis_url: str = REDIS_URL, **extra: str) -> dict[str, str]:
    return {
        "ADAPTER_DRIVER": "redis",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        **FAST_HEALTH,
        **extra,
    }


@pytest.fixture(scope="module")
def nodes():
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    a = LiveServer(env=cluster_env(prefix)).start()
    b = LiveServer(env=cluster_env(prefix)).start()
    time.sleep(0.5)  # both subscribed to the broadcast topic
    yield a, b
    a.stop()
    b.stop()


def get(node: LiveServer, path: str, params: dict | None = None) -> httpx.Response:
    query = signed_query("GET", path, node.key, node.secret, params=params)
    return httpx.get(f"{node.http_url}{path}?{query}", timeout=10)


def presence_data(user_id: str) -> dict:
    return {"user_id": user_id, "user_info": {"name": user_id.upper()}}


async def subscribed_on_each(channel: str, *servers: LiveServer) -> list[PusherClient]:
    """One client per node, each subscribed to ``channel`` (and given time to reach Redis)."""
    clients = []
    for server in servers:
        client = await PusherClient.connect(server.ws_url)
        await client.subscribe(channel)
        await client.expect("pusher_internal:subscription_succeeded", channel)
        clients.append(client)
    await asyncio.sleep(0.2)
    return clients


def test_a_burst_of_concurrent_publishes_is_accepted_and_delivered_once_on_both_nodes(nodes):
    """Hundreds of publishes in flight at once: none refused for want of Redis connections, each
    delivered exactly once on each node (they share one pipelined write to Redis per loop turn)."""
    a, b = nodes
    count = 300

    async def scenario():
        on_a, on_b = await subscribed_on_each("burst", a, b)
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:

            async def one(i: int) -> int:
                body = json.dumps({"name": "tick", "channel": "burst", "data": str(i)}).encode()
                path = f"/apps/{a.app_id}/events"
                query = signed_query("POST", path, a.key, a.secret, body)
                response = await http.post(
                    f"{a.http_url}{path}?{query}", content=body, headers={"Content-Type": "application/json"}
                )
                return response.status_code

            statuses = await asyncio.gather(*(one(i) for i in range(count)))
        assert statuses == [200] * count
        for client in (on_a, on_b):
            got = [await client.expect("tick", "burst", timeout=10) for _ in range(count)]
            assert sorted(int(f["data"]) for f in got) == list(range(count))
            assert [f for f in await client.nothing() if f.get("event") == "tick"] == []
            await client.close()

    asyncio.run(scenario())


def test_event_published_on_one_node_reaches_subscribers_on_both(nodes):
    a, b = nodes

    async def scenario():
        on_a, on_b = await subscribed_on_each("orders", a, b)
        response = await asyncio.to_thread(publish, b, {"name": "created", "channel": "orders", "data": "x"})
        assert response.status_code == 200, response.text
        got_a = await on_a.expect("created", "orders")
        got_b = await on_b.expect("created", "orders")
        assert got_a["data"] == got_b["data"] == "x"
        assert await on_a.nothing(0.3) == [] and await on_b.nothing(0.3) == []  # exactly once
        for client in (on_a, on_b):
            await client.close()

    asyncio.run(scenario())


def test_socket_id_exclusion_across_nodes(nodes):
    a, b = nodes

    async def scenario():
        excluded = await PusherClient.connect(a.ws_url)
        other = await PusherClient.connect(b.ws_url)
        for client in (excluded, other):
            await client.subscribe("excl")
            await client.expect("pusher_internal:subscription_succeeded", "excl")
        await asyncio.sleep(0.2)
        body = {"name": "e", "channel": "excl", "data": "1", "socket_id": excluded.socket_id}
        assert (await asyncio.to_thread(publish, b, body)).status_code == 200
        await other.expect("e", "excl")
        assert [f for f in await excluded.nothing(0.5) if f.get("event") == "e"] == []
        await excluded.close()
        await other.close()

    asyncio.run(scenario())


def test_presence_is_cluster_wide_and_events_are_sent_once(nodes):
    a, b = nodes
    channel = f"presence-room-{uuid.uuid4().hex[:6]}"

    async def scenario():
        ada = await PusherClient.connect(a.ws_url)
        await ada.subscribe(channel, a.key, a.secret, presence_data("ada"))
        first = await ada.expect("pusher_internal:subscription_succeeded", channel)
        assert json.loads(first["data"])["presence"]["count"] == 1

        bo = await PusherClient.connect(b.ws_url)
        await bo.subscribe(channel, b.key, b.secret, presence_data("bo"))
        joined = json.loads((await bo.expect("pusher_internal:subscription_succeeded", channel))["data"])[
            "presence"
        ]
        assert sorted(joined["ids"]) == ["ada", "bo"] and joined["hash"]["ada"] == {"name": "ADA"}
        added = await ada.expect("pusher_internal:member_added", channel)
        assert json.loads(added["data"]) == {"user_id": "bo", "user_info": {"name": "BO"}}

        # A second socket of "bo" on the other node: no second member_added anywhere.
        bo2 = await PusherClient.connect(a.ws_url)
        await bo2.subscribe(channel, a.key, a.secret, presence_data("bo"))
        await bo2.expect("pusher_internal:subscription_succeeded", channel)
        assert [f for f in await ada.nothing(0.5) if f.get("event") == "pusher_internal:member_added"] == []

        users = await asyncio.to_thread(get, a, f"/apps/{a.app_id}/channels/{channel}/users")
        assert sorted(u["id"] for u in users.json()["users"]) == ["ada", "bo"]
        info = await asyncio.to_thread(
            get, b, f"/apps/{b.app_id}/channels/{channel}", {"info": "user_count,subscription_count"}
        )
        assert info.json() == {"occupied": True, "user_count": 2, "subscription_count": 3}
        listing = await asyncio.to_thread(
            get, a, f"/apps/{a.app_id}/channels", {"filter_by_prefix": "presence-", "info": "user_count"}
        )
        assert listing.json()["channels"][channel] == {"user_count": 2}

        # bo leaves one socket: still a member; after the last, exactly one member_removed.
        await bo.close()
        assert [f for f in await ada.nothing(0.6) if f.get("event") == "pusher_internal:member_removed"] == []
        await bo2.send("pusher:unsubscribe", {"channel": channel})
        removed = await ada.expect("pusher_internal:member_removed", channel)
        assert json.loads(removed["data"]) == {"user_id": "bo"}
        assert [f for f in await ada.nothing(0.5) if f.get("event") == "pusher_internal:member_removed"] == []
        await bo2.close()
        await ada.close()

    asyncio.run(scenario())


def test_terminate_connections_reaches_the_other_node(nodes):
    a, b = nodes
    user = f"u-{uuid.uuid4().hex[:6]}"

    async def scenario():
        target = await PusherClient.connect(b.ws_url)
        await target.signin(b.key, b.secret, {"id": user})
        await target.expect("pusher:signin_success")
        path = f"/apps/{a.app_id}/users/{user}/terminate_connections"
        query = signed_query("POST", path, a.key, a.secret, b"{}")
        response = await asyncio.to_thread(
            httpx.post,
            f"{a.http_url}{path}?{query}",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200
        with pytest.raises(Exception):  # noqa: B017 - the socket is closed by the server
            while True:
                await target.recv(timeout=5)
        assert target.ws.close_code == 4009

    asyncio.run(scenario())


def test_dead_node_members_are_removed_once_within_the_bound():
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    channel = "presence-dead"
    with LiveServer(env=cluster_env(prefix)) as survivor:
        doomed = LiveServer(env=cluster_env(prefix)).start()
        try:

            async def scenario():
                watcher = await PusherClient.connect(survivor.ws_url)
                await watcher.subscribe(channel, survivor.key, survivor.secret, presence_data("watcher"))
                await watcher.expect("pusher_internal:subscription_succeeded", channel)
                victim = await PusherClient.connect(doomed.ws_url)
                await victim.subscribe(channel, doomed.key, doomed.secret, presence_data("victim"))
                await victim.expect("pusher_internal:subscription_succeeded", channel)
                await watcher.expect("pusher_internal:member_added", channel)
                doomed.process.send_signal(signal.SIGKILL)
                started = time.monotonic()
                removed = await watcher.expect("pusher_internal:member_removed", channel, timeout=10)
                elapsed = time.monotonic() - started
                assert json.loads(removed["data"]) == {"user_id": "victim"}
                assert elapsed < 2.0 + 0.3 + 2.0  # node timeout + cleanup interval + slack
                assert [
                    f
                    for f in await watcher.nothing(1.0)
                    if f.get("event") == "pusher_internal:member_removed"
                ] == []
                users = await asyncio.to_thread(
                    get, survivor, f"/apps/{survivor.app_id}/channels/{channel}/users"
                )
                assert [u["id"] for u in users.json()["users"]] == ["watcher"]
                await watcher.close()

            asyncio.run(scenario())
        finally:
            doomed.stop()


def test_publish_answers_503_while_redis_is_away_and_recovers():
    async def scenario():
        proxy = TcpProxy()
        await proxy.start()
        prefix = f"test-{uuid.uuid4().hex[:8]}:"
        node = await asyncio.to_thread(
            lambda: LiveServer(env=cluster_env(prefix, f"redis://127.0.0.1:{proxy.port}/0")).start()
        )
        try:
            client = await PusherClient.connect(node.ws_url)
            await client.subscribe("feed")
            await client.expect("pusher_internal:subscription_succeeded", "feed")
            assert (
                await asyncio.to_thread(publish, node, {"name": "a", "channel": "feed", "data": "1"})
            ).status_code == 200
            await client.expect("a", "feed")

            await proxy.cut()
            statuses = set()
            refused = set()
            for attempt in range(10):
                data = f"b{attempt}"
                response = await asyncio.to_thread(
                    publish, node, {"name": "b", "channel": "feed", "data": data}
                )
                statuses.add(response.status_code)
                if response.status_code == 503:
                    assert response.json()["code"] == "service_unavailable"
                    assert response.headers["Retry-After"]
                    refused.add(data)
                    break
                await asyncio.sleep(0.2)
            assert 503 in statuses
            await client.send("pusher:ping")
            await client.expect("pusher:pong")  # sockets stay up

            await proxy.start()
            deadline = time.monotonic() + 15
            while True:
                response = await asyncio.to_thread(
                    publish, node, {"name": "c", "channel": "feed", "data": "3"}
                )
                if response.status_code == 200:
                    break
                assert time.monotonic() < deadline, "node did not recover after Redis came back"
                await asyncio.sleep(0.3)
            frame = await client.expect("c", "feed")
            assert frame["data"] == "3"
            # A publish answered 503 reached nobody, not even this node's own subscribers: the
            # caller can retry it without anyone seeing it twice.
            delivered = {f["data"] for f in await client.nothing() if f.get("event") == "b"}
            assert not delivered & refused, delivered
            await client.close()
        finally:
            await asyncio.to_thread(node.stop)
            await proxy.cut()

    asyncio.run(scenario())


def test_metachannel_watchers_hear_counts_changed_on_the_other_node(nodes):
    """A V2 ``[meta]`` watcher on node A sees the channel occupied, counted and vacated by
    subscribers on node B (even though the app does not enable subscription_count)."""
    from tests.test_protocol_v2 import connect_v2

    a, b = nodes
    channel = f"watched-{uuid.uuid4().hex[:6]}"
    meta = f"[meta]{channel}"

    async def scenario():
        watcher = await connect_v2(a)
        await watcher.send("sockudo:subscribe", {"channel": meta})
        await watcher.expect("sockudo_internal:subscription_succeeded", meta)
        await asyncio.sleep(0.2)  # the watcher is counted in Redis
        first, second = [await PusherClient.connect(b.ws_url) for _ in range(2)]
        await first.subscribe(channel)
        await first.expect("pusher_internal:subscription_succeeded", channel)
        occupied = await watcher.expect("sockudo_internal:channel_occupied", meta)
        assert occupied["data"] == {"channel": channel, "subscription_count": 1}
        count = await watcher.expect("sockudo_internal:subscription_count", meta)
        assert count["data"]["subscription_count"] == 1
        await second.subscribe(channel)
        await second.expect("pusher_internal:subscription_succeeded", channel)
        count = await watcher.expect("sockudo_internal:subscription_count", meta)
        assert count["data"]["subscription_count"] == 2
        await first.close()
        count = await watcher.expect("sockudo_internal:subscription_count", meta)
        assert count["data"]["subscription_count"] == 1
        await second.close()
        vacated = await watcher.expect("sockudo_internal:channel_vacated", meta)
        assert vacated["data"] == {"channel": channel, "subscription_count": 0}
        assert await watcher.nothing(0.3) == []
        await watcher.close()

    asyncio.run(scenario())
