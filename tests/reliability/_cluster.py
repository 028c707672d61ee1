"""Shared helpers of the fault suite: nodes on Redis (optionally through a TcpProxy), signed HTTP
calls, presence clients."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import httpx

from realtime.testing import LiveServer, PusherClient, signed_query

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FAST_HEALTH = {
    "CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS": "300",
    "CLUSTER_HEALTH_NODE_TIMEOUT_MS": "2000",
    "CLUSTER_HEALTH_CLEANUP_INTERVAL_MS": "300",
}


def new_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


def redis_env(prefix: str, redis_url: str = REDIS_URL, **extra: str) -> dict[str, str]:
    return {"ADAPTER_DRIVER": "redis", "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, **FAST_HEALTH, **extra}


def publish(node: LiveServer, body: dict, timeout: float = 10) -> httpx.Response:
    raw = json.dumps(body).encode()
    path = f"/apps/{node.app_id}/events"
    query = signed_query("POST", path, node.key, node.secret, raw)
    return httpx.post(
        f"{node.http_url}{path}?{query}",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )


def get(node: LiveServer, path: str, params: dict | None = None) -> httpx.Response:
    query = signed_query("GET", path, node.key, node.secret, params=params)
    return httpx.get(f"{node.http_url}{path}?{query}", timeout=10)


async def users(node: LiveServer, channel: str) -> list[str]:
    response = await asyncio.to_thread(get, node, f"/apps/{node.app_id}/channels/{channel}/users")
    assert response.status_code == 200, response.text
    return sorted(u["id"] for u in response.json()["users"])


def presence_data(user_id: str) -> dict:
    return {"user_id": user_id, "user_info": {"name": user_id}}


async def subscribe_frame(client: PusherClient, node: LiveServer, channel: str, user_id: str) -> None:
    await client.subscribe(channel, node.key, node.secret, presence_data(user_id))


async def member(node: LiveServer, channel: str, user_id: str) -> tuple[PusherClient, list[str]]:
    """A socket of ``user_id`` joined to ``channel``; returns it and the member ids it was given."""
    client = await PusherClient.connect(node.ws_url)
    await subscribe_frame(client, node, channel, user_id)
    ok = await client.expect("pusher_internal:subscription_succeeded", channel)
    return client, sorted(json.loads(ok["data"])["presence"]["ids"])


def member_events(frames: list[dict], channel: str, user_id: str) -> list[str]:
    """``added`` / ``removed`` for ``user_id`` in ``channel``, in arrival order."""
    out = []
    for frame in frames:
        if frame.get("channel") != channel:
            continue
        name = frame.get("event")
        if (
            name in ("pusher_internal:member_added", "pusher_internal:member_removed")
            and json.loads(frame["data"])["user_id"] == user_id
        ):
            out.append("added" if name.endswith("added") else "removed")
    return out


def well_formed(events: list[str], present_before: bool, present_after: bool) -> bool:
    """Member events of one user alternate and lead from the state before to the state after."""
    state = present_before
    for event in events:
        if (event == "added") == state:
            return False
        state = event == "added"
    return state == present_after


async def until(predicate, timeout: float, interval: float = 0.05) -> float:
    """Poll an async predicate until it is true; returns the seconds it took (fails after timeout)."""
    started = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(interval)
