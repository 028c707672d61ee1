"""``pusher:subscribe`` / ``pusher:unsubscribe`` (realtime/node/frames/subscribe.py)."""

from __future__ import annotations

from tests.node.harness import data_of


async def test_connect_sends_connection_established(node):
    client = await node.connect()
    assert client.events() == ["pusher:connection_established"]
    data = data_of(client.frames[0])
    assert data == {"socket_id": client.socket_id, "activity_timeout": 120}


async def test_public_subscribe_succeeds(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "my-channel")
    assert client.new() == [
        {"event": "pusher_internal:subscription_succeeded", "channel": "my-channel", "data": "{}"}
    ]
    assert "my-channel" in client.conn.channels
    assert client.conn in node.engine.registry.subscribers("1001", "my-channel")


async def test_subscribing_twice_confirms_again_without_a_second_registration(node):
    client = await node.connect()
    await node.subscribe(client, "my-channel")
    await node.subscribe(client, "my-channel")
    assert client.events()[1:] == ["pusher_internal:subscription_succeeded"] * 2
    assert len(node.engine.registry.subscribers("1001", "my-channel")) == 1


async def test_private_without_auth_is_refused_with_4009_and_a_subscription_error(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "private-room", auth="")
    assert client.new() == [
        {
            "event": "pusher:error",
            "data": {
                "code": 4009,
                "message": "Authentication error: Authentication signature required for this channel",
            },
        },
        {
            "event": "pusher:subscription_error",
            "channel": "private-room",
            "data": {
                "type": "AuthError",
                "error": "Authentication error: Authentication signature required for this channel",
                "status": 401,
            },
        },
    ]
    assert client.conn.channels == {}
    assert client.closed_with is None  # a refused subscribe keeps the socket


async def test_private_with_a_bad_signature_is_refused(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "private-room", auth="app-key:" + "0" * 64)
    error, scoped = client.new()
    message = "Authentication error: Invalid signature: channel requires authentication"
    assert error == {"event": "pusher:error", "data": {"code": 4009, "message": message}}
    assert scoped["event"] == "pusher:subscription_error"
    assert scoped["data"] == {"type": "AuthError", "error": message, "status": 401}
    assert node.engine.registry.subscribers("1001", "private-room") is None


async def test_private_signed_for_another_socket_is_refused(node):
    from realtime.protocol.signatures import sign_channel

    client = await node.connect()
    other = await node.connect()
    auth = sign_channel("app-key", "app-secret", other.socket_id, "private-room")
    await node.subscribe(client, "private-room", auth=auth)
    assert client.events()[1:] == ["pusher:error", "pusher:subscription_error"]


async def test_private_with_a_good_signature_succeeds(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "private-room")
    assert client.new() == [
        {"event": "pusher_internal:subscription_succeeded", "channel": "private-room", "data": "{}"}
    ]
    assert client.conn in node.engine.registry.subscribers("1001", "private-room")


async def test_unsubscribe_then_resubscribe(node):
    client = await node.connect()
    await node.subscribe(client, "my-channel")
    client.new()
    await node.send(client, "pusher:unsubscribe", {"channel": "my-channel"})
    assert client.new() == []  # unsubscribe is not acknowledged
    assert "my-channel" not in client.conn.channels
    assert node.engine.registry.subscribers("1001", "my-channel") is None
    await node.subscribe(client, "my-channel")
    assert client.new() == [
        {"event": "pusher_internal:subscription_succeeded", "channel": "my-channel", "data": "{}"}
    ]


async def test_unsubscribing_from_a_channel_never_joined_is_ignored(node):
    client = await node.connect()
    client.new()
    await node.send(client, "pusher:unsubscribe", {"channel": "never"})
    assert client.new() == []


async def test_events_reach_subscribers_until_they_unsubscribe(node):
    from realtime.protocol.outframe import OutFrame

    client = await node.connect()
    await node.subscribe(client, "news")
    text = '{"event":"headline","channel":"news","data":"x"}'
    assert node.engine.deliver_local("1001", "news", OutFrame(text)) == 1
    assert client.last() == {"event": "headline", "channel": "news", "data": "x"}
    await node.send(client, "pusher:unsubscribe", {"channel": "news"})
    assert node.engine.deliver_local("1001", "news", OutFrame(text)) == 0


def _channel_error(message: str) -> dict:
    return {"event": "pusher:error", "data": {"code": 4300, "message": f"Channel error: {message}"}}


async def test_invalid_channel_names_get_a_4300_error(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "bad channel!")
    await node.subscribe(client, "a" * 201)
    await node.subscribe(client, "ns:room")
    assert client.new() == [
        _channel_error("Invalid channel name 'bad channel!'"),
        _channel_error("Channel name too long (limit is 200 bytes)"),
        _channel_error("Unknown channel namespace 'ns'"),
    ]
    assert client.conn.channels == {}
    assert client.closed_with is None


async def test_the_channel_name_limit_is_the_apps(node):
    from tests.node.harness import make_app

    client = await node.connect(make_app(max_channel_name_length=10))
    client.new()
    await node.subscribe(client, "a" * 11)
    assert client.new() == [_channel_error("Channel name too long (limit is 10 bytes)")]
    await node.subscribe(client, "a" * 10)
    assert client.events()[-1] == "pusher_internal:subscription_succeeded"


async def test_subscribe_without_a_channel_is_a_4000_format_error(node):
    client = await node.connect()
    client.new()
    await node.send(client, "pusher:subscribe", {})
    await node.send(client, "pusher:subscribe", "not json")
    assert client.new() == [
        {
            "event": "pusher:error",
            "data": {"code": 4000, "message": "Invalid message format: subscribe requires a channel"},
        },
        {
            "event": "pusher:error",
            "data": {
                "code": 4000,
                "message": "Invalid message format: subscribe data must be an object with a channel",
            },
        },
    ]


async def test_wildcards_and_metachannels_are_v2_only(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "news-*")
    await node.subscribe(client, "[meta]news")
    assert client.new() == [
        _channel_error("Wildcard subscriptions are only supported on protocol V2"),
        _channel_error("Metachannels are only supported on protocol V2"),
    ]


async def test_cache_channel_without_a_cached_event_reports_a_miss(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "cache-prices")
    assert client.new() == [
        {"event": "pusher_internal:subscription_succeeded", "channel": "cache-prices", "data": "{}"},
        {"event": "pusher:cache_miss", "channel": "cache-prices", "data": "{}"},
    ]
    assert ("1001", {"name": "cache_miss", "channel": "cache-prices", "data": "{}"}) in node.events


async def test_cache_channel_replays_the_last_event_to_a_new_subscriber(node):
    text = '{"event":"price","channel":"cache-prices","data":"42"}'
    node.engine.cache_put("1001", "cache-prices", text)
    client = await node.connect()
    client.new()
    await node.subscribe(client, "cache-prices")
    assert client.new()[1] == {"event": "price", "channel": "cache-prices", "data": "42"}


async def test_server_to_user_channel_needs_the_matching_sign_in(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "#server-to-user-alice")
    error, scoped = client.new()
    assert error["data"]["code"] == 4009
    assert scoped["data"]["status"] == 403
    await node.signin(client, {"id": "alice"})
    await node.subscribe(client, "#server-to-user-alice")
    assert client.events()[-1] == "pusher_internal:subscription_succeeded"


async def test_occupied_and_vacated_are_reported_once(node):
    a = await node.connect()
    b = await node.connect()
    await node.subscribe(a, "room")
    await node.subscribe(b, "room")
    await node.send(a, "pusher:unsubscribe", {"channel": "room"})
    node.engine.disconnect(b.conn, 1000)
    names = [event["name"] for _, event in node.events if event.get("channel") == "room"]
    assert names.count("channel_occupied") == 1
    assert names.count("channel_vacated") == 1
    assert names.index("channel_occupied") < names.index("channel_vacated")


async def test_subscription_count_is_sent_to_subscribers_when_the_app_enables_it(node):
    import asyncio

    from tests.node.harness import make_app

    app = make_app(enable_subscription_count=True)
    a = await node.connect(app)
    b = await node.connect(app)
    await node.subscribe(a, "room")
    await node.subscribe(b, "room")
    await asyncio.sleep(0.01)  # the first count goes out on a timer (delay 0), coalesced
    expected = {
        "event": "pusher_internal:subscription_count",
        "channel": "room",
        "data": '{"subscription_count":2}',
    }
    assert a.of("pusher_internal:subscription_count") == [expected]
    assert b.of("pusher_internal:subscription_count") == [expected]


async def test_v2_subscribe_gets_sockudo_names_and_message_ids(node):
    client = await node.connect(protocol=2)
    await node.subscribe(client, "room")
    established, succeeded = client.frames
    assert established["event"] == "sockudo:connection_established"
    assert succeeded["event"] == "sockudo_internal:subscription_succeeded"
    assert succeeded["channel"] == "room"
    assert len(succeeded["message_id"]) == 36  # a UUID per frame sent to one V2 connection
    assert established["message_id"] != succeeded["message_id"]


async def test_v2_wildcard_subscription_receives_matching_channels(node):
    from realtime.protocol.outframe import OutFrame

    client = await node.connect(protocol=2)
    await node.subscribe(client, "news-*")
    assert client.last()["event"] == "sockudo_internal:subscription_succeeded"
    node.engine.deliver_local(
        "1001", "news-sport", OutFrame('{"event":"e","channel":"news-sport","data":"1"}')
    )
    node.engine.deliver_local("1001", "weather", OutFrame('{"event":"e","channel":"weather","data":"2"}'))
    assert client.last() == {"event": "e", "channel": "news-sport", "data": "1"}
