"""Protocol V2 message identity and connection recovery (``sockudo:resume``) from the hot buffer."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sockudo_python.client import SockudoClient, SockudoOptions, SockudoTransport

from realtime.testing import LiveServer, PusherClient, signed_query

BUFFER = 5
ENV = {
    "CONNECTION_RECOVERY_ENABLED": "true",
    "CONNECTION_RECOVERY_MAX_BUFFER_SIZE": str(BUFFER),
    "HISTORY_ENABLED": "true",
    "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
}


@pytest.fixture(scope="module")
def live():
    with LiveServer(env=ENV) as server:
        yield server


def publish(server, channel: str, data: str, name: str = "msg") -> httpx.Response:
    raw = json.dumps({"name": name, "channel": channel, "data": data}).encode()
    path = f"/apps/{server.app_id}/events"
    query = signed_query("POST", path, server.key, server.secret, raw)
    response = httpx.post(
        f"{server.http_url}{path}?{query}", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    return response


async def connect_v2(server) -> PusherClient:
    import websockets

    ws = await websockets.connect(
        f"ws://{server.host}:{server.port}/app/{server.key}?protocol=2", open_timeout=5
    )
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first["event"] == "sockudo:connection_established"
    return PusherClient(ws, json.loads(first["data"])["socket_id"], first)


async def subscribed(server, channel: str) -> PusherClient:
    client = await connect_v2(server)
    await client.send("sockudo:subscribe", {"channel": channel, "auth": ""})
    await client.expect("sockudo_internal:subscription_succeeded", channel)
    return client


def position(frame: dict) -> dict:
    return {
        "stream_id": frame["stream_id"],
        "serial": frame["serial"],
        "last_message_id": frame["message_id"],
    }


def test_broadcasts_carry_identity_for_v2_and_nothing_for_v1(live):
    channel = f"ident-{uuid.uuid4().hex[:6]}"

    async def body():
        v2 = await subscribed(live, channel)
        v1 = await PusherClient.connect(live.ws_url)
        await v1.subscribe(channel)
        await v1.expect("pusher_internal:subscription_succeeded", channel)
        for i in range(3):
            await asyncio.to_thread(publish, live, channel, f"m{i}")
        frames = [await v2.expect("msg", channel) for _ in range(3)]
        assert [f["serial"] for f in frames] == [1, 2, 3]
        assert len({f["stream_id"] for f in frames}) == 1
        assert len({f["message_id"] for f in frames}) == 3
        plain = await v1.expect("msg", channel)
        assert set(plain) == {"event", "channel", "data"}
        await v1.close()
        await v2.close()

    asyncio.run(body())


def test_resume_replays_exactly_the_missed_messages_in_order(live):
    channel = f"resume-{uuid.uuid4().hex[:6]}"

    async def body():
        client = await subscribed(live, channel)
        await asyncio.to_thread(publish, live, channel, "seen")
        last = await client.expect("msg", channel)
        await client.close()
        for i in range(3):
            await asyncio.to_thread(publish, live, channel, f"missed-{i}")
        again = await subscribed(live, channel)
        await again.send("sockudo:resume", json.dumps({"channel_positions": {channel: position(last)}}))
        replayed = [await again.expect("msg", channel) for _ in range(3)]
        assert [f["data"] for f in replayed] == ["missed-0", "missed-1", "missed-2"]
        assert [f["serial"] for f in replayed] == [last["serial"] + 1, last["serial"] + 2, last["serial"] + 3]
        success = await again.expect("sockudo:resume_success")
        report = json.loads(success["data"])
        assert report["failed"] == []
        assert report["recovered"] == [
            {"channel": channel, "source": "hot", "replayed": 3, "position": position(replayed[-1])}
        ]
        await asyncio.to_thread(publish, live, channel, "live")
        assert (await again.expect("msg", channel))["serial"] == last["serial"] + 4
        await again.close()

    asyncio.run(body())


def test_resume_fails_clearly_for_a_foreign_stream_or_an_expired_position(live):
    channel = f"fail-{uuid.uuid4().hex[:6]}"

    async def body():
        client = await subscribed(live, channel)
        await asyncio.to_thread(publish, live, channel, "first")
        first = await client.expect("msg", channel)
        for i in range(BUFFER + 2):  # more than the buffer holds
            await asyncio.to_thread(publish, live, channel, f"x{i}")
        await client.send(
            "sockudo:resume",
            {
                "channel_positions": {
                    channel: position(first),
                    "other-stream": {"stream_id": "not-a-stream", "serial": 1},
                }
            },
        )
        failures = {}
        for _ in range(2):
            frame = await client.expect("sockudo:resume_failed")
            data = json.loads(frame["data"])
            assert data["channel"] == frame["channel"]  # clients read the channel from data
            failures[frame["channel"]] = data
        assert failures[channel]["code"] == "position_expired"
        # A stream this server never had: nothing can vouch for the gap (with history on, the
        # durable store reports the position as ahead of its stream).
        assert failures["other-stream"]["code"] in ("position_expired", "continuity_unverifiable")
        report = json.loads((await client.expect("sockudo:resume_success"))["data"])
        assert report["recovered"] == [] and len(report["failed"]) == 2
        # A position on the right channel but another stream is a reset.
        await client.send(
            "sockudo:resume", {"channel_positions": {channel: {"stream_id": "old", "serial": 2}}}
        )
        reset = json.loads((await client.expect("sockudo:resume_failed", channel))["data"])
        assert reset["code"] == "stream_reset" and reset["current_stream_id"] == first["stream_id"]
        await client.close()

    asyncio.run(body())


def test_resume_errors(live):
    async def body():
        client = await connect_v2(live)
        await client.send("sockudo:resume", {"channel_positions": {}})
        assert (await client.expect("sockudo:error"))["data"]["code"] == 4302
        await client.send("sockudo:resume", "{not json")
        assert (await client.expect("sockudo:error"))["data"]["code"] == 4000
        await client.close()

    asyncio.run(body())


def test_resume_without_recovery_enabled_is_4301(server):
    async def body():
        client = await connect_v2(server)
        await client.send("sockudo:resume", {"channel_positions": {"a": {"stream_id": "s", "serial": 1}}})
        assert (await client.expect("sockudo:error"))["data"]["code"] == 4301
        await client.close()

    asyncio.run(body())


def test_sockudo_python_recovers_after_its_socket_is_cut(live):
    channel = f"sdk-{uuid.uuid4().hex[:6]}"

    async def body():
        options = SockudoOptions(
            cluster="local",
            ws_host=live.host,
            ws_port=live.port,
            force_tls=False,
            enabled_transports=[SockudoTransport.WS],
            connection_recovery=True,
        )
        client = SockudoClient(live.key, options)
        received: list = []
        got = asyncio.Event()
        resumed = asyncio.Event()
        await client.connect()
        feed = client.subscribe(channel)
        feed.bind("msg", lambda data, *meta: (received.append(data), got.set()))
        client.bind("sockudo:resume_success", lambda *_: resumed.set())
        subscribed_once = asyncio.Event()
        feed.bind("sockudo:subscription_succeeded", lambda *_: subscribed_once.set())
        await asyncio.wait_for(subscribed_once.wait(), 5)
        await asyncio.to_thread(publish, live, channel, json.dumps({"n": 0}))
        await asyncio.wait_for(got.wait(), 5)
        # Cut the socket under the client (as a network drop would), then publish while it is away.
        client.socket.transport.abort() if hasattr(
            client.socket, "transport"
        ) else await client.socket.close()
        await asyncio.sleep(0.2)
        for n in (1, 2, 3):
            await asyncio.to_thread(publish, live, channel, json.dumps({"n": n}))
        await asyncio.wait_for(resumed.wait(), 15)
        for _ in range(50):
            if len(received) >= 4:
                break
            await asyncio.sleep(0.1)
        assert [item["n"] for item in received] == [0, 1, 2, 3]
        await client.disconnect()

    asyncio.run(body())


def purge(server, channel: str) -> None:
    path = f"/apps/{server.app_id}/channels/{channel}/history/purge"
    body = json.dumps(
        {"confirm_channel": channel, "confirm_operation": "purge", "reason": "property test", "mode": "all"}
    ).encode()
    query = signed_query("POST", path, server.key, server.secret, body)
    response = httpx.post(
        f"{server.http_url}{path}?{query}", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text


@settings(
    max_examples=25,
    deadline=None,
    print_blob=True,  # a failure prints the blob that reproduces it (@reproduce_failure)
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.integers(1, 4)),
            st.just(("reconnect", 0)),
            st.just(("purge", 0)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_property_recovered_equals_missed_or_resume_failed(live, steps):
    """Random publish / disconnect / reconnect / purge sequences: a resume yields exactly the missed
    messages, in order, without duplicates or foreign messages, or a resume_failed."""
    channel = f"prop-{uuid.uuid4().hex[:8]}"

    async def body():
        client = await subscribed(live, channel)
        await asyncio.to_thread(publish, live, channel, "start")
        last = await client.expect("msg", channel)
        counter = 0
        connected = True
        missed: list[str] = []
        for kind, amount in steps:
            if kind == "purge":  # durable history dropped: the hot buffer must still be exact
                await asyncio.to_thread(purge, live, channel)
                continue
            if kind == "publish":
                for _ in range(amount):
                    counter += 1
                    data = f"p{counter}"
                    await asyncio.to_thread(publish, live, channel, data)
                    if connected:
                        frame = await client.expect("msg", channel)
                        assert frame["data"] == data
                        last = frame
                    else:
                        missed.append(data)
                if connected and amount:
                    await client.close()
                    connected = False
            else:
                if connected:
                    await client.close()
                client = await subscribed(live, channel)
                await client.send("sockudo:resume", {"channel_positions": {channel: position(last)}})
                frames = []
                while True:
                    frame = await client.recv()
                    if frame["event"] == "sockudo:resume_success":
                        break
                    frames.append(frame)
                failed = [f for f in frames if f["event"] == "sockudo:resume_failed"]
                replayed = [f for f in frames if f["event"] == "msg"]
                if failed:
                    assert len(missed) > BUFFER and replayed == [], (missed, frames)
                else:
                    assert [f["data"] for f in replayed] == missed, (missed, replayed)
                    serials = [f["serial"] for f in replayed]
                    assert serials == list(range(last["serial"] + 1, last["serial"] + 1 + len(missed)))
                if replayed:
                    last = replayed[-1]
                elif failed:
                    # Start over from the live stream, as a client does after resume_failed.
                    await asyncio.to_thread(publish, live, channel, "rejoin")
                    last = await client.expect("msg", channel)
                missed = []
                connected = True
        await client.close()

    asyncio.run(body())
