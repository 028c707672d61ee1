"""``SERVER_FAST_PATHS`` reaches the server process (``LiveServer`` passes the environment through)
and both transports serve WebSocket and publishes end to end: with it off the node runs on stock
daphne and Django's own ASGI handler, and says so in ``/stats`` (``node.transport``). CI runs the
interop suite once more on the stock transport (``make test-stock``)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests._live import api, connect, publish, run, subscribed, uid


@pytest.mark.parametrize(("fast_paths", "transport"), [("false", "stock"), ("true", "tuned")])
def test_each_transport_serves_websocket_and_publishes(server_factory, fast_paths, transport):
    server = server_factory({"SERVER_FAST_PATHS": fast_paths})

    async def body() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            stats = (await http.get(f"{server.http_url}/stats")).json()
        assert stats["node"]["transport"] == transport, stats["node"]
        client = await connect(server)
        try:
            channel = f"stock-{uid()}"
            await subscribed(client, channel)
            await publish(server, channel, "single", {"n": 1})
            frame = await client.expect("single", channel)
            assert json.loads(frame["data"]) == {"n": 1}
            batch = [{"channel": channel, "name": "batched", "data": str(n)} for n in range(3)]
            response = await api(server, "POST", f"/apps/{server.app_id}/batch_events", {"batch": batch})
            assert response.status_code == 200, response.text
            assert [(await client.expect("batched", channel))["data"] for _ in range(3)] == ["0", "1", "2"]
        finally:
            await client.close()

    run(body())
