"""Every V1 error code the server produces (protocol-v1 §2.2), over real sockets against a live
server: the exact code, and whether the socket stays open (non-fatal) or is closed with that code
(fatal). After each error a fresh client must still be served (subscribe + HTTP-published event)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from realtime.testing import LiveServer

from ._live import (
    WAIT,
    AppCreds,
    assert_serves,
    channel_auth,
    close_all,
    close_reason,
    connect,
    creds_of,
    default_app,
    eventually,
    expect_error,
    expect_fatal,
    extra_app,
    publish,
    raw_connect,
    read_until_closed,
    run,
    serving,
    signed_in,
    still_open,
    subscribed,
    uid,
    user_auth,
)

DISABLED = extra_app("2001", enabled=False)
QUOTA = extra_app("2002", max_connections=1)
ORIGINS = extra_app("2003", allowed_origins=["https://good.example", "*.wild.example"])
NO_CLIENT_EVENTS = extra_app("2004", enable_client_messages=False)
TERMINATE = extra_app(
    "2005", enable_client_messages=True, terminate_on_limit=True, max_client_events_per_second=2
)
ENFORCE = extra_app("2006", enforce_user_authentication=True)
WATCHLIST = extra_app("2007", enable_watchlist_events=True)
DISABLED_WITH_ORIGINS = extra_app("2008", enabled=False, allowed_origins=["https://good.example"])
ORIGINS_WITH_QUOTA = extra_app("2009", allowed_origins=["https://good.example"], max_connections=1)


@pytest.fixture(scope="module")
def srv() -> Iterator[LiveServer]:
    """Default app (client events on) plus one app per app-level error; small server limits."""
    env = {
        "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        "WEBSOCKET_MAX_PAYLOAD_KB": "1",
        "USER_AUTHENTICATION_TIMEOUT": "1",
        "WATCHLIST_MAX_SIZE": "2",
    }
    apps = [DISABLED, QUOTA, ORIGINS, NO_CLIENT_EVENTS, TERMINATE, ENFORCE, WATCHLIST]
    with serving(env, [*apps, DISABLED_WITH_ORIGINS, ORIGINS_WITH_QUOTA]) as live:
        yield live


@pytest.fixture(scope="module")
def capacity_srv() -> Iterator[LiveServer]:
    with serving({"SOCKUDO_MAX_CONNECTIONS": "1"}) as live:
        yield live


@pytest.fixture(scope="module")
def heartbeat_srv() -> Iterator[LiveServer]:
    env = {"ACTIVITY_TIMEOUT": "1", "PONG_TIMEOUT": "1", "HEARTBEAT_SWEEP_INTERVAL": "1"}
    with serving(env) as live:
        yield live


async def handshake_error(server: LiveServer, code: int, message: str | None = None, **kwargs) -> None:
    """Connect and get exactly: one pusher:error with ``code``, then a close with the same code."""
    ws = await raw_connect(server, **kwargs)
    closed = await expect_fatal(server, ws, code)
    assert [f["event"] for f in closed.frames] == ["pusher:error"], closed.frames
    if message is not None:
        assert closed.frames[0]["data"]["message"] == message


async def established(server: LiveServer, **kwargs) -> dict:
    ws = await raw_connect(server, **kwargs)
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert first["event"] == "pusher:connection_established", first
        return json.loads(first["data"])
    finally:
        await ws.close()


# -- handshake-time errors (fatal) ----------------------------------------------------------------
def test_4001_unknown_app_key(srv):
    async def body():
        await handshake_error(srv, 4001, "Application does not exist", key="no-such-key")
        await assert_serves(srv)

    run(body())


def test_4003_disabled_app(srv):
    async def body():
        await handshake_error(srv, 4003, "Application disabled", key=DISABLED["key"])
        await assert_serves(srv)

    run(body())


def test_4004_app_over_connection_quota(srv):
    app = creds_of(QUOTA)

    async def body():
        first = await connect(srv, app)
        try:
            await handshake_error(srv, 4004, "Application is over adapter quota", key=app.key)
            await still_open(first)  # the admitted socket is unaffected
        finally:
            await first.close()
        # The slot frees when the first socket is gone (cleanup is asynchronous on the server).
        await eventually(lambda: assert_serves(srv, app))
        await assert_serves(srv)

    run(body())


def test_4100_server_over_capacity(capacity_srv):
    async def body():
        first = await connect(capacity_srv)
        try:
            await handshake_error(capacity_srv, 4100, "Over capacity")
            await still_open(first)
        finally:
            await first.close()
        await eventually(lambda: assert_serves(capacity_srv))

    run(body())


def test_connection_checks_run_in_the_specified_order(srv):
    """protocol-v1 §1.1: app exists, enabled, origin, server capacity, app quota; first failure wins."""

    async def body():
        # Disabled beats a disallowed origin.
        await handshake_error(srv, 4003, key=DISABLED_WITH_ORIGINS["key"], origin="https://evil.example")
        # A disallowed origin beats the app's quota.
        app = creds_of(ORIGINS_WITH_QUOTA)
        ws = await raw_connect(srv, key=app.key, origin="https://good.example")
        try:
            assert (
                json.loads(await asyncio.wait_for(ws.recv(), WAIT))["event"]
                == "pusher:connection_established"
            )
            await handshake_error(srv, 4009, "Origin not allowed", key=app.key, origin="https://evil.example")
            await handshake_error(srv, 4004, key=app.key, origin="https://good.example")
        finally:
            await ws.close()
        await assert_serves(srv)

    run(body())


@pytest.mark.parametrize("value", ["abc", "7.0", "", "seven", "0x7"])
def test_4006_non_integer_protocol(srv, value):
    async def body():
        await handshake_error(srv, 4006, query=f"protocol={value}&client=test")
        await assert_serves(srv)

    run(body())


@pytest.mark.parametrize("value", ["9", "8", "4", "1", "0", "-1"])
def test_4007_unsupported_protocol(srv, value):
    async def body():
        await handshake_error(srv, 4007, query=f"protocol={value}&client=test")
        await assert_serves(srv)

    run(body())


@pytest.mark.parametrize("query", ["protocol=5", "protocol=6", "protocol=7", "client=js&version=8.4.0", ""])
def test_supported_v1_protocols_are_established(srv, query):
    async def body():
        data = await established(srv, query=query)
        assert data["activity_timeout"] == 120
        assert data["socket_id"].count(".") == 1 and data["socket_id"].replace(".", "").isdigit()

    run(body())


def test_4009_origin_not_allowed(srv):
    key = ORIGINS["key"]

    async def body():
        await handshake_error(srv, 4009, "Origin not allowed", key=key)  # no Origin header at all
        for origin in (
            "https://evil.example",
            "http://good.example",
            "https://good.example.evil.com",
            "https://wild.example.com",
        ):
            await handshake_error(srv, 4009, "Origin not allowed", key=key, origin=origin)
        for origin in ("https://good.example", "https://app.wild.example", "http://a.b.wild.example"):
            await established(srv, key=key, origin=origin)
        await assert_serves(srv)

    run(body())


# -- channel authentication (non-fatal 4009 + subscription_error) -----------------------------------
async def expect_subscription_error(client, channel: str, status: int) -> dict:
    frame = await client.expect("pusher:subscription_error", channel)
    assert frame["data"]["type"] == "AuthError", frame
    assert frame["data"]["status"] == status, frame
    assert isinstance(frame["data"]["error"], str) and frame["data"]["error"], frame
    return frame


def test_4009_bad_or_missing_channel_auth(srv):
    app = default_app(srv)
    wrong = AppCreds(app.id, app.key, "not-the-secret")
    other_key = AppCreds(app.id, "other-key", app.secret)

    async def body():
        client = await connect(srv)
        try:
            n = uid()
            private, presence = f"private-{n}", f"presence-{n}"
            member = json.dumps({"user_id": "u1"})
            attempts = [
                {"channel": private},  # no auth key
                {"channel": private, "auth": ""},
                {"channel": private, "auth": channel_auth(wrong, client.socket_id, private)},
                {"channel": private, "auth": channel_auth(other_key, client.socket_id, private)},
                {"channel": private, "auth": channel_auth(app, "1.2", private)},  # another socket's
                {"channel": private, "auth": 42},
                {"channel": presence, "auth": "", "channel_data": member},
                {
                    "channel": presence,
                    "auth": channel_auth(wrong, client.socket_id, presence, member),
                    "channel_data": member,
                },
                # signed for other channel_data than the one sent
                {
                    "channel": presence,
                    "auth": channel_auth(app, client.socket_id, presence, member),
                    "channel_data": json.dumps({"user_id": "u2"}),
                },
            ]
            for data in attempts:
                await client.send("pusher:subscribe", data)
                error = await expect_error(client, 4009)
                assert error["data"]["message"].startswith("Authentication error: "), error
                await expect_subscription_error(client, data["channel"], 401)
            await still_open(client)
            # Nothing was joined: publishes to those channels do not arrive.
            await publish(srv, [private, presence], "secret", "x")
            assert await client.nothing() == []
            # The socket is still usable, and the right signature works.
            await subscribed(client, private, app)
        finally:
            await client.close()
        await assert_serves(srv)

    run(body())


def test_4009_signin_failures_are_non_fatal(srv):
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            good = json.dumps({"id": "u1"})
            attempts = [
                {
                    "auth": user_auth(AppCreds(app.id, app.key, "wrong"), client.socket_id, good),
                    "user_data": good,
                },
                {"auth": "", "user_data": good},
                {"user_data": good},
                {"auth": user_auth(app, client.socket_id, "not json"), "user_data": "not json"},
                {"auth": user_auth(app, client.socket_id, '{"id":42}'), "user_data": '{"id":42}'},
                {"auth": user_auth(app, client.socket_id, '{"name":"x"}'), "user_data": '{"name":"x"}'},
                {"auth": "x", "user_data": {"id": "u1"}},  # user_data must be a string
                {"auth": "x"},
            ]
            for data in attempts:
                await client.send("pusher:signin", data)
                error = await expect_error(client, 4009)
                assert error["data"]["message"].startswith("Authentication error: "), error
            await still_open(client)
            await signed_in(client, app, {"id": "u1"})
        finally:
            await client.close()
        await assert_serves(srv)

    run(body())


# -- frame errors (non-fatal 4000) -------------------------------------------------------------------
def test_4000_malformed_frames(srv):
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            for raw in [
                "{not json",
                "",
                "[]",
                '"pusher:ping"',
                "42",
                "null",
                '{"data":{}}',
                '{"event":""}',
                '{"event":7}',
            ]:
                await client.ws.send(raw)
                error = await expect_error(client, 4000)
                message = error["data"]["message"]
                assert message.startswith(("Invalid message format: ", "Invalid event name: ")), error
            await client.ws.send('{"data":{"channel":"x"}}')
            error = await expect_error(client, 4000)
            assert error["data"]["message"] == "Invalid event name: Event name is required"
            # Binary frames are JSON too: garbage is a 4000, a valid ping is answered.
            await client.ws.send(b"\xff\x00garbage")
            await expect_error(client, 4000)
            await client.ws.send(b'{"event":"pusher:ping","data":{}}')
            assert await client.expect("pusher:pong") == {"event": "pusher:pong"}
            # Frame problems on known events: missing channel, presence without channel_data.
            await client.send("pusher:subscribe", {"auth": ""})
            await expect_error(client, 4000)
            await client.send("pusher:subscribe", "not an object")
            await expect_error(client, 4000)
            private = f"private-{uid()}"
            await subscribed(client, private, app)
            await client.ws.send(json.dumps({"event": "client-x", "data": {}}))  # no channel
            await expect_error(client, 4000)
            presence = f"presence-{uid()}"
            await client.send(
                "pusher:subscribe",
                {"channel": presence, "auth": channel_auth(app, client.socket_id, presence)},
            )
            await expect_error(client, 4000)
            await expect_subscription_error(client, presence, 401)
            # Unknown non-client events are ignored silently.
            await client.send("app-event", {"x": 1})
            await client.send("pusher:no-such-thing", {})
            assert await client.nothing() == []
            await still_open(client)
        finally:
            await client.close()
        await assert_serves(srv)

    run(body())


# -- channel errors (non-fatal 4300) -----------------------------------------------------------------
def test_4300_bad_channel_names(srv):
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            names = [
                "bad name",
                "slash/x",
                "a" * 201,
                "private-" + "a" * 193,
                "unknown-ns:room",
                "room#u1",
                "[meta]orders",
                "orders-*",
                "",
                42,
            ]
            for name in names:
                await client.send("pusher:subscribe", {"channel": name, "auth": ""})
                error = await expect_error(client, 4300)
                assert error["data"]["message"].startswith("Channel error: "), error
            # Presence channel_data problems are channel errors too.
            presence = f"presence-{uid()}"
            for channel_data in [
                '{"user_info":{}}',
                '{"user_id":""}',
                '{"user_id":1.5}',
                '{"user_id":null}',
                "[1]",
                "not json",
            ]:
                await client.send(
                    "pusher:subscribe",
                    {
                        "channel": presence,
                        "auth": channel_auth(app, client.socket_id, presence, channel_data),
                        "channel_data": channel_data,
                    },
                )
                await expect_error(client, 4300)
                await expect_subscription_error(client, presence, 401)
            await still_open(client)
        finally:
            await client.close()
        await assert_serves(srv)

    run(body())


# -- client events (4301) ----------------------------------------------------------------------------
def test_4301_client_events_disabled_for_app(srv):
    app = creds_of(NO_CLIENT_EVENTS)

    async def body():
        sender, peer = await connect(srv, app), await connect(srv, app)
        try:
            channel = f"private-{uid()}"
            await subscribed(sender, channel, app)
            await subscribed(peer, channel, app)
            await sender.send("client-typing", {"x": 1}, channel)
            error = await expect_error(sender, 4301)
            assert (
                error["data"]["message"] == "Client event error: Client events are not enabled for this app"
            )
            assert await peer.nothing() == []
            await still_open(sender)
        finally:
            await close_all(sender, peer)
        await assert_serves(srv, app)

    run(body())


def test_4301_client_event_rules(srv):
    app = default_app(srv)

    async def body():
        sender, peer = await connect(srv), await connect(srv)
        try:
            public, private = f"pub-{uid()}", f"private-{uid()}"
            await subscribed(sender, public)
            await subscribed(peer, public)
            await sender.send("client-x", {}, public)
            error = await expect_error(sender, 4301)
            assert error["data"]["message"].startswith("Client event error: "), error
            await sender.send("client-x", {}, f"private-{uid()}")  # not subscribed
            error = await expect_error(sender, 4301)
            assert "not subscribed" in error["data"]["message"], error
            await sender.send("client-x", {}, f"#server-to-user-{uid()}")
            await expect_error(sender, 4301)
            assert await peer.nothing() == []
            await subscribed(sender, private, app)
            await still_open(sender)
        finally:
            await close_all(sender, peer)
        await assert_serves(srv)

    run(body())


def test_4301_client_event_rate_limit_is_non_fatal(srv):
    app = default_app(srv)  # default limit: 10 events per second

    async def body():
        sender, peer = await connect(srv), await connect(srv)
        try:
            channel = f"private-{uid()}"
            await subscribed(sender, channel, app)
            await subscribed(peer, channel, app)
            for i in range(11):
                await sender.send("client-n", {"i": i}, channel)
            error = await expect_error(sender, 4301)
            assert error["data"]["message"] == "Client event rejected due to rate limit"
            got = [f["data"]["i"] for f in await peer.nothing(0.5) if f["event"] == "client-n"]
            assert got == list(range(10)), got
            await still_open(sender)
        finally:
            await close_all(sender, peer)
        await assert_serves(srv)

    run(body())


def test_4301_terminate_on_limit_closes(srv):
    app = creds_of(TERMINATE)  # 2 events per second, terminate_on_limit

    async def body():
        sender, peer = await connect(srv, app), await connect(srv, app)
        try:
            channel = f"private-{uid()}"
            await subscribed(sender, channel, app)
            await subscribed(peer, channel, app)
            for i in range(3):
                await sender.send("client-n", {"i": i}, channel)
            closed = await expect_fatal(srv, sender, 4301)
            assert closed.reason == close_reason(srv, "Connection closed due to client event rate limit")
            got = [f["data"]["i"] for f in await peer.nothing(0.5) if f["event"] == "client-n"]
            assert got == [0, 1], got
            await still_open(peer)
        finally:
            await close_all(sender, peer)
        await assert_serves(srv, app)

    run(body())


# -- heartbeats (4201) -------------------------------------------------------------------------------
def test_4201_pong_timeout_and_answering_clients_stay(heartbeat_srv):
    srv = heartbeat_srv
    app = default_app(srv)

    async def answer_pings(client, reply: dict, seconds: float) -> int:
        pings = 0
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(await asyncio.wait_for(client.ws.recv(), remaining))
            except TimeoutError:
                break
            if frame == {"event": "pusher:ping"}:
                pings += 1
                await client.ws.send(json.dumps(reply))
            else:
                client.backlog.append(frame)
        return pings

    async def body():
        silent = await connect(srv)
        assert silent.established["activity_timeout"] == 1
        ponger, chatty = await connect(srv), await connect(srv)
        try:
            presence = f"presence-{uid()}"
            await subscribed(ponger, presence, app, {"user_id": "watcher"})
            await subscribed(silent, presence, app, {"user_id": "silent"})
            added = await ponger.expect("pusher_internal:member_added", presence)
            assert json.loads(added["data"])["user_id"] == "silent"
            silent_task = asyncio.ensure_future(read_until_closed(silent.ws, 7))
            pongs, others = await asyncio.gather(
                answer_pings(ponger, {"event": "pusher:pong", "data": {}}, 5.5),
                # [R] any inbound frame answers a ping, not only pusher:pong.
                answer_pings(chatty, {"event": "app-noop", "data": {}}, 5.5),
            )
            closed = await silent_task
            assert closed.code == 4201, closed
            assert closed.reason == close_reason(srv, "Pong reply not received in time")
            assert {"event": "pusher:ping"} in closed.frames, closed.frames
            assert not [f for f in closed.frames if f["event"] == "pusher:error"], closed.frames
            assert pongs >= 2 and others >= 2, (pongs, others)
            # Disconnect cleanup ran: the silent member left the presence channel.
            removed = await ponger.expect("pusher_internal:member_removed", presence)
            assert json.loads(removed["data"]) == {"user_id": "silent"}
            await still_open(ponger)
            await still_open(chatty)
        finally:
            await close_all(silent, ponger, chatty)
        await assert_serves(srv)

    run(body())


# -- user authentication timeout (4009, close only) ----------------------------------------------------
def test_4009_user_authentication_timeout(srv):
    app = creds_of(ENFORCE)

    async def body():
        silent, public_only = await connect(srv, app), await connect(srv, app)
        signer, private_joiner = await connect(srv, app), await connect(srv, app)
        try:
            await subscribed(public_only, f"pub-{uid()}")
            await signed_in(signer, app, {"id": "u1"})
            await subscribed(private_joiner, f"private-{uid()}", app)
            for client in (silent, public_only):
                closed = await read_until_closed(client.ws, 4)
                assert closed.code == 4009, closed
                assert closed.reason == close_reason(srv, "Connection not authorized within timeout.")
                assert not [f for f in closed.frames if f["event"] == "pusher:error"], closed.frames
            await asyncio.sleep(1.2)  # well past the 1 s timeout
            await still_open(signer)
            await still_open(private_joiner)
        finally:
            await close_all(silent, public_only, signer, private_joiner)
        await assert_serves(srv)

    run(body())


# -- watchlist limit (4302, non-fatal) -----------------------------------------------------------------
def test_4302_watchlist_too_large(srv):
    app = creds_of(WATCHLIST)  # server WATCHLIST_MAX_SIZE=2

    async def body():
        client = await connect(srv, app)
        try:
            await client.signin(app.key, app.secret, {"id": "w1", "watchlist": ["a", "b", "c"]})
            error = await expect_error(client, 4302)
            assert "2" in error["data"]["message"], error
            assert await client.nothing() == []  # no signin_success
            await still_open(client)
            await signed_in(client, app, {"id": "w1", "watchlist": ["a", "b"]})
            events = await client.expect("pusher_internal:watchlist_events")
            assert events["data"] == {"events": [{"name": "offline", "user_ids": ["a", "b"]}]}
        finally:
            await client.close()
        await assert_serves(srv, app)

    run(body())


# -- inbound message size (1009, close only) -------------------------------------------------------------
def test_1009_oversized_frame(srv):
    async def body():
        client = await connect(srv)
        try:
            base = '{"event":"pusher:ping","data":{"pad":""}}'
            exact = base.replace('""', '"' + "x" * (1024 - len(base)) + '"')
            assert len(exact.encode()) == 1024
            await client.ws.send(exact)  # at the limit: accepted
            assert await client.expect("pusher:pong") == {"event": "pusher:pong"}
            over = base.replace('""', '"' + "x" * (1025 - len(base)) + '"')
            await client.ws.send(over)
            closed = await read_until_closed(client.ws)
            assert closed.code == 1009, closed
            assert not [f for f in closed.frames if f["event"] == "pusher:error"], closed.frames
        finally:
            await client.close()
        await assert_serves(srv)

    run(body())


def test_1009_counts_bytes_not_characters(srv):
    async def body():
        client = await connect(srv)
        try:
            base = '{"event":"pusher:ping","data":{"pad":""}}'
            # 2-byte characters: fewer than 1024 characters but more than 1024 bytes.
            over = base.replace('""', '"' + "\u00e9" * ((1025 - len(base)) // 2 + 1) + '"')
            assert len(over) < 1024 < len(over.encode())
            await client.ws.send(over)
            closed = await read_until_closed(client.ws)
            assert closed.code == 1009, closed
        finally:
            await client.close()
        await assert_serves(srv)

    run(body())


def test_error_frames_never_close_on_4000_family(srv):
    """Non-fatal errors in a row leave one socket usable for normal traffic."""
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            channel = f"private-{uid()}"
            for _ in range(5):
                await client.ws.send("nope")
                await expect_error(client, 4000)
                await client.send("pusher:subscribe", {"channel": "bad name"})
                await expect_error(client, 4300)
            await subscribed(client, channel, app)
            await publish(srv, channel, "evt", "payload")
            assert (await client.expect("evt", channel))["data"] == "payload"
        finally:
            await client.close()

    run(body())
