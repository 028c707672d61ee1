"""A node of a two-node Redis cluster dies (``kill -9``) or is stopped (SIGTERM) while it holds
presence members and subscribers.

What must hold: the members it held leave the cluster-wide member list, each observer on the
surviving node gets exactly one ``member_removed`` per member that left (none for a user still
connected to the survivor), subscription counts drop to what the survivor holds, a channel only the
dead node held is vacated (``channel_vacated`` webhook, not occupied any more); after ``kill -9``
within node timeout + cleanup interval, after SIGTERM at once (the node timeout is set long there, so
the dead-node sweep cannot be what removed them).

Needs Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time

import pytest
import redis.asyncio as aioredis

from realtime.testing import LiveServer, PusherClient
from tests.reliability._cluster import (
    FAST_HEALTH,
    REDIS_URL,
    get,
    member,
    new_prefix,
    redis_env,
    until,
    users,
)
from tests.reliability._measure import WebhookReceiver

pytestmark = pytest.mark.timeout(60)

ROOM = "presence-room"
SHARED = "feed-shared"  # subscribers on both nodes
DOOMED_ONLY = "feed-doomed"  # subscribers only on the node that goes away
NODE_TIMEOUT = int(FAST_HEALTH["CLUSTER_HEALTH_NODE_TIMEOUT_MS"]) / 1000
CLEANUP = int(FAST_HEALTH["CLUSTER_HEALTH_CLEANUP_INTERVAL_MS"]) / 1000
HEARTBEAT = int(FAST_HEALTH["CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS"]) / 1000
KILL_BOUND = NODE_TIMEOUT + CLEANUP + HEARTBEAT + 1.0  # + slack for a loaded CI machine
GRACEFUL_BOUND = 1.5
DOOMED_USERS = ["d1", "d2", "d3"]


def node_env(prefix: str, receiver: WebhookReceiver, **extra: str) -> dict[str, str]:
    hook = {"url": receiver.url, "event_types": ["channel_vacated", "member_removed"]}
    return redis_env(
        prefix,
        SOCKUDO_DEFAULT_APP_WEBHOOKS=json.dumps([hook]),
        SOCKUDO_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT="true",
        WEBHOOK_LEAVE_DELAY_MS="200",
        **extra,
    )


async def subscriber(node: LiveServer, channel: str) -> PusherClient:
    client = await PusherClient.connect(node.ws_url)
    await client.subscribe(channel)
    await client.expect("pusher_internal:subscription_succeeded", channel)
    return client


async def channel_info(node: LiveServer, channel: str) -> dict:
    info = "subscription_count,user_count" if channel.startswith("presence-") else "subscription_count"
    response = await asyncio.to_thread(get, node, f"/apps/{node.app_id}/channels/{channel}", {"info": info})
    assert response.status_code == 200, response.text
    return response.json()


def removed_ids(frames: list[dict]) -> list[str]:
    return [
        json.loads(f["data"])["user_id"]
        for f in frames
        if f.get("event") == "pusher_internal:member_removed" and f.get("channel") == ROOM
    ]


async def run_scenario(stop_signal: signal.Signals, bound: float, **env: str) -> dict[str, float]:
    receiver = WebhookReceiver()
    env_ = node_env(new_prefix(), receiver, **env)
    survivor, doomed = await asyncio.gather(
        asyncio.to_thread(lambda: LiveServer(env=env_, database=False).start()),
        asyncio.to_thread(lambda: LiveServer(env=env_, database=False).start()),
    )
    clients: list[PusherClient] = []
    try:
        await asyncio.sleep(0.5)  # both nodes listen on the broadcast topic
        observers = []
        for name in ("watch1", "watch2"):
            client, _ = await member(survivor, ROOM, name)
            observers.append(client)
        both_here, _ = await member(survivor, ROOM, "both")
        both_there, _ = await member(doomed, ROOM, "both")
        held = [(await member(doomed, ROOM, user))[0] for user in DOOMED_USERS]
        shared_here = await subscriber(survivor, SHARED)
        shared_there = [await subscriber(doomed, SHARED) for _ in range(2)]
        only_there = [await subscriber(doomed, DOOMED_ONLY) for _ in range(2)]
        clients += [*observers, both_here, both_there, *held, shared_here, *shared_there, *only_there]

        everyone = sorted(["both", "watch1", "watch2", *DOOMED_USERS])
        await until(lambda: _equals(users(survivor, ROOM), everyone), 5)
        await until(
            lambda: _equals(channel_info(survivor, SHARED), {"occupied": True, "subscription_count": 3}), 5
        )
        assert (await channel_info(survivor, DOOMED_ONLY))["subscription_count"] == 2
        assert (await channel_info(survivor, ROOM))["user_count"] == 6
        # The survivor's subscriber hears the count of the subscribers that joined on the other node.
        while True:
            count = await shared_here.expect("pusher_internal:subscription_count", SHARED, timeout=3)
            if json.loads(count["data"]) == {"subscription_count": 3}:
                break
        for client in (*observers, shared_here):
            await client.nothing(0.3)  # member_added / subscription_count of the setup

        doomed.process.send_signal(stop_signal)
        started = time.monotonic()
        remaining = ["both", "watch1", "watch2"]
        to_users = await until(lambda: _equals(users(survivor, ROOM), remaining), bound, 0.02)

        async def removals(observer: PusherClient) -> float:
            frames = []
            while len(removed_ids(frames)) < len(DOOMED_USERS):
                frames.append(
                    await observer.expect("pusher_internal:member_removed", ROOM, timeout=bound + 1)
                )
            arrived = time.monotonic() - started
            frames += await observer.nothing(1.0)  # no second event for anyone, none for "both"
            assert sorted(removed_ids(frames)) == DOOMED_USERS, frames
            return arrived

        to_events = max(await asyncio.gather(*(removals(o) for o in observers)))
        # After kill -9 the survivor's sweep writes the new count, after SIGTERM the leaving node
        # does (and publishes it): either way the survivor's subscriber hears it.
        count = await shared_here.expect("pusher_internal:subscription_count", SHARED, timeout=3)
        assert json.loads(count["data"]) == {"subscription_count": 1}, count
        assert await channel_info(survivor, SHARED) == {"occupied": True, "subscription_count": 1}
        vacated = await channel_info(survivor, DOOMED_ONLY)
        assert vacated["occupied"] is False and vacated.get("subscription_count", 0) == 0, vacated
        assert (await channel_info(survivor, ROOM))["user_count"] == 3

        # Webhooks: the vacated channel once, each departed member once, nothing for the rest.
        await until(lambda: _true(len(receiver.named("member_removed")) >= len(DOOMED_USERS)), 5)
        await until(lambda: _true(bool(receiver.named("channel_vacated", DOOMED_ONLY))), 5)
        await asyncio.sleep(0.5)
        assert len(receiver.named("channel_vacated", DOOMED_ONLY)) == 1
        assert receiver.named("channel_vacated", SHARED) == receiver.named("channel_vacated", ROOM) == []
        assert sorted(e["user_id"] for e in receiver.named("member_removed", ROOM)) == DOOMED_USERS
        return {"users": to_users, "events": to_events, "exit": doomed.process.wait(10)}
    finally:
        for client in clients:
            with contextlib.suppress(Exception):  # the dead node's sockets are gone already
                await asyncio.wait_for(client.close(), 2)
        await asyncio.to_thread(doomed.stop)
        await asyncio.to_thread(survivor.stop)
        receiver.stop()


async def _equals(awaitable, expected) -> bool:
    return (await awaitable) == expected


async def _true(value: bool) -> bool:
    return value


def test_kill_9_removes_the_dead_nodes_members_once_within_the_bound():
    figures = asyncio.run(run_scenario(signal.SIGKILL, KILL_BOUND))
    print(
        f"kill -9: members gone from /users after {figures['users']:.2f} s, every observer had its "
        f"member_removed events after {figures['events']:.2f} s "
        f"(bound {KILL_BOUND:.1f} s = node timeout {NODE_TIMEOUT} + cleanup {CLEANUP} + heartbeat {HEARTBEAT} + 1)"
    )
    assert figures["users"] < KILL_BOUND and figures["events"] < KILL_BOUND


def test_sigterm_removes_the_nodes_members_at_once():
    figures = asyncio.run(
        run_scenario(signal.SIGTERM, GRACEFUL_BOUND, CLUSTER_HEALTH_NODE_TIMEOUT_MS="30000")
    )
    print(
        f"SIGTERM: members gone from /users after {figures['users']:.2f} s, every observer had its "
        f"member_removed events after {figures['events']:.2f} s (node timeout 30 s); exit code {figures['exit']}"
    )
    assert figures["exit"] == 0
    assert figures["users"] < GRACEFUL_BOUND and figures["events"] < GRACEFUL_BOUND


def test_subscription_count_event_reaches_subscribers_on_other_nodes():
    """A subscriber on node A hears the cluster-wide count when subscribers join or leave on node
    B; each change is one message between the nodes and one webhook (sent by the node whose write
    moved the count)."""

    async def scenario() -> dict[str, float]:
        prefix = new_prefix()
        receiver = WebhookReceiver()
        hook = {"url": receiver.url, "event_types": ["subscription_count"]}
        env = redis_env(
            prefix,
            SOCKUDO_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT="true",
            SOCKUDO_DEFAULT_APP_WEBHOOKS=json.dumps([hook]),
            SUBSCRIPTION_COUNT_INTERVAL="0",  # every change is its own event (not coalesced)
        )
        a, b = await asyncio.gather(
            asyncio.to_thread(lambda: LiveServer(env=env, database=False).start()),
            asyncio.to_thread(lambda: LiveServer(env=env, database=False).start()),
        )
        tap = aioredis.from_url(REDIS_URL, decode_responses=True)
        pubsub = tap.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(f"{prefix}#broadcast")
        clients: list[PusherClient] = []

        async def count_at(client: PusherClient, expected: int) -> None:
            count = await client.expect("pusher_internal:subscription_count", SHARED, timeout=2.5)
            assert json.loads(count["data"]) == {"subscription_count": expected}, count

        try:
            await asyncio.sleep(0.5)
            here = await subscriber(a, SHARED)
            clients.append(here)
            await count_at(here, 1)
            # A join on B: A's subscriber hears it.
            started = time.monotonic()
            there = await subscriber(b, SHARED)
            clients.append(there)
            await count_at(here, 2)
            joined = time.monotonic() - started
            await count_at(there, 2)
            third = await subscriber(b, SHARED)
            await count_at(here, 3)
            # A leave on B: A hears it.
            started = time.monotonic()
            await third.close()
            await count_at(here, 2)
            left = time.monotonic() - started
            # B's last subscriber leaves (B's own count drops to 0): A hears 1.
            await there.close()
            await count_at(here, 1)
            assert [f for f in await here.nothing(0.5) if f.get("channel") == SHARED] == []

            # One cluster message per change (1, 2, 3, 2, 1), not one per subscriber or node.
            changes = []
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                message = await pubsub.get_message(timeout=0.1)
                if message is None:
                    continue
                payload = json.loads(message["data"])
                if payload.get("t") == "s" and payload.get("c") == SHARED:
                    changes.append(payload["s"])
            assert changes == [1, 2, 3, 2, 1], changes
            # One webhook per change, not one per node.
            await until(lambda: _true(len(receiver.named("subscription_count", SHARED)) >= 5), 5)
            await asyncio.sleep(0.5)
            hooks = receiver.named("subscription_count", SHARED)
            assert sorted(e["subscription_count"] for e in hooks) == [1, 1, 2, 2, 3], hooks
            return {"joined": joined, "left": left}
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.close()
            await pubsub.aclose()
            await tap.aclose()
            await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
            receiver.stop()

    figures = asyncio.run(scenario())
    print(
        f"subscription_count across nodes: subscriber on A heard B's join {figures['joined'] * 1000:.0f} ms "
        f"after B's subscribe began, B's leave {figures['left'] * 1000:.0f} ms after the close began"
    )
