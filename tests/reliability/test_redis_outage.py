"""A Redis outage under load: two nodes reach Redis through a cuttable proxy while publishes go to
both of them and presence members come and go.

What must hold: no publish answered 200 is missing on any live node; publishes during the outage
answer 503; after Redis returns every node answers again within a bound, the members that left
during or just after the outage are gone everywhere (no ghost), counts are right, and each node
counted the outage and its recovery in /metrics.

Needs Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

from realtime.testing import LiveServer, PusherClient, TcpProxy
from tests.reliability._cluster import get, member, new_prefix, publish, redis_env, until, users

pytestmark = pytest.mark.timeout(120)

OUTAGE = 3.0  # seconds Redis is cut off
RECOVERY_BOUND = 3.0  # seconds after Redis returns by which every node answers publishes again
GHOST_BOUND = 3.0  # seconds after Redis returns by which a member that left is gone everywhere
CHANNEL = "feed"
ROOM = "presence-room"


def metric(node: LiveServer, name: str) -> float:
    text = httpx.get(f"{node.http_url}/metrics", timeout=5).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def drain(client: PusherClient, seconds: float) -> list[dict]:
    return await client.nothing(seconds)


def test_no_acknowledged_publish_is_lost_and_no_ghost_member_stays_after_an_outage():
    async def scenario():
        proxy = TcpProxy()
        await proxy.start()
        env = redis_env(new_prefix(), f"redis://127.0.0.1:{proxy.port}/0")
        nodes = await asyncio.gather(
            asyncio.to_thread(lambda: LiveServer(env=env).start()),
            asyncio.to_thread(lambda: LiveServer(env=env).start()),
        )
        try:
            await asyncio.sleep(0.5)
            subs = []
            for node in nodes:
                client = await PusherClient.connect(node.ws_url)
                await client.subscribe(CHANNEL)
                await client.expect("pusher_internal:subscription_succeeded", CHANNEL)
                subs.append(client)
            watcher, _ = await member(nodes[0], ROOM, "watcher")
            stay, _ = await member(nodes[1], ROOM, "stay")
            gone, _ = await member(nodes[1], ROOM, "gone")  # leaves during the outage
            late, _ = await member(nodes[1], ROOM, "late")  # leaves just after Redis returns
            await asyncio.sleep(0.3)
            assert await users(nodes[0], ROOM) == ["gone", "late", "stay", "watcher"]

            results: list[tuple[int, int, int]] = []  # (seq, node index, status)
            first_ok_after: dict[int, float] = {}
            restored_at: list[float] = []
            stop = asyncio.Event()

            async def publisher():
                seq = 0
                while not stop.is_set():
                    index = seq % 2
                    body = {"name": "tick", "channel": CHANNEL, "data": str(seq)}
                    try:
                        response = await asyncio.to_thread(publish, nodes[index], body, 5)
                        status = response.status_code
                    except httpx.HTTPError:
                        status = 0
                    results.append((seq, index, status))
                    if status == 200 and restored_at and index not in first_ok_after:
                        first_ok_after[index] = time.monotonic() - restored_at[0]
                    seq += 1
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(publisher())
            await asyncio.sleep(1.0)
            await proxy.cut()
            await asyncio.sleep(0.5)
            await gone.close()  # its leave cannot reach Redis now
            await asyncio.sleep(OUTAGE - 0.5)
            await proxy.start()
            restored_at.append(time.monotonic())
            await late.close()  # its leave may hit connections the outage left behind
            whole = asyncio.create_task(
                until(lambda: _members_are(nodes, ["stay", "watcher"]), GHOST_BOUND + 5, interval=0.1)
            )
            deadline = time.monotonic() + RECOVERY_BOUND + 5
            while len(first_ok_after) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # publishes keep flowing after the recovery
            stop.set()
            await task

            ghost_seconds = await whole  # from Redis' return to no ghost on any node
            received = [await drain(client, 1.0) for client in subs]
            delivered = [{int(f["data"]) for f in frames if f.get("event") == "tick"} for frames in received]
            acked = {seq for seq, _, status in results if status == 200}
            refused = [seq for seq, _, status in results if status == 503]
            other = [(seq, status) for seq, _, status in results if status not in (200, 503)]
            print(
                f"publishes {len(results)}: acked {len(acked)}, 503 {len(refused)}, other {len(other)}; "
                f"delivered node A {len(delivered[0] & acked)}/{len(acked)}, "
                f"node B {len(delivered[1] & acked)}/{len(acked)}; "
                f"first 200 after Redis returned: A {first_ok_after.get(0, -1):.2f}s, "
                f"B {first_ok_after.get(1, -1):.2f}s; no ghost member {ghost_seconds:.2f}s after"
            )
            assert refused, "no publish answered 503 during the outage"
            assert not other, other
            for index, got in enumerate(delivered):
                missing = sorted(acked - got)
                assert not missing, f"node {index} missed acknowledged publishes {missing[:20]}"
            assert all(seconds < RECOVERY_BOUND for seconds in first_ok_after.values()), first_ok_after
            assert len(first_ok_after) == 2, "a node never answered a publish again"
            assert ghost_seconds < GHOST_BOUND, ghost_seconds

            removed = [
                json.loads(f["data"])["user_id"]
                for f in await drain(watcher, 0.5)
                if f.get("event") == "pusher_internal:member_removed"
            ]
            assert sorted(removed) == ["gone", "late"], removed
            newcomer, ids = await member(nodes[0], ROOM, "newcomer")
            assert ids == ["newcomer", "stay", "watcher"], ids
            for node in nodes:
                listed = await asyncio.to_thread(
                    get, node, f"/apps/{node.app_id}/channels", {"info": "subscription_count"}
                )
                channels = listed.json()["channels"]
                assert channels[CHANNEL]["subscription_count"] == 2, listed.text
                assert channels[ROOM]["subscription_count"] == 3, listed.text  # watcher, stay, newcomer
            for node in nodes:
                outages = await asyncio.to_thread(metric, node, "sockudo_adapter_outages_total")
                recoveries = await asyncio.to_thread(metric, node, "sockudo_adapter_recoveries_total")
                print(f"node :{node.port} outages {outages:.0f}, recoveries {recoveries:.0f}")
                assert outages >= 1 and recoveries == outages, (outages, recoveries)
                log = node.log()
                assert "Redis adapter outage" in log and "Redis adapter recovered" in log, log
            for client in [*subs, watcher, stay, newcomer]:
                await client.close()
        finally:
            await asyncio.gather(*(asyncio.to_thread(node.stop) for node in nodes))
            await proxy.cut()

    asyncio.run(asyncio.wait_for(scenario(), 100))


async def _members_are(nodes: list[LiveServer], expected: list[str]) -> bool:
    for node in nodes:
        try:
            if await users(node, ROOM) != expected:
                return False
        except AssertionError:  # 503 while a node still recovers
            return False
    return True
