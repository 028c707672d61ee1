"""Bad input from both sides: garbage WebSocket frames and forged or replayed HTTP API calls.

What must hold: every garbage frame is answered with a ``pusher:error`` of a specified code (or the
socket is closed with a specified close code), every forged API call is refused with the JSON error
envelope (``401 auth_failed``; ``404 app_not_found`` for a key no app has), nothing is logged as a
traceback, and afterwards a normal publish still reaches a subscriber.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from realtime.protocol.signatures import md5_hex, sign_api_request
from realtime.testing import LiveServer, PusherClient, signed_query
from tests._live import apps_env, assert_api_error, extra_app
from tests.test_fuzz import (
    CLOSE_CODES,
    ERROR_CODES,
    NASTY_STRINGS,
    deep_array,
    deep_object,
    huge_integer_user,
    nested_past_the_bound,
)

pytestmark = pytest.mark.timeout(60)

SKEW = 2  # HTTP_API_TIMESTAMP_SKEW of the server under test (seconds)
ROUNDS = 10  # each forged request kind is sent this many times
OTHER = extra_app("2002")
# Leaving a channel the socket is not in is ignored without a reply, as on Pusher.
UNSUBSCRIBE_ODD = '{"event":"pusher:unsubscribe","data":{"channel":{}}}'


def garbage_frames() -> list[str | bytes]:
    """A fixed, bounded set: the fuzz suite's nasty strings and nesting bombs, frames of the wrong
    shape, and seeded random text and bytes."""
    rng = random.Random(20240611)
    shapes = [
        "{",
        '{"event":',
        '{"event":1}',
        '{"event":null,"data":{}}',
        '{"data":{"channel":"x"}}',
        '{"event":"pusher:subscribe","data":5}',
        '{"event":"pusher:subscribe","data":{"channel":["a"]}}',
        '{"event":"pusher:subscribe","data":"{not json"}',
        '{"event":"pusher:signin","data":{"user_data":1}}',
        '{"event":"client-x","channel":"not-joined","data":{}}',
        "[" + '"a",' * 500 + '"a"]',
        UNSUBSCRIBE_ODD,
        "x" * (65 * 1024),  # over WEBSOCKET_MAX_PAYLOAD_KB: closed with 1009
    ]
    nasty = [s for s in NASTY_STRINGS if _encodable(s)]
    bombs = [deep_array(), deep_object(), nested_past_the_bound(), huge_integer_user()]
    texts = ["".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 200))) for _ in range(60)]
    blobs = [rng.randbytes(rng.randrange(1, 300)) for _ in range(60)]
    return [*shapes, *nasty, *bombs, *[t for t in texts if _encodable(t)], *blobs]


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def exchange(client: PusherClient, item: str | bytes) -> tuple[list[dict], int | None]:
    """Send ``item``, then a ping; the frames that came before the pong, or the close code."""
    await client.ws.send(item)
    await client.ws.send('{"event":"pusher:ping"}')
    replies: list[dict] = []
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(client.ws.recv(), 5))
            if frame.get("event") == "pusher:pong":
                return replies, None
            replies.append(frame)
    except ConnectionClosed as exc:
        return replies, exc.rcvd.code if exc.rcvd else None


def forged_requests(server: LiveServer) -> dict[str, tuple[str, bytes]]:
    """Kind -> (query string, body) of a POST /apps/{id}/events that must be refused."""
    path = f"/apps/{server.app_id}/events"
    body = json.dumps({"name": "forged", "channel": "bad-input-feed", "data": "x"}).encode()
    now = int(time.time())

    def query(params: dict[str, str], secret: str = server.secret) -> str:
        signed = dict(params)
        signed["auth_signature"] = sign_api_request(secret, "POST", path, params)
        return "&".join(f"{k}={v}" for k, v in signed.items())

    base = {
        "auth_key": server.key,
        "auth_timestamp": str(now),
        "auth_version": "1.0",
        "body_md5": md5_hex(body),
    }
    good = signed_query("POST", path, server.key, server.secret, body)
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    return {
        "wrong signature": (flipped, body),
        "signed with the wrong secret": (query(base, secret="not-the-secret"), body),
        "no signature": ("&".join(f"{k}={v}" for k, v in base.items()), body),
        "timestamp too old": (query({**base, "auth_timestamp": str(now - SKEW - 30)}), body),
        "timestamp in the future": (query({**base, "auth_timestamp": str(now + SKEW + 30)}), body),
        "timestamp not a number": (query({**base, "auth_timestamp": "yesterday"}), body),
        "body_md5 missing": (query({k: v for k, v in base.items() if k != "body_md5"}), body),
        "body tampered after signing": (query(base), body.replace(b'"x"', b'"y"')),
        "another app's key and secret": (
            signed_query("POST", path, OTHER["key"], OTHER["secret"], body),
            body,
        ),
        "unknown key": (query({**base, "auth_key": "no-such-key"}), body),
    }


def test_the_server_refuses_bad_input_and_keeps_serving():
    async def scenario() -> None:
        env = {**apps_env(OTHER), "HTTP_API_TIMESTAMP_SKEW": str(SKEW)}
        server = await asyncio.to_thread(lambda: LiveServer(env=env, database=False).start())
        log = ""
        try:
            observer = await PusherClient.connect(server.ws_url)
            await observer.subscribe("bad-input-feed")
            await observer.expect("pusher_internal:subscription_succeeded", "bad-input-feed")

            # 1. Garbage frames on a live socket (reconnecting whenever the server closes it).
            items = garbage_frames()
            errors: collections.Counter[int] = collections.Counter()
            closes: collections.Counter[int | None] = collections.Counter()
            silent: list[str | bytes] = []
            client = await PusherClient.connect(server.ws_url)
            for item in items:
                replies, closed = await exchange(client, item)
                for frame in replies:
                    assert frame["event"] == "pusher:error", (item, frame)
                    assert set(frame["data"]) == {"code", "message"}, (item, frame)
                    assert frame["data"]["code"] in ERROR_CODES, (item, frame)
                    errors[frame["data"]["code"]] += 1
                if closed is not None:
                    assert closed in CLOSE_CODES, (item, closed, replies)
                    closes[closed] += 1
                    client = await PusherClient.connect(server.ws_url)
                elif not replies:
                    silent.append(item)
            await client.close()
            assert silent == [UNSUBSCRIBE_ODD], silent
            print(
                f"{len(items)} garbage frames: pusher:error codes {dict(errors)}, "
                f"closes {dict(closes)}; every one answered but the ignored unsubscribe"
            )

            # 2. Forged and replayed HTTP API calls.
            path = f"/apps/{server.app_id}/events"
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:

                async def post(query: str, body: bytes) -> httpx.Response:
                    return await http.post(
                        f"{path}?{query}", content=body, headers={"Content-Type": "application/json"}
                    )

                captured_body = json.dumps(
                    {"name": "once", "channel": "bad-input-feed", "data": "1"}
                ).encode()
                captured = signed_query("POST", path, server.key, server.secret, captured_body)
                assert (await post(captured, captured_body)).status_code == 200
                await observer.expect("once", "bad-input-feed")

                refused: collections.Counter[str] = collections.Counter()
                for _ in range(ROUNDS):
                    for kind, (query, body) in forged_requests(server).items():
                        response = await post(query, body)
                        if kind == "unknown key":
                            assert_api_error(response, 404, "app_not_found")
                        else:
                            assert_api_error(response, 401, "auth_failed")
                        refused[f"{response.status_code}"] += 1
                await asyncio.sleep(SKEW + 1.1)
                for _ in range(ROUNDS):  # the captured request, replayed once its timestamp is stale
                    assert_api_error(await post(captured, captured_body), 401, "auth_failed")
                    refused["401"] += 1
                print(
                    f"{sum(refused.values())} forged API calls ({len(forged_requests(server)) + 1} kinds x "
                    f"{ROUNDS}, replay after {SKEW + 1.1:.1f} s with skew {SKEW} s): {dict(refused)}, "
                    "all with the error envelope"
                )
            assert [f for f in await observer.nothing(0.3) if f.get("event") in ("forged", "once")] == []

            # 3. Still serving: a normal publish reaches the subscriber.
            body = json.dumps({"name": "after", "channel": "bad-input-feed", "data": "ok"}).encode()
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
                query = signed_query("POST", path, server.key, server.secret, body)
                response = await http.post(
                    f"{path}?{query}", content=body, headers={"Content-Type": "application/json"}
                )
            assert response.status_code == 200, response.text
            frame = await observer.expect("after", "bad-input-feed")
            assert frame["data"] == "ok"
            await observer.close()
            assert server.process.poll() is None
            log = server.log_path.read_text()
        finally:
            await asyncio.to_thread(server.stop)
        assert "Traceback" not in log, log[-4000:]

    asyncio.run(scenario())
