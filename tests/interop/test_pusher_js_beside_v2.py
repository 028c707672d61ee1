"""pusher-js keeps getting plain Pusher frames on a channel whose V2 subscribers get message ids,
serials and history (identity and history on for every channel)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from realtime.testing import LiveServer
from tests.interop.test_pusher_js import pusher_js_env, run_scenario  # noqa: F401, F811 - shared fixtures

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server():
    env = {"CONNECTION_RECOVERY_ENABLED": "true", "HISTORY_ENABLED": "true"}
    with LiveServer(env=env) as live:
        yield live


def test_pusher_js_and_a_v2_client_on_one_channel(server, run_scenario):  # noqa: F811
    import websockets

    channel = "interop-public-mixed"
    v2_frames: list[dict] = []
    ready = threading.Event()
    stop = threading.Event()

    async def v2_listener():
        url = f"ws://{server.host}:{server.port}/app/{server.key}?protocol=2"
        async with websockets.connect(url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"event": "sockudo:subscribe", "data": {"channel": channel}}))
            while not stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                if frame["event"] == "sockudo_internal:subscription_succeeded":
                    ready.set()
                v2_frames.append(frame)

    thread = threading.Thread(target=lambda: asyncio.run(v2_listener()), daemon=True)
    thread.start()
    assert ready.wait(5)
    out = run_scenario("public", "--channel", channel)
    stop.set()
    thread.join(5)
    assert out["events"] and out["events"][0]["name"] == "interop-event"
    plain = [f["frame"] for f in out["frames"] if f["frame"].get("event") == "interop-event"]
    assert plain, out["frames"]
    for frame in plain:  # what pusher-js saw: no V2 metadata at all
        assert not {"message_id", "serial", "stream_id", "extras", "tags"} & set(frame), frame
    rich = [f for f in v2_frames if f.get("event") == "interop-event"]
    assert len(rich) == 1 and rich[0]["serial"] >= 1 and rich[0]["message_id"] and rich[0]["stream_id"]
