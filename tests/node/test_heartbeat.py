"""``pusher:ping`` / ``pusher:pong`` and the engine's heartbeat sweep (``Engine.sweep``)."""

from __future__ import annotations

import time

import pytest

from tests.node.harness import make_app

IDLE = 120 + 1  # past ACTIVITY_TIMEOUT (120 s)
SILENT = 30 + 1  # past PONG_TIMEOUT (30 s)


async def test_ping_gets_a_pong(node):
    client = await node.connect()
    client.new()
    await node.send(client, "pusher:ping", {})
    assert client.new() == [{"event": "pusher:pong"}]


async def test_v2_ping_gets_a_sockudo_pong(node):
    client = await node.connect(protocol=2)
    client.new()
    await node.send(client, "sockudo:ping")
    assert client.new() == [{"event": "sockudo:pong"}]


async def test_an_active_socket_is_not_pinged(node):
    client = await node.connect()
    client.new()
    node.engine.sweep(time.monotonic() + 1)
    assert client.new() == []


async def test_an_idle_socket_is_pinged_then_closed_when_silent(node):
    client = await node.connect()
    client.new()
    now = time.monotonic() + IDLE
    node.engine.sweep(now)
    assert client.new() == [{"event": "pusher:ping"}]
    node.engine.sweep(now + 1)  # within the pong timeout: nothing more
    assert client.new() == [] and client.closed_with is None
    node.engine.sweep(now + SILENT)
    assert client.new() == []  # a close frame only, no error frame
    assert client.closed_with == (4201, "Pong reply not received in time")
    assert node.engine.registry.connection_count == 0


async def test_any_frame_after_the_ping_keeps_the_socket(node):
    client = await node.connect()
    now = time.monotonic() + IDLE
    node.engine.sweep(now)
    await node.send(client, "pusher:pong")
    node.engine.sweep(now + SILENT)
    assert client.closed_with is None


async def test_v2_gets_a_sockudo_ping_without_native_pings(node):
    client = await node.connect(protocol=2)
    client.new()
    node.engine.sweep(time.monotonic() + IDLE)
    assert client.new() == [{"event": "sockudo:ping"}]


async def test_v2_native_ping_and_pong(node):
    client = await node.connect(protocol=2)
    client.socket.native_pings = 0  # a transport that can send WebSocket pings
    client.new()
    now = time.monotonic() + IDLE
    node.engine.sweep(now)
    assert client.socket.native_pings == 1
    assert client.new() == []
    client.socket.last_pong = now + 1  # the native pong arrived
    node.engine.sweep(now + SILENT)
    assert client.closed_with is None
    assert client.conn.ping_sent_at == 0.0


async def test_a_ping_that_cannot_be_written_closes_as_slow_consumer(node):
    client = await node.connect()
    client.socket.capacity = 0
    node.engine.sweep(time.monotonic() + IDLE)
    assert client.closed_with == (4100, "Over capacity: client is not reading fast enough")


@pytest.mark.sockudo(USER_AUTHENTICATION_TIMEOUT=10)
async def test_enforced_sign_in_closes_sockets_that_never_sign_in(node):
    app = make_app(enforce_user_authentication=True)
    late = await node.connect(app)
    signed = await node.connect(app)
    await node.signin(signed, {"id": "alice"})
    node.engine.sweep(time.monotonic() + 11)
    assert late.closed_with == (4009, "Connection not authorized within timeout.")
    assert signed.closed_with is None


@pytest.mark.sockudo(USER_AUTHENTICATION_TIMEOUT=10)
async def test_an_authorized_private_subscription_counts_as_signed_in(node):
    client = await node.connect(make_app(enforce_user_authentication=True))
    await node.subscribe(client, "private-room")
    node.engine.sweep(time.monotonic() + 11)
    assert client.closed_with is None
