"""Presence channels (realtime/node/frames/presence.py): the member list, member_added once per user,
member_removed after the user's last socket left."""

from __future__ import annotations

import asyncio

import pytest

from tests.node.harness import data_of, make_app


def _presence(frame: dict) -> dict:
    assert frame["event"] == "pusher_internal:subscription_succeeded", frame
    return data_of(frame)["presence"]


async def test_join_gets_the_member_list(node):
    alice = await node.connect()
    await node.join(alice, "presence-room", "alice", {"name": "Alice"})
    assert _presence(alice.last()) == {"ids": ["alice"], "hash": {"alice": {"name": "Alice"}}, "count": 1}
    bob = await node.connect()
    await node.join(bob, "presence-room", "bob")
    assert _presence(bob.last()) == {
        "ids": ["alice", "bob"],
        "hash": {"alice": {"name": "Alice"}, "bob": {}},
        "count": 2,
    }


async def test_member_added_goes_to_the_others_once_per_user(node):
    alice = await node.connect()
    await node.join(alice, "presence-room", "alice")
    bob1 = await node.connect()
    await node.join(bob1, "presence-room", "bob", {"name": "Bob"})
    bob2 = await node.connect()
    await node.join(bob2, "presence-room", "bob", {"name": "Bob"})
    assert alice.of("pusher_internal:member_added") == [
        {
            "event": "pusher_internal:member_added",
            "channel": "presence-room",
            "data": '{"user_id":"bob","user_info":{"name":"Bob"}}',
        }
    ]
    assert bob1.of("pusher_internal:member_added") == []  # not to the joining user itself
    assert bob2.of("pusher_internal:member_added") == []
    assert _presence(bob2.last())["count"] == 2
    added = [e for _, e in node.events if e["name"] == "member_added"]
    assert added == [
        {"name": "member_added", "channel": "presence-room", "user_id": "alice"},
        {"name": "member_added", "channel": "presence-room", "user_id": "bob"},
    ]


async def test_member_removed_after_the_last_socket_of_the_user_leaves(node):
    alice = await node.connect()
    await node.join(alice, "presence-room", "alice")
    bob1 = await node.connect()
    await node.join(bob1, "presence-room", "bob")
    bob2 = await node.connect()
    await node.join(bob2, "presence-room", "bob")

    await node.send(bob1, "pusher:unsubscribe", {"channel": "presence-room"})
    await node.settle()
    assert alice.of("pusher_internal:member_removed") == []
    assert "bob" in node.engine.registry.members("1001", "presence-room")

    node.engine.disconnect(bob2.conn, 1000)
    await node.settle()
    assert alice.of("pusher_internal:member_removed") == [
        {"event": "pusher_internal:member_removed", "channel": "presence-room", "data": '{"user_id":"bob"}'}
    ]
    assert list(node.engine.registry.members("1001", "presence-room")) == ["alice"]
    assert ("1001", {"name": "member_removed", "channel": "presence-room", "user_id": "bob"}) in node.events


async def test_resubscribing_confirms_the_members_without_a_member_added(node):
    alice = await node.connect()
    bob = await node.connect()
    await node.join(alice, "presence-room", "alice")
    await node.join(bob, "presence-room", "bob")
    await node.join(bob, "presence-room", "bob")
    assert _presence(bob.last())["ids"] == ["alice", "bob"]
    assert len(alice.of("pusher_internal:member_added")) == 1


async def test_rejoin_after_leaving_is_announced_again(node):
    alice = await node.connect()
    bob = await node.connect()
    await node.join(alice, "presence-room", "alice")
    await node.join(bob, "presence-room", "bob")
    await node.send(bob, "pusher:unsubscribe", {"channel": "presence-room"})
    await node.settle()
    await node.join(bob, "presence-room", "bob")
    assert [f["event"] for f in alice.frames if "member" in f["event"]] == [
        "pusher_internal:member_added",
        "pusher_internal:member_removed",
        "pusher_internal:member_added",
    ]


async def test_integer_user_ids_are_strings(node):
    client = await node.connect()
    await node.subscribe(client, "presence-room", channel_data={"user_id": 42})
    assert _presence(client.last())["ids"] == ["42"]


async def test_presence_without_channel_data_is_refused(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "presence-room")
    message = "Invalid message format: presence channels require channel_data"
    assert client.new() == [
        {"event": "pusher:error", "data": {"code": 4000, "message": message}},
        {
            "event": "pusher:subscription_error",
            "channel": "presence-room",
            "data": {"type": "AuthError", "error": message, "status": 401},
        },
    ]


async def test_presence_without_a_user_id_is_refused(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "presence-room", channel_data={"user_info": {}})
    error, scoped = client.new()
    assert error["data"] == {"code": 4300, "message": "Channel error: Missing user_id in channel_data"}
    assert scoped["data"]["status"] == 401


async def test_presence_with_a_bad_signature_is_refused(node):
    client = await node.connect()
    client.new()
    await node.subscribe(client, "presence-room", channel_data={"user_id": "x"}, auth="app-key:" + "0" * 64)
    assert [f["event"] for f in client.new()] == ["pusher:error", "pusher:subscription_error"]
    assert node.engine.registry.members("1001", "presence-room") == {}


async def test_a_full_presence_channel_refuses_new_users(node):
    app = make_app(max_presence_members_per_channel=1)
    alice = await node.connect(app)
    await node.join(alice, "presence-room", "alice")
    alice_again = await node.connect(app)
    await node.join(alice_again, "presence-room", "alice")  # not a new member
    assert _presence(alice_again.last())["count"] == 1
    bob = await node.connect(app)
    bob.new()
    await node.join(bob, "presence-room", "bob")
    assert bob.new() == [
        {"event": "pusher:error", "data": {"code": 4100, "message": "Over capacity"}},
        {
            "event": "pusher:subscription_error",
            "channel": "presence-room",
            "data": {"type": "AuthError", "error": "Over capacity", "status": 403},
        },
    ]


async def test_member_info_larger_than_the_limit_is_refused(node):
    client = await node.connect(make_app(max_presence_member_size_in_kb=1))
    client.new()
    await node.join(client, "presence-room", "alice", {"bio": "x" * 1100})
    error, _scoped = client.new()
    assert error["data"] == {
        "code": 4300,
        "message": "Channel error: Presence member data is larger than 1 KiB",
    }


async def test_a_v2_socket_that_drops_stays_a_member_for_the_lease(node):
    alice = await node.connect()
    await node.join(alice, "presence-room", "alice")
    bob = await node.connect(protocol=2)
    await node.join(bob, "presence-room", "bob")
    node.engine.disconnect(bob.conn, 1006)  # abrupt: PRESENCE_V2_UNGRACEFUL_TIMEOUT_SECONDS (15 s)
    for _ in range(5):
        await asyncio.sleep(0)
    assert alice.of("pusher_internal:member_removed") == []
    assert "bob" in node.engine.registry.members("1001", "presence-room")
    # The pending leave is cancelled when the node stops (the test ends here).


@pytest.mark.sockudo(PRESENCE_V2_UNGRACEFUL_TIMEOUT_SECONDS=0)
async def test_without_a_lease_a_dropped_v2_socket_leaves_at_once(node):
    alice = await node.connect()
    await node.join(alice, "presence-room", "alice")
    bob = await node.connect(protocol=2)
    await node.join(bob, "presence-room", "bob")
    assert bob.last()["event"] == "sockudo_internal:subscription_succeeded"
    node.engine.disconnect(bob.conn, 1006)
    await node.settle()
    assert len(alice.of("pusher_internal:member_removed")) == 1


async def test_presence_update_is_v2_only(node):
    client = await node.connect()
    await node.join(client, "presence-room", "alice")
    client.new()
    await node.send(client, "pusher:presence_update", {"channel": "presence-room", "data": {"x": 1}})
    assert client.new() == [
        {
            "event": "pusher:error",
            "data": {
                "code": 4000,
                "message": "Invalid message format: presence_update is only supported on protocol V2",
            },
        }
    ]


async def test_v2_presence_update_reaches_every_v2_member(node):
    alice = await node.connect(protocol=2)
    bob = await node.connect(protocol=2)
    await node.join(alice, "presence-room", "alice")
    await node.join(bob, "presence-room", "bob")
    await node.send(alice, "sockudo:presence_update", {"channel": "presence-room", "data": {"mood": "happy"}})
    expected = {
        "event": "sockudo_internal:presence_update",
        "channel": "presence-room",
        "data": '{"user_id":"alice","user_info":{"mood":"happy"}}',
    }
    assert alice.last() == expected  # the sender included
    assert bob.last() == expected
    assert node.engine.registry.members("1001", "presence-room")["alice"].info == {"mood": "happy"}
