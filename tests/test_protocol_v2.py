"""Protocol V2 on the wire: negotiation, sockudo: spellings, metadata, echo, presence updates.

Driven by raw sockets (exact frames) and by the real ``sockudo-python`` client from PyPI.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from sockudo_python.client import SockudoClient, SockudoOptions, SockudoTransport

from realtime.protocol.signatures import sign_channel
from realtime.testing import PusherClient, signed_query


def v2_url(server, query: str = "") -> str:
    return f"ws://{server.host}:{server.port}/app/{server.key}?protocol=2&client=test&format=json{query}"


def publish(server, body: dict) -> httpx.Response:
    raw = json.dumps(body).encode()
    path = f"/apps/{server.app_id}/events"
    query = signed_query("POST", path, server.key, server.secret, raw)
    return httpx.post(
        f"{server.http_url}{path}?{query}", content=raw, headers={"Content-Type": "application/json"}
    )


def run(coro):
    return asyncio.run(coro)


async def connect_v2(server, query: str = "") -> PusherClient:
    import websockets

    ws = await websockets.connect(v2_url(server, query), open_timeout=5)
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first["event"] == "sockudo:connection_established", first
    assert first["message_id"]  # frames sent to one V2 connection carry a message_id
    data = json.loads(first["data"])
    return PusherClient(ws, data["socket_id"], data)


def test_v2_handshake_and_subscribe_use_sockudo_names(server):
    async def body():
        client = await connect_v2(server)
        await client.send("sockudo:subscribe", {"channel": "v2-plain", "auth": ""})
        ack = await client.expect("sockudo_internal:subscription_succeeded", "v2-plain")
        assert ack["data"] == "{}" and ack["message_id"]
        await client.send("pusher:ping")  # either prefix is accepted inbound
        pong = await client.expect("sockudo:pong")
        assert "message_id" not in pong and "data" not in pong
        await client.send("sockudo:subscribe", {"channel": "bad name!", "auth": ""})
        error = await client.expect("sockudo:error")
        assert error["data"]["code"] == 4300
        await client.close()

    run(body())


@pytest.mark.parametrize("fmt", ["msgpack", "protobuf"])
def test_binary_formats_are_refused_clearly(server, fmt):
    async def body():
        import websockets

        ws = await websockets.connect(
            f"ws://{server.host}:{server.port}/app/{server.key}?protocol=2&format={fmt}", open_timeout=5
        )
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["event"] == "sockudo:error" and error["data"]["code"] == 4007
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4007

    run(body())


def test_one_publish_reaches_v1_and_v2_each_in_its_own_shape(server):
    async def body():
        v1 = await PusherClient.connect(server.ws_url)
        v2 = await connect_v2(server)
        for client, event in ((v1, "pusher:subscribe"), (v2, "sockudo:subscribe")):
            await client.send(event, {"channel": "mixed", "auth": ""})
        await v1.expect("pusher_internal:subscription_succeeded", "mixed")
        await v2.expect("sockudo_internal:subscription_succeeded", "mixed")
        message_id = str(uuid.uuid4())
        response = await asyncio.to_thread(
            publish,
            server,
            {
                "name": "order.created",
                "channel": "mixed",
                "data": {"id": 1},
                "tags": {"region": "eu"},
                "message_id": message_id,
                "extras": {"headers": {"tenant": "acme"}, "idempotencyKey": "k1"},
            },
        )
        assert response.status_code == 200, response.text
        plain = await v1.expect("order.created", "mixed")
        assert plain == {"event": "order.created", "channel": "mixed", "data": '{"id":1}'}
        rich = await v2.expect("order.created", "mixed")
        assert rich["tags"] == {"region": "eu"} and rich["message_id"] == message_id
        assert rich["extras"] == {"headers": {"tenant": "acme"}}  # idempotency keys are never delivered
        assert list(rich)[:3] == ["event", "channel", "data"]
        await v1.close()
        await v2.close()

    run(body())


def test_v2_sender_gets_its_own_client_event_unless_echo_is_off(server):
    channel = "private-echo"

    async def body():
        echoing = await connect_v2(server)
        quiet = await connect_v2(server, "&echo_messages=false")
        v1 = await PusherClient.connect(server.ws_url)
        for client in (echoing, quiet, v1):
            auth = sign_channel(server.key, server.secret, client.socket_id, channel)
            await client.send("pusher:subscribe", {"channel": channel, "auth": auth})
        for client, name in (
            (echoing, "sockudo_internal"),
            (quiet, "sockudo_internal"),
            (v1, "pusher_internal"),
        ):
            await client.expect(f"{name}:subscription_succeeded", channel)
        await echoing.send("client-typing", {"from": "echoing"}, channel)
        assert (await echoing.expect("client-typing", channel))["data"] == {"from": "echoing"}
        assert (await quiet.expect("client-typing", channel))["data"] == {"from": "echoing"}
        assert (await v1.expect("client-typing", channel))["data"] == {"from": "echoing"}
        await quiet.send("client-typing", {"from": "quiet"}, channel)
        assert (await echoing.expect("client-typing", channel))["data"] == {"from": "quiet"}
        assert [f for f in await quiet.nothing(0.4) if f.get("event") == "client-typing"] == []
        assert (await v1.expect("client-typing", channel))["data"] == {"from": "quiet"}
        await v1.send("client-typing", {"from": "v1"}, channel)
        await echoing.expect("client-typing", channel)
        assert [f for f in await v1.nothing(0.4) if f.get("event") == "client-typing"] == []
        for client in (echoing, quiet, v1):
            await client.close()

    run(body())


def test_presence_update_reaches_v2_members_only(server):
    channel = "presence-agents"

    async def join(client, user_id, event):
        data = json.dumps({"user_id": user_id, "user_info": {"status": "idle"}})
        auth = sign_channel(server.key, server.secret, client.socket_id, channel, data)
        await client.send(event, {"channel": channel, "auth": auth, "channel_data": data})

    async def body():
        agent = await connect_v2(server)
        watcher = await connect_v2(server)
        old = await PusherClient.connect(server.ws_url)
        await join(agent, "agent", "sockudo:subscribe")
        await agent.expect("sockudo_internal:subscription_succeeded", channel)
        await join(watcher, "watcher", "sockudo:subscribe")
        await watcher.expect("sockudo_internal:subscription_succeeded", channel)
        await join(old, "old", "pusher:subscribe")
        await old.expect("pusher_internal:subscription_succeeded", channel)
        await agent.send("sockudo:presence_update", {"channel": channel, "data": {"status": "thinking"}})
        for client in (agent, watcher):
            update = await client.expect("sockudo_internal:presence_update", channel)
            assert json.loads(update["data"]) == {"user_id": "agent", "user_info": {"status": "thinking"}}
        assert [f for f in await old.nothing(0.4) if "presence_update" in f.get("event", "")] == []
        await old.send("pusher:presence_update", {"channel": channel, "data": {"x": 1}})
        assert (await old.expect("pusher:error"))["data"]["code"] == 4000  # V2 only
        # A later joiner sees the updated info in the member list.
        late = await connect_v2(server)
        await join(late, "late", "sockudo:subscribe")
        ack = json.loads((await late.expect("sockudo_internal:subscription_succeeded", channel))["data"])
        assert ack["presence"]["hash"]["agent"] == {"status": "thinking"}
        for client in (agent, watcher, old, late):
            await client.close()

    run(body())


def test_sockudo_python_client_receives_events_over_v2(server):
    async def body():
        options = SockudoOptions(
            cluster="local",
            ws_host=server.host,
            ws_port=server.port,
            force_tls=False,
            enabled_transports=[SockudoTransport.WS],
        )
        client = SockudoClient(server.key, options)
        received: asyncio.Queue = asyncio.Queue()
        subscribed = asyncio.Event()
        await client.connect()
        channel = client.subscribe("sdk-feed")
        channel.bind("sockudo:subscription_succeeded", lambda *_: subscribed.set())
        channel.bind("tick", lambda data, *meta: received.put_nowait(data))
        await asyncio.wait_for(subscribed.wait(), 5)
        assert (
            await asyncio.to_thread(
                publish, server, {"name": "tick", "channel": "sdk-feed", "data": {"n": 1}}
            )
        ).status_code == 200
        data = await asyncio.wait_for(received.get(), 5)
        assert data == {"n": 1}
        await client.disconnect()

    run(body())


def test_v2_presence_lease_hides_a_quick_reconnect(server_factory):
    live = server_factory({"PRESENCE_V2_UNGRACEFUL_TIMEOUT_SECONDS": "2"})
    channel = "presence-lease"

    async def join(client, user_id):
        data = json.dumps({"user_id": user_id})
        auth = sign_channel(live.key, live.secret, client.socket_id, channel, data)
        await client.send("sockudo:subscribe", {"channel": channel, "auth": auth, "channel_data": data})
        await client.expect("sockudo_internal:subscription_succeeded", channel)

    def drop(client):
        client.ws.transport.abort()  # no close frame: an abrupt disconnect (1006 on the server)

    async def body():
        watcher = await connect_v2(live)
        await join(watcher, "watcher")
        mobile = await connect_v2(live)
        await join(mobile, "mobile")
        await watcher.expect("sockudo_internal:member_added", channel)
        drop(mobile)
        await asyncio.sleep(0.5)
        back = await connect_v2(live)  # the same user is back within the lease
        await join(back, "mobile")
        await asyncio.sleep(2.5)  # past the old socket's lease
        events = [f["event"] for f in await watcher.nothing(0.3)]
        assert (
            "sockudo_internal:member_removed" not in events and "sockudo_internal:member_added" not in events
        )
        drop(back)  # gone for good: removed once the lease ends, not before
        assert [f for f in await watcher.nothing(1.0) if "member_removed" in f.get("event", "")] == []
        removed = await watcher.expect("sockudo_internal:member_removed", channel, timeout=5)
        assert json.loads(removed["data"]) == {"user_id": "mobile"}
        await watcher.close()

    run(body())


def test_metachannel_reports_a_channels_lifecycle(server):
    channel = f"watched-{uuid.uuid4().hex[:6]}"
    meta = f"[meta]{channel}"

    async def body():
        observer = await connect_v2(server)
        await observer.send("sockudo:subscribe", {"channel": meta})
        await observer.expect("sockudo_internal:subscription_succeeded", meta)
        first = await PusherClient.connect(server.ws_url)
        await first.subscribe(channel)
        await first.expect("pusher_internal:subscription_succeeded", channel)
        occupied = await observer.expect("sockudo_internal:channel_occupied", meta)
        assert occupied["data"] == {"channel": channel, "subscription_count": 1}
        assert (await observer.expect("sockudo_internal:subscription_count", meta))["data"][
            "subscription_count"
        ] == 1
        second = await PusherClient.connect(server.ws_url)
        await second.subscribe(channel)
        await second.expect("pusher_internal:subscription_succeeded", channel)
        assert (await observer.expect("sockudo_internal:subscription_count", meta))["data"][
            "subscription_count"
        ] == 2
        await first.close()
        assert (await observer.expect("sockudo_internal:subscription_count", meta))["data"][
            "subscription_count"
        ] == 1
        await second.close()
        vacated = await observer.expect("sockudo_internal:channel_vacated", meta)
        assert vacated["data"] == {"channel": channel, "subscription_count": 0}
        old = await PusherClient.connect(server.ws_url)
        await old.send("pusher:subscribe", {"channel": meta})
        assert (await old.expect("pusher:error"))["data"]["code"] == 4300  # V2 only
        await observer.send("sockudo:subscribe", {"channel": "[meta]private-x", "auth": "app-key:bad"})
        assert (await observer.expect("sockudo:error"))["data"]["code"] == 4009
        await observer.send("client-x", {"a": 1}, meta)
        assert (await observer.expect("sockudo:error"))["data"]["code"] == 4301
        await observer.close()
        await old.close()

    run(body())


def test_wildcard_subscriptions(server):
    async def body():
        client = await connect_v2(server)
        await client.send("sockudo:subscribe", {"channel": "orders.*"})
        await client.expect("sockudo_internal:subscription_succeeded", "orders.*")
        await client.send("sockudo:subscribe", {"channel": "orders.eu"})  # exact + wildcard: once
        await client.expect("sockudo_internal:subscription_succeeded", "orders.eu")
        for channel in ("orders.eu", "orders.us", "invoices.eu"):
            await asyncio.to_thread(publish, server, {"name": "placed", "channel": channel, "data": channel})
        got = [f for f in await client.nothing(0.6) if f.get("event") == "placed"]
        assert sorted(f["channel"] for f in got) == ["orders.eu", "orders.us"]  # concrete names, once each
        await client.send("sockudo:unsubscribe", {"channel": "orders.*"})
        await asyncio.to_thread(publish, server, {"name": "placed", "channel": "orders.us", "data": "x"})
        assert [f for f in await client.nothing(0.4) if f.get("event") == "placed"] == []
        for bad in ("a*b*", "private-*", "presence-x*", "we#ird*"):
            await client.send("sockudo:subscribe", {"channel": bad})
            assert (await client.expect("sockudo:error"))["data"]["code"] == 4300, bad
        await client.send("client-x", {"a": 1}, "orders.*")
        assert (await client.expect("sockudo:error"))["data"]["code"] == 4301
        v1 = await PusherClient.connect(server.ws_url)
        await v1.send("pusher:subscribe", {"channel": "orders.*"})
        assert (await v1.expect("pusher:error"))["data"]["code"] == 4300
        await client.close()
        await v1.close()

    run(body())
