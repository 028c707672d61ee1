"""Client events (realtime/node/frames/client_events.py): who may send them, where they go."""

from __future__ import annotations

from tests.node.harness import make_app

CLIENT_APP = {"enable_client_messages": True}


def _rejected(message: str, code: int = 4301) -> dict:
    return {"event": "pusher:error", "data": {"code": code, "message": message}}


async def _pair(node, channel="private-chat", app=None, protocols=(7, 7)):
    app = app or make_app(**CLIENT_APP)
    a = await node.connect(app, protocol=protocols[0])
    b = await node.connect(app, protocol=protocols[1])
    await node.subscribe(a, channel)
    await node.subscribe(b, channel)
    a.new()
    b.new()
    return a, b


async def test_client_events_are_refused_when_the_app_disables_them(node):
    a, _b = await _pair(node, app=make_app())
    await node.send(a, "client-typing", {"x": 1}, "private-chat")
    assert a.new() == [_rejected("Client event error: Client events are not enabled for this app")]
    assert a.closed_with is None


async def test_relayed_to_the_others_not_to_the_sender(node):
    a, b = await _pair(node)
    c = await node.connect(make_app(**CLIENT_APP))
    await node.subscribe(c, "private-chat")
    c.new()
    await node.send(a, "client-typing", {"x": 1}, "private-chat")
    expected = {"event": "client-typing", "channel": "private-chat", "data": {"x": 1}}
    assert b.new() == [expected]
    assert c.new() == [expected]
    assert a.new() == []
    webhook = [e for _, e in node.events if e["name"] == "client_event"]
    assert webhook == [
        {
            "name": "client_event",
            "channel": "private-chat",
            "event": "client-typing",
            "data": '{"x":1}',
            "socket_id": a.socket_id,
        }
    ]


async def test_on_presence_channels_the_event_carries_the_user_id(node):
    app = make_app(**CLIENT_APP)
    a = await node.connect(app)
    b = await node.connect(app)
    await node.join(a, "presence-room", "alice")
    await node.join(b, "presence-room", "bob")
    await node.send(a, "client-wave", "hi", "presence-room")
    assert b.last() == {"event": "client-wave", "channel": "presence-room", "data": "hi", "user_id": "alice"}


async def test_the_sender_must_be_subscribed(node):
    client = await node.connect(make_app(**CLIENT_APP))
    client.new()
    await node.send(client, "client-typing", {}, "private-chat")
    message = f"Client event error: Socket {client.socket_id} is not subscribed to channel private-chat"
    assert client.new() == [_rejected(message)]


async def test_only_private_and_presence_channels_take_client_events(node):
    a, b = await _pair(node, channel="public-chat")
    await node.send(a, "client-typing", {}, "public-chat")
    assert a.new() == [
        _rejected("Client event error: Client events are only allowed on private and presence channels")
    ]
    assert b.new() == []


async def test_encrypted_channels_refuse_client_events_and_relay_nothing(node):
    """The server cannot see an end-to-end encrypted payload: like Pusher it refuses client events on
    ``private-encrypted-`` channels (4301, socket stays open) and neither relays nor reports them."""
    for channel in ("private-encrypted-chat", "private-encrypted-cache-chat"):
        for protocols in ((7, 7), (2, 2)):
            a, b = await _pair(node, channel=channel, protocols=protocols)
            await node.send(a, "client-typing", {"nonce": "bm9uY2U=", "ciphertext": "eA=="}, channel)
            answer, relayed = a.new(), b.new()
            print(f"{channel} protocol {protocols[0]}: sender got {answer}; other subscriber got {relayed}")
            assert [(f["event"].split(":")[1], f["data"]) for f in answer] == [
                (
                    "error",
                    _rejected("Client event error: Client events are not supported on encrypted channels")[
                        "data"
                    ],
                )
            ]
            assert relayed == []
            assert a.closed_with is None
    assert [e for _, e in node.events if e["name"] == "client_event"] == []


async def test_a_client_event_needs_a_channel(node):
    client = await node.connect(make_app(**CLIENT_APP))
    client.new()
    await node.send(client, "client-typing", {})
    assert client.new() == [_rejected("Invalid message format: client events require a channel", 4000)]


async def test_payload_over_the_limit_is_refused(node):
    a, b = await _pair(node)
    await node.send(a, "client-big", "x" * (10 * 1024 + 1), "private-chat")
    assert a.new() == [_rejected("Client event error: Payload is larger than 10 KiB")]
    assert b.new() == []


async def test_rate_limit_rejects_past_the_limit(node):
    a, b = await _pair(node, app=make_app(max_client_events_per_second=2, **CLIENT_APP))
    for n in range(3):
        await node.send(a, "client-n", n, "private-chat")
    assert [f["data"] for f in b.new()] == [0, 1]
    assert a.new() == [_rejected("Client event rejected due to rate limit")]
    assert a.closed_with is None


async def test_rate_limit_closes_when_the_app_terminates_on_limit(node):
    app = make_app(max_client_events_per_second=1, terminate_on_limit=True, **CLIENT_APP)
    a, _b = await _pair(node, app=app)
    await node.send(a, "client-n", 0, "private-chat")
    await node.send(a, "client-n", 1, "private-chat")
    message = "Connection closed due to client event rate limit"
    assert a.new() == [_rejected(message)]
    assert a.closed_with == (4301, message)
    assert a.conn.closed


async def test_v1_ignores_other_events(node):
    a, b = await _pair(node)
    await node.send(a, "typing", {}, "private-chat")  # neither a system event nor client-*
    assert a.new() == [] and b.new() == []


async def test_v2_sender_gets_its_own_event_back(node):
    a, b = await _pair(node, protocols=(2, 7))
    await node.send(a, "client-typing", {"x": 1}, "private-chat")
    expected = {"event": "client-typing", "channel": "private-chat", "data": {"x": 1}}
    assert a.new() == [expected]
    assert b.new() == [expected]


async def test_v2_sender_with_echo_off_does_not(node):
    app = make_app(**CLIENT_APP)
    a = await node.connect(app, protocol=2, query="echo_messages=false")
    b = await node.connect(app, protocol=2)
    for client in (a, b):
        await node.subscribe(client, "private-chat")
        client.new()
    await node.send(a, "client-typing", 1, "private-chat")
    assert a.new() == []
    assert b.new() == [{"event": "client-typing", "channel": "private-chat", "data": 1}]


async def test_message_rate_limit_counts_every_frame(node):
    app = make_app(message_rate_limit={"enabled": True, "max_attempts": 2, "decay_seconds": 60})
    client = await node.connect(app)
    client.new()
    for _ in range(3):
        await node.send(client, "pusher:ping")
    assert client.new() == [{"event": "pusher:pong"}] * 2 + [
        _rejected("Client event rejected due to rate limit")
    ]
