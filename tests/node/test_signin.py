"""``pusher:signin`` (realtime/node/frames/signin.py): user authentication and watchlists."""

from __future__ import annotations

import json

import pytest

from tests.node.harness import make_app


def _auth_error(detail: str) -> dict:
    return {"event": "pusher:error", "data": {"code": 4009, "message": f"Authentication error: {detail}"}}


async def test_valid_signature_signs_in(node):
    client = await node.connect()
    client.new()
    await node.signin(client, {"id": "alice", "name": "Alice"})
    user_data = json.dumps({"id": "alice", "name": "Alice"})
    assert client.new() == [{"event": "pusher:signin_success", "data": {"user_data": user_data}}]
    assert client.conn.user_id == "alice"
    assert node.engine.registry.user_connections("1001", "alice") == [client.conn]


async def test_invalid_signature_is_refused(node):
    client = await node.connect()
    client.new()
    await node.signin(client, {"id": "alice"}, auth="app-key:" + "0" * 64)
    assert client.new() == [_auth_error("Invalid signature for user authentication")]
    assert client.conn.user_id is None
    assert client.closed_with is None


async def test_signature_of_another_key_is_refused(node):
    from realtime.protocol.signatures import sign_user

    client = await node.connect()
    client.new()
    user_data = json.dumps({"id": "alice"})
    auth = sign_user("other-key", "app-secret", client.socket_id, user_data)
    await node.signin(client, {"id": "alice"}, auth=auth)
    assert client.new() == [_auth_error("Invalid signature for user authentication")]


async def test_malformed_signins_are_refused(node):
    client = await node.connect()
    client.new()
    await node.send(client, "pusher:signin", "not an object")
    await node.send(client, "pusher:signin", {"auth": "x", "user_data": {"id": "alice"}})
    await node.send(client, "pusher:signin", {"auth": "x", "user_data": "{"})
    await node.signin(client, {"name": "no id"})
    assert client.new() == [
        _auth_error("signin data must be an object with auth and user_data"),
        _auth_error("user_data must be a JSON string"),
        _auth_error("user_data is not valid JSON"),
        _auth_error("user_data must contain a string id"),
    ]


async def test_disabled_user_authentication_refuses(node):
    client = await node.connect(make_app(enable_user_authentication=False))
    client.new()
    await node.signin(client, {"id": "alice"})
    assert client.new() == [_auth_error("User authentication is disabled for this app")]


async def test_signing_in_again_replaces_the_user(node):
    client = await node.connect()
    await node.signin(client, {"id": "alice"})
    await node.signin(client, {"id": "bob"})
    assert client.conn.user_id == "bob"
    assert node.engine.registry.user_connections("1001", "alice") == []
    assert node.engine.registry.user_connections("1001", "bob") == [client.conn]


async def test_server_to_user_events_reach_every_socket_of_the_user(node):
    from realtime.protocol.outframe import OutFrame

    one = await node.connect()
    two = await node.connect()
    for client in (one, two):
        await node.signin(client, {"id": "alice"})
    node.engine.adapter.send_to_user("1001", "alice", OutFrame('{"event":"note","data":"hi"}'))
    assert one.last() == two.last() == {"event": "note", "data": "hi"}


async def test_terminating_a_user_closes_its_sockets(node):
    one = await node.connect()
    other = await node.connect()
    await node.signin(one, {"id": "alice"})
    await node.signin(other, {"id": "bob"})
    node.engine.adapter.terminate_user("1001", "alice", 4009, "You got disconnected by the app.")
    assert one.closed_with == (4009, "You got disconnected by the app.")
    assert other.closed_with is None


async def test_watchlist_reports_online_and_offline(node):
    app = make_app(enable_watchlist_events=True)
    watcher = await node.connect(app)
    await node.signin(watcher, {"id": "alice", "watchlist": ["bob"]})
    watcher.new()
    assert watcher.last("pusher_internal:watchlist_events")["data"] == {
        "events": [{"name": "offline", "user_ids": ["bob"]}]
    }
    bob = await node.connect(app)
    await node.signin(bob, {"id": "bob"})
    assert watcher.new() == [
        {
            "event": "pusher_internal:watchlist_events",
            "data": {"events": [{"name": "online", "user_ids": ["bob"]}]},
        }
    ]
    node.engine.disconnect(bob.conn, 1000)
    assert watcher.new() == [
        {
            "event": "pusher_internal:watchlist_events",
            "data": {"events": [{"name": "offline", "user_ids": ["bob"]}]},
        }
    ]


@pytest.mark.sockudo(WATCHLIST_MAX_SIZE=2)
async def test_watchlist_over_the_limit_is_refused(node):
    client = await node.connect(make_app(enable_watchlist_events=True))
    client.new()
    await node.signin(client, {"id": "alice", "watchlist": ["a", "b", "c"]})
    assert client.new() == [
        {"event": "pusher:error", "data": {"code": 4302, "message": "Watchlist exceeds the limit of 2 users"}}
    ]
