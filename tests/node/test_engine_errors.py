"""The engine's own refusals (realtime/node/engine.py): admission, malformed and oversized frames,
slow consumers, shutdown."""

from __future__ import annotations

import pytest

from tests.node.harness import make_app


def _error(code: int, message: str, event: str = "pusher:error") -> dict:
    return {"event": event, "data": {"code": code, "message": message}}


async def test_unknown_app_is_refused_with_4001(node):
    client = await node.connect_missing_app()
    assert client.conn is None
    assert client.frames == [_error(4001, "Application does not exist")]
    assert client.closed_with == (4001, "Application does not exist")


async def test_disabled_app_is_refused_with_4003(node):
    client = await node.connect(make_app(enabled=False))
    assert client.frames == [_error(4003, "Application disabled")]
    assert client.closed_with == (4003, "Application disabled")


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("protocol=3", 4007, "Unsupported protocol version 3"),
        ("protocol=abc", 4006, "Invalid version string 'abc'"),
    ],
)
async def test_bad_protocol_versions_are_refused(node, query, code, message):
    client = await node.connect(protocol=None, query=query)
    assert client.conn is None
    assert client.frames == [_error(code, message)]
    assert client.closed_with == (code, message)


async def test_v1_versions_and_none_are_accepted(node):
    for protocol in (None, 5, 6, 7):
        client = await node.connect(protocol=protocol)
        assert client.events() == ["pusher:connection_established"]
        assert client.conn.protocol == (protocol or 7)


async def test_v2_refusal_uses_the_v2_spelling(node):
    client = await node.connect(protocol=2, query="format=msgpack")
    message = "Unsupported wire format 'msgpack' (json is served)"
    assert client.frames == [_error(4007, message, "sockudo:error")]
    assert client.closed_with == (4007, message)


async def test_v2_connect_gets_sockudo_names(node):
    client = await node.connect(protocol=2)
    (frame,) = client.frames
    assert frame["event"] == "sockudo:connection_established"
    assert client.conn.protocol == 2


async def test_origin_not_allowed_is_refused_with_4009(node):
    app = make_app(allowed_origins=["https://*.example.com"])
    good = await node.connect(app, headers=((b"origin", b"https://www.example.com"),))
    bad = await node.connect(app, headers=((b"origin", b"https://evil.test"),))
    assert good.conn is not None
    assert bad.frames == [_error(4009, "Origin not allowed")]
    assert bad.closed_with == (4009, "Origin not allowed")


async def test_app_connection_quota_is_4004(node):
    app = make_app(max_connections=1)
    first = await node.connect(app)
    second = await node.connect(app)
    assert first.conn is not None
    assert second.closed_with == (4004, "Application is over adapter quota")


@pytest.mark.sockudo(SOCKUDO_MAX_CONNECTIONS=1)
async def test_node_capacity_is_4100(node):
    await node.connect()
    second = await node.connect()
    assert second.frames == [_error(4100, "Over capacity")]
    assert second.closed_with == (4100, "Over capacity")


async def test_invalid_json_gets_a_4000_error_and_keeps_the_socket(node):
    client = await node.connect()
    client.new()
    await node.send_raw(client, "{not json")
    (frame,) = client.new()
    assert frame["event"] == "pusher:error"
    assert frame["data"]["code"] == 4000
    assert frame["data"]["message"].startswith("Invalid message format: ")
    assert client.closed_with is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[1, 2]", "Invalid message format: frame must be a JSON object"),
        ('{"data": {}}', "Invalid event name: Event name is required"),
        ('{"event": ""}', "Invalid event name: Event name must be a non-empty string"),
        ('{"event": 5}', "Invalid event name: Event name must be a non-empty string"),
        (b'{"event": "\xff"}', "Invalid message format: "),
        ('{"event": "a", "data": "\\ud800"}', "Invalid message format: lone surrogate in a string"),
    ],
)
async def test_malformed_frames_get_4000(node, raw, message):
    client = await node.connect()
    client.new()
    await node.send_raw(client, raw)
    (frame,) = client.new()
    assert frame["data"]["code"] == 4000
    assert frame["data"]["message"].startswith(message)
    assert client.closed_with is None


async def test_unknown_events_are_ignored(node):
    client = await node.connect()
    client.new()
    await node.send(client, "pusher:no_such_thing", {})
    await node.send(client, "whatever", {})
    assert client.new() == []


@pytest.mark.sockudo(WEBSOCKET_MAX_PAYLOAD_KB=1)
async def test_oversized_message_closes_with_1009(node):
    client = await node.connect()
    await node.subscribe(client, "room")
    client.new()
    await node.send_raw(client, " " * 1024)  # at the limit: read (and refused as not JSON)
    assert [f["data"]["code"] for f in client.new()] == [4000]
    assert client.closed_with is None
    await node.send_raw(client, " " * 1025)
    assert client.new() == []  # a close without an error frame
    assert client.closed_with == (1009, "Message too big")
    assert client.conn.closed
    assert node.engine.registry.subscribers("1001", "room") is None


async def test_frames_after_the_close_are_ignored(node):
    client = await node.connect()
    node.engine.close(client.conn, 4009, "bye")
    client.new()
    await node.send(client, "pusher:ping")
    assert client.new() == []


async def test_slow_consumer_is_closed_with_4100_and_others_still_get_the_event(node):
    from realtime.protocol.outframe import OutFrame

    slow = await node.connect()
    fast = await node.connect()
    for client in (slow, fast):
        await node.subscribe(client, "room")
    slow.socket.capacity = 1  # takes one more frame, then stops reading
    text = '{"event":"e","channel":"room","data":"x"}'
    assert node.engine.deliver_local("1001", "room", OutFrame(text)) == 2
    assert slow.closed_with is None
    assert node.engine.deliver_local("1001", "room", OutFrame(text)) == 1
    assert slow.closed_with == (4100, "Over capacity: client is not reading fast enough")
    assert slow.conn.closed
    assert list(node.engine.registry.subscribers("1001", "room")) == [fast.conn]
    assert len(fast.of("e")) == 2


async def test_a_reply_that_cannot_be_written_closes_the_socket(node):
    client = await node.connect()
    client.socket.capacity = 0
    await node.send(client, "pusher:ping")
    assert client.closed_with == (4100, "Over capacity: client is not reading fast enough")


async def test_shutdown_closes_every_socket_with_4200_and_refuses_new_ones(node):
    a = await node.connect()
    b = await node.connect()
    await node.join(a, "presence-room", "alice")
    await node.engine.shutdown(1.0)
    assert a.closed_with == b.closed_with == (4200, "Server shutting down")
    assert node.engine.registry.members("1001", "presence-room") == {}
    late = await node.connect()
    assert late.closed_with == (4200, "Server shutting down")
