"""Presence under every order of subscribe / unsubscribe / close of one user, on the local adapter,
one node on Redis and two nodes on Redis.

Each scenario checks the three views a user has of a presence channel: ``GET .../users``, the member
list a newcomer gets, and the member events observers (one per node) receive, which must alternate
and lead from the state before to the state after. A socket that leaves and rejoins at once must
show exactly one ``member_removed`` then one ``member_added`` to every observer (Pusher, soketi).

Needs Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from realtime.testing import LiveServer, PusherClient
from tests.reliability._cluster import (
    member,
    member_events,
    new_prefix,
    redis_env,
    subscribe_frame,
    users,
    well_formed,
)

pytestmark = pytest.mark.timeout(180)

REPEATS = 8  # each racy scenario, per topology (the reported loss showed in about half the tries)
SETTLE = 0.4  # seconds for stray events to arrive before the observers' frames are collected


@pytest.fixture(scope="module", params=["local", "redis-1-node", "redis-2-nodes"])
def topology(request):
    """(subject's node, every node); observers sit one per node."""
    if request.param == "local":
        nodes = [LiveServer().start()]
    else:
        prefix = new_prefix()
        count = 1 if request.param == "redis-1-node" else 2
        nodes = [LiveServer(env=redis_env(prefix)).start() for _ in range(count)]
    yield request.param, nodes[-1], nodes
    for node in nodes:
        node.stop()


class Room:
    """A fresh presence channel with one observer per node."""

    def __init__(self, nodes: list[LiveServer]) -> None:
        self.nodes = nodes
        self.channel = f"presence-{uuid.uuid4().hex[:10]}"
        self.observers: list[PusherClient] = []

    async def open(self) -> Room:
        for i, node in enumerate(self.nodes):
            client, _ = await member(node, self.channel, f"obs{i}")
            self.observers.append(client)
        await asyncio.sleep(0.1)
        for client in self.observers:
            await client.nothing(0.1)  # the observers' own member_added
        return self

    async def check(self, user_id: str, before: bool, after: bool) -> list[list[str]]:
        """Assert every view agrees ``user_id`` is (not) a member; return the observers' events."""
        await asyncio.sleep(SETTLE)
        seen = [member_events(await o.nothing(0.1), self.channel, user_id) for o in self.observers]
        for events in seen:
            assert well_formed(events, before, after), (seen, before, after)
        for node in self.nodes:
            assert (user_id in await users(node, self.channel)) == after, node.port
        newcomer, ids = await member(self.nodes[0], self.channel, f"new-{uuid.uuid4().hex[:6]}")
        assert (user_id in ids) == after, ids
        await newcomer.close()
        await asyncio.sleep(0.1)
        for o in self.observers:
            await o.nothing(0.05)  # the newcomer's own events
        return seen

    async def close(self) -> None:
        for o in self.observers:
            await o.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 150))


def test_unsubscribe_then_subscribe_at_once_keeps_the_member_and_shows_one_pair(topology):
    name, subject_node, nodes = topology

    async def scenario():
        pairs = 0
        for _ in range(REPEATS):
            room = await Room(nodes).open()
            subject, _ = await member(subject_node, room.channel, "u")
            for o in room.observers:
                await o.expect("pusher_internal:member_added", room.channel)
            await subject.send("pusher:unsubscribe", {"channel": room.channel})
            await subscribe_frame(subject, subject_node, room.channel, "u")  # same loop turn on the node
            await subject.expect("pusher_internal:subscription_succeeded", room.channel)
            seen = await room.check("u", before=True, after=True)
            assert all(events == ["removed", "added"] for events in seen), seen
            pairs += sum(len(events) // 2 for events in seen)
            await subject.close()
            await room.close()
        print(
            f"[{name}] resubscribe: {REPEATS} tries, member removed+added pairs per observer per try "
            f"{pairs / (REPEATS * len(nodes)):.2f}"
        )

    run(scenario())


def test_subscribe_then_unsubscribe_at_once_leaves_no_member(topology):
    name, subject_node, nodes = topology

    async def scenario():
        for _ in range(REPEATS):
            room = await Room(nodes).open()
            subject = await PusherClient.connect(subject_node.ws_url)
            await subscribe_frame(subject, subject_node, room.channel, "u")
            await subject.send("pusher:unsubscribe", {"channel": room.channel})
            seen = await room.check("u", before=False, after=False)
            assert all(events == ["added", "removed"] for events in seen), seen
            await subject.close()
            await room.close()
        print(f"[{name}] subscribe+unsubscribe: {REPEATS} tries, no member left behind")

    run(scenario())


def test_unsubscribe_subscribe_close_at_once_leaves_no_member(topology):
    name, subject_node, nodes = topology

    async def scenario():
        for _ in range(REPEATS):
            room = await Room(nodes).open()
            subject, _ = await member(subject_node, room.channel, "u")
            for o in room.observers:
                await o.expect("pusher_internal:member_added", room.channel)
            await subject.send("pusher:unsubscribe", {"channel": room.channel})
            await subscribe_frame(subject, subject_node, room.channel, "u")
            await subject.close()
            await room.check("u", before=True, after=False)
            await room.close()
        print(f"[{name}] unsubscribe+subscribe+close: {REPEATS} tries, no ghost")

    run(scenario())


def test_close_and_a_new_socket_of_the_same_user_in_either_order(topology):
    name, subject_node, nodes = topology

    async def scenario():
        quiet = 0
        for attempt in range(REPEATS):
            room = await Room(nodes).open()
            old, _ = await member(subject_node, room.channel, "u")
            for o in room.observers:
                await o.expect("pusher_internal:member_added", room.channel)
            if attempt % 2:  # the new socket is in before the old one goes: no event at all
                new, _ = await member(nodes[0], room.channel, "u")
                await old.close()
                seen = await room.check("u", before=True, after=True)
                assert all(events == [] for events in seen), seen
                quiet += 1
            else:  # the old one goes while the new one subscribes: nothing, or one pair
                new = await PusherClient.connect(nodes[0].ws_url)
                await asyncio.gather(old.close(), subscribe_frame(new, nodes[0], room.channel, "u"))
                await new.expect("pusher_internal:subscription_succeeded", room.channel)
                seen = await room.check("u", before=True, after=True)
                assert all(events in ([], ["removed", "added"]) for events in seen), seen
            await new.close()
            await room.check("u", before=True, after=False)
            await room.close()
        print(f"[{name}] close vs new socket: {REPEATS} tries ({quiet} with no event), lists right")

    run(scenario())


def test_churn_gives_each_observer_one_removed_and_one_added_per_cycle(topology):
    name, subject_node, nodes = topology
    cycles = 50

    async def scenario():
        room = await Room(nodes).open()
        subject, _ = await member(subject_node, room.channel, "u")
        for o in room.observers:
            await o.expect("pusher_internal:member_added", room.channel)
        for _ in range(cycles):
            await subject.send("pusher:unsubscribe", {"channel": room.channel})
            await subscribe_frame(subject, subject_node, room.channel, "u")
            await subject.expect("pusher_internal:subscription_succeeded", room.channel, timeout=5)
        seen = await room.check("u", before=True, after=True)
        per_cycle = [len(events) / cycles for events in seen]
        print(f"[{name}] churn: {cycles} cycles, member events per cycle per observer {per_cycle}")
        for events in seen:
            assert events == ["removed", "added"] * cycles
        await subject.close()
        await room.close()

    run(scenario())
