"""Rate limits: per-IP on the HTTP API and on WebSocket upgrades, per app on publishes and reads,
the counter drivers (one conformance suite for memory and Redis) and counters shared by a cluster.

Redis tests need Redis on ``TEST_REDIS_URL`` (default 127.0.0.1:6379); with ``CI=true`` they fail
without it, elsewhere they skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from realtime.ratelimit import client_ip
from realtime.ratelimit.base import RateLimiterUnavailable
from realtime.ratelimit.memory import MemoryRateLimiter
from realtime.ratelimit.redis import RedisRateLimiter
from realtime.testing import LiveServer, PusherClient, free_port, signed_query

from ._live import transport, upgrade_refused_status

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TOO_MANY = {"error": "Too Many Requests", "message": "Rate limit exceeded. Please try again later."}
ON = {"RATE_LIMITER_ENABLED": "true"}


def need_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is required in CI ({REDIS_URL}): {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}")


def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


# -- helpers for live servers ---------------------------------------------------------------------


def api_get(
    server: LiveServer, path: str = "", headers: dict | None = None, signed: bool = True
) -> httpx.Response:
    path = path or f"/apps/{server.app_id}/channels"
    query = signed_query("GET", path, server.key, server.secret) if signed else ""
    return httpx.get(f"{server.http_url}{path}?{query}", headers=headers or {}, timeout=10)


def api_post(server: LiveServer, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    raw = json.dumps(body).encode()
    query = signed_query("POST", path, server.key, server.secret, raw)
    return httpx.post(
        f"{server.http_url}{path}?{query}",
        content=raw,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=10,
    )


def publish(server: LiveServer, events: int = 1, headers: dict | None = None) -> httpx.Response:
    if events == 1:
        body = {"name": "e", "channel": "c", "data": "x"}
        return api_post(server, f"/apps/{server.app_id}/events", body, headers)
    batch = [{"name": "e", "channel": "c", "data": str(i)} for i in range(events)]
    return api_post(server, f"/apps/{server.app_id}/batch_events", {"batch": batch}, headers)


def rate_headers(response: httpx.Response) -> dict[str, str]:
    names = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")
    return {name: response.headers[name] for name in names if name in response.headers}


def assert_too_many(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == TOO_MANY
    headers = rate_headers(response)
    assert headers["x-ratelimit-limit"] == str(limit)
    assert headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(headers["retry-after"]) == int(headers["x-ratelimit-reset"])


def raw_upgrade(server: LiveServer, headers: dict[str, str] | None = None) -> bytes:
    """Send a WebSocket upgrade by hand; everything the server sends within a short while."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    request = (
        f"GET /app/{server.key}?protocol=7&client=test&version=1 HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(request.encode())
        received = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if received.startswith(b"HTTP/1.1 101") and b"connection_established" in received:
                break
        return received


def assert_upgrade_refused(
    server: LiveServer, received: bytes, status: int = 429, limit: int | None = None
) -> dict[str, str]:
    """A plain HTTP refusal then the socket closed (``raw_upgrade`` read until EOF), so no handshake
    and no WebSocket frame. On the tuned transport: ``status`` with a JSON body of Content-Length
    bytes (and the limit's headers for a 429). On the stock transport the upgrade is closed before
    accept, which stock daphne can only answer ``403 Access denied`` with no body."""
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if transport(server) == "stock":
        assert lines[0] == "HTTP/1.1 403 Access denied", received
        assert "sec-websocket-accept" not in headers and body == b"", received
        return headers
    assert lines[0].startswith(f"HTTP/1.1 {status} "), received
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert "sec-websocket-accept" not in headers
    if status == 429:
        assert json.loads(body) == TOO_MANY
        assert headers["x-ratelimit-limit"] == str(limit)
        assert headers["x-ratelimit-remaining"] == "0"
        assert int(headers["retry-after"]) >= 1
    return headers


def assert_upgraded(received: bytes) -> None:
    assert received.startswith(b"HTTP/1.1 101"), received
    assert b"pusher:connection_established" in received


# -- per-IP limit of the HTTP API -------------------------------------------------------------------


def bad_signature(server: LiveServer, headers: dict | None = None) -> httpx.Response:
    """A request signed with the wrong secret: 401 auth_failed."""
    path = f"/apps/{server.app_id}/channels"
    query = signed_query("GET", path, server.key, "not-the-secret")
    return httpx.get(f"{server.http_url}{path}?{query}", headers=headers or {}, timeout=10)


def test_api_failures_per_ip_at_the_default_boundary(server_factory):
    """Signed requests never use the per-IP budget; 20 failed ones per 60 s per IP do, then the IP
    is refused before its signature is looked at. X-Forwarded-For and X-Real-IP are ignored
    without trusted hops."""
    server = server_factory(ON)
    for i in range(150):  # past Sockudo's 100 per minute
        response = api_get(server) if i % 3 else publish(server)
        assert response.status_code == 200, (i, response.text)
        assert "x-ratelimit-limit" not in response.headers
    for i in range(20):
        forged = {"X-Forwarded-For": f"10.0.{i}.1", "X-Real-IP": f"10.1.{i}.1"}
        # Unsigned (400) and wrongly signed (401) requests both count.
        response = bad_signature(server, forged) if i % 2 else api_get(server, headers=forged, signed=False)
        assert response.status_code == (401 if i % 2 else 400), (i, response.text)
        headers = rate_headers(response)
        assert headers["x-ratelimit-limit"] == "20"
        assert headers["x-ratelimit-remaining"] == str(19 - i)
        assert 1 <= int(headers["x-ratelimit-reset"]) <= 60
        assert ("retry-after" in headers) == (i == 19)  # the last one says when to come back
    assert_too_many(api_get(server), 20)  # locked out: even a signed request, unverified
    assert_too_many(bad_signature(server), 20)
    assert_too_many(publish(server), 20)
    # The Python SDK's /users alias is an API route too; probes are not.
    assert_too_many(api_post(server, "/users/u1/terminate_connections", {}), 20)
    assert httpx.get(f"{server.http_url}/live", timeout=5).status_code == 200


def test_api_window_resets_and_trusted_hops_pick_the_client(server_factory):
    server = server_factory(
        {
            **ON,
            "RATE_LIMITER_API_MAX_REQUESTS": "2",
            "RATE_LIMITER_API_WINDOW_SECONDS": "2",
            "RATE_LIMITER_TRUST_HOPS": "1",
        }
    )

    def via(client: str, forged: str = "6.6.6.6", signed: bool = False) -> httpx.Response:
        # One trusted proxy appends the address it saw; everything left of it is the client's word.
        return api_get(server, headers={"X-Forwarded-For": f"{forged}, {client}"}, signed=signed)

    assert via("10.0.0.1", signed=True).status_code == 200  # not counted
    assert rate_headers(via("10.0.0.1"))["x-ratelimit-remaining"] == "1"
    assert rate_headers(via("10.0.0.1"))["x-ratelimit-remaining"] == "0"
    assert_too_many(via("10.0.0.1"), 2)
    assert_too_many(via("10.0.0.1", signed=True), 2)
    assert_too_many(via("10.0.0.1", forged="7.7.7.7"), 2)  # forging the left part changes nothing
    assert via("10.0.0.2").status_code == 400  # another client behind the proxy has its own budget
    assert via("10.0.0.2", signed=True).status_code == 200
    real_ip = api_get(server, headers={"X-Real-IP": "10.0.0.3"}, signed=False)  # proxy's X-Real-IP
    assert rate_headers(real_ip)["x-ratelimit-remaining"] == "1"
    assert rate_headers(api_get(server, signed=False))["x-ratelimit-remaining"] == "1"  # the TCP peer

    refused = via("10.0.0.1")
    assert_too_many(refused, 2)
    time.sleep(int(refused.headers["retry-after"]) + 0.2)
    assert via("10.0.0.1", signed=True).status_code == 200  # a new window
    again = via("10.0.0.1")
    assert again.status_code == 400, again.text
    assert rate_headers(again)["x-ratelimit-remaining"] == "1"


# -- per-IP limit of WebSocket upgrades --------------------------------------------------------------


def test_upgrade_past_the_bucket_gets_http_429_before_any_frame(server_factory):
    """A bucket of 20 (refilling 20 per 60 s): the 21st upgrade in a row is refused."""
    server = server_factory({**ON, "RATE_LIMITER_WS_MAX_REQUESTS": "20"})

    async def scenario() -> None:
        clients = [await PusherClient.connect(server.ws_url) for _ in range(20)]
        try:
            received = await asyncio.to_thread(raw_upgrade, server)
            headers = assert_upgrade_refused(server, received, 429, limit=20)
            if transport(server) == "tuned":
                assert 1 <= int(headers["x-ratelimit-reset"]) <= 3  # one token back in 3 s
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(server.ws_url, open_timeout=5)
            assert refused.value.response.status_code == upgrade_refused_status(server, 429)
            # The twenty admitted sockets are untouched and keep working.
            for i, client in enumerate(clients):
                await client.subscribe(f"room-{i}")
                await client.expect("pusher_internal:subscription_succeeded", f"room-{i}")
        finally:
            for client in clients:
                await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    # The HTTP API has its own limits.
    assert api_get(server).status_code == 200


def test_upgrade_limit_keys_on_the_forwarded_client_and_refills(server_factory):
    server = server_factory(
        {
            **ON,
            "RATE_LIMITER_WS_MAX_REQUESTS": "2",
            "RATE_LIMITER_WS_WINDOW_SECONDS": "2",  # one upgrade a second back
            "RATE_LIMITER_TRUST_HOPS": "1",
        }
    )
    first = {"X-Forwarded-For": "6.6.6.6, 10.2.0.1"}
    assert_upgraded(raw_upgrade(server, first))
    assert_upgraded(raw_upgrade(server, first))
    assert_upgrade_refused(server, raw_upgrade(server, first), 429, limit=2)
    assert_upgrade_refused(server, raw_upgrade(server, {"X-Forwarded-For": "10.2.0.1"}), 429, limit=2)
    assert_upgraded(raw_upgrade(server, {"X-Forwarded-For": "6.6.6.6, 10.2.0.2"}))  # another client
    time.sleep(1.2)
    assert_upgraded(raw_upgrade(server, first))  # refilled: one token
    assert_upgrade_refused(server, raw_upgrade(server, first), 429, limit=2)


def test_limiter_off_admits_everything(server_factory):
    server = server_factory({"RATE_LIMITER_ENABLED": "false", "RATE_LIMITER_API_MAX_REQUESTS": "1"})
    for _ in range(3):
        response = api_get(server)
        assert response.status_code == 200
        assert "x-ratelimit-limit" not in response.headers
    for _ in range(3):
        assert_upgraded(raw_upgrade(server))


def test_counter_store_down_fails_closed(server_factory):
    server = server_factory({**ON, "RATE_LIMITER_DRIVER": "redis", "REDIS_URL": dead_redis_url()})
    # A signed read counts against the app's default limit; an unsigned one against the IP's budget.
    for response in (api_get(server), publish(server), api_get(server, signed=False)):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        assert response.json() == {
            "error": "Rate limiter backend unavailable.",
            "code": "service_unavailable",
            "status": 503,
        }
    received = raw_upgrade(server)
    assert_upgrade_refused(server, received, 503)
    if transport(server) == "tuned":
        assert received.split(b"\r\n\r\n", 1)[1] == (
            b'{"error":"Service Unavailable","message":"Rate limiter backend unavailable."}'
        )


# -- per-app limits ----------------------------------------------------------------------------------


def assert_app_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limited" and body["status"] == 429 and body["error"], body
    headers = rate_headers(response)
    assert headers["x-ratelimit-limit"] == str(limit)
    assert headers["x-ratelimit-remaining"] == "0"
    assert headers["retry-after"] == "1"


def test_app_backend_events_and_read_requests_per_second(server_factory):
    """Enforced when set on the app, even with the per-IP limiter off."""
    server = server_factory(
        {
            "RATE_LIMITER_ENABLED": "false",
            "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND": "5",
            "SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND": "2",
        }
    )
    # A batch larger than the per-second budget could never pass: 400, not a 429 to retry forever.
    too_big = publish(server, events=6)
    assert too_big.status_code == 400 and too_big.json()["code"] == "limit_exceeded", too_big.text

    assert publish(server, events=4).status_code == 200  # counted per event, not per request
    assert publish(server).status_code == 200
    limited = publish(server)
    assert_app_limited(limited, 5)
    assert_app_limited(publish(server, events=2), 5)
    time.sleep(1.1)
    assert publish(server, events=5).status_code == 200

    # Reads have their own budget; publishes above did not use it.
    assert api_get(server).status_code == 200
    assert api_get(server, f"/apps/{server.app_id}/channels/c").status_code == 200
    assert_app_limited(api_get(server), 2)
    time.sleep(1.1)
    assert api_get(server).status_code == 200


def test_server_defaults_limit_apps_without_their_own(server_factory):
    """``RATE_LIMITER_APP_*_PER_SECOND`` apply to apps without a limit, only with the limiter on."""
    env = {"RATE_LIMITER_APP_EVENTS_PER_SECOND": "3", "RATE_LIMITER_APP_READS_PER_SECOND": "2"}
    server = server_factory({**ON, **env})
    assert publish(server, events=3).status_code == 200
    assert_app_limited(publish(server), 3)
    assert api_get(server).status_code == 200 and api_get(server).status_code == 200
    assert_app_limited(api_get(server), 2)
    off = server_factory({"RATE_LIMITER_ENABLED": "false", **env})
    assert all(publish(off, events=3).status_code == 200 for _ in range(3))


# -- counters shared by a cluster -------------------------------------------------------------------


def test_cluster_nodes_share_the_counters(server_factory):
    need_redis()
    run = uuid.uuid4().hex[:8]
    env = {
        **ON,
        "ADAPTER_DRIVER": "redis",  # RATE_LIMITER_DRIVER unset: redis follows the adapter
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": f"test-rl-{run}:",
        "RATE_LIMITER_PREFIX": f"test-rl-{run}-counters:",
        "RATE_LIMITER_API_MAX_REQUESTS": "6",
        "RATE_LIMITER_WS_MAX_REQUESTS": "4",
        "RATE_LIMITER_TRUST_HOPS": "1",  # each part below is its own client by X-Forwarded-For
        "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND": "4",
    }
    a, b = server_factory(env), server_factory(env)

    api_client = {"X-Forwarded-For": "10.3.0.1"}
    for i in range(6):  # failed requests: the budget is shared
        response = api_get((a, b)[i % 2], headers=api_client, signed=False)
        assert response.status_code == 400, response.text
        assert rate_headers(response)["x-ratelimit-remaining"] == str(5 - i)
    assert_too_many(api_get(b, headers=api_client), 6)  # b counted the sixth: locked out
    # a has seen no failure past the budget yet: a signed request goes through, the next failure
    # finds the shared budget used up and is refused, and a locks the address out too.
    assert api_get(a, headers=api_client).status_code == 200
    assert_too_many(api_get(a, headers=api_client, signed=False), 6)
    assert_too_many(api_get(a, headers=api_client), 6)

    ws_client = {"X-Forwarded-For": "10.3.0.2"}
    for node in (a, b, a, b):
        assert_upgraded(raw_upgrade(node, ws_client))
    assert_upgrade_refused(b, raw_upgrade(b, ws_client), 429, limit=4)
    assert_upgrade_refused(a, raw_upgrade(a, ws_client), 429, limit=4)

    events_client = {"X-Forwarded-For": "10.3.0.3"}
    assert publish(a, events=3, headers=events_client).status_code == 200
    assert publish(b, headers=events_client).status_code == 200
    assert_app_limited(publish(a, headers=events_client), 4)


# -- drivers: one conformance suite ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def limiter(request):
    """A driver and a way to let time pass for it (a fake clock in memory, real time in Redis)."""
    if request.param == "memory":
        clock = FakeClock()

        def advance(seconds: float) -> None:
            clock.now += seconds

        yield MemoryRateLimiter(clock=clock), advance
        return
    need_redis()
    driver = RedisRateLimiter(REDIS_URL, prefix=f"test-rl-{uuid.uuid4().hex[:8]}:")
    yield driver, time.sleep
    driver.close()


def test_driver_fixed_window_boundary_and_reset(limiter):
    driver, advance = limiter
    for i in range(3):
        decision = driver.hit("api:1.2.3.4", 3, 1)
        assert decision.allowed and decision.remaining == 2 - i and decision.limit == 3
        assert decision.reset_seconds == 1
    refused = driver.hit("api:1.2.3.4", 3, 1)
    assert not refused.allowed and refused.remaining == 0
    assert refused.headers()["Retry-After"] == "1"
    assert driver.hit("api:5.6.7.8", 3, 1).allowed  # keys are independent
    advance(1.1)
    renewed = driver.hit("api:1.2.3.4", 3, 1)
    assert renewed.allowed and renewed.remaining == 2


def test_driver_counts_cost_and_answers_on_the_loop(limiter):
    driver, _ = limiter

    async def hits():
        first = await driver.ahit("app_backend_events:1", 5, 60, cost=4)
        second = await driver.ahit("app_backend_events:1", 5, 60, cost=2)
        return first, second

    first, second = asyncio.run(hits())
    assert first.allowed and first.remaining == 1 and 59 <= first.reset_seconds <= 60
    assert not second.allowed and second.remaining == 0
    assert not driver.hit("app_backend_events:1", 5, 60).allowed  # sync and async share counters


def test_driver_token_bucket_burst_refill_and_refusals_take_nothing(limiter):
    driver, advance = limiter
    for i in range(3):
        decision = driver.take("websocket_connect:1.2.3.4", 3, 2.0)
        assert decision.allowed and decision.remaining == 2 - i and decision.limit == 3
    for _ in range(5):  # refused takes take nothing, so they do not push the refill back
        refused = driver.take("websocket_connect:1.2.3.4", 3, 2.0)
        assert not refused.allowed and refused.remaining == 0
        assert refused.headers()["Retry-After"] == "1"  # one token back within 0.5 s
    assert driver.take("websocket_connect:5.6.7.8", 3, 2.0).allowed  # keys are independent
    advance(0.6)  # 1.2 tokens back
    assert driver.take("websocket_connect:1.2.3.4", 3, 2.0).allowed
    assert not driver.take("websocket_connect:1.2.3.4", 3, 2.0).allowed
    advance(2.0)  # refilled to the capacity, not beyond
    remaining = [driver.take("websocket_connect:1.2.3.4", 3, 2.0).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    assert not driver.take("websocket_connect:1.2.3.4", 3, 2.0).allowed


def test_driver_token_bucket_is_atomic_and_shared_by_sync_and_async(limiter):
    driver, _ = limiter

    async def takes(count: int) -> list[bool]:
        return [
            d.allowed for d in await asyncio.gather(*(driver.atake("b:1", 50, 0.01) for _ in range(count)))
        ]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda _: driver.take("b:1", 50, 0.01).allowed, range(40)))
    assert sum(threaded) == 40
    assert sum(asyncio.run(takes(30))) == 10  # exactly the 50 tokens, whatever the interleaving


def test_driver_without_buckets_falls_back_to_a_window_of_the_same_rate():
    from realtime.ratelimit.base import Decision, RateLimiter

    class WindowsOnly(RateLimiter):
        def __init__(self):
            self.calls = []

        def hit(self, key, limit, window, cost=1):
            self.calls.append((key, limit, window, cost))
            return Decision.of(1, limit, window)

    driver = WindowsOnly()
    assert driver.take("k", 1000, 1000 / 60).allowed
    assert driver.calls == [("k", 1000, pytest.approx(60.0), 1)]


def test_refusals_are_counted_and_logged_at_most_once_per_key_per_interval(caplog, monkeypatch):
    from realtime.ratelimit import refusals

    refusals.reset_log()
    before = refusals.snapshot().get(("1001", "upgrade_ip"), 0)
    with caplog.at_level("WARNING", logger="realtime.ratelimit"):
        for _ in range(500):
            refusals.refused("upgrade_ip", "1001", "198.51.100.7")
        refusals.refused("auth_failures", None, "198.51.100.7")
    assert refusals.snapshot()[("1001", "upgrade_ip")] == before + 500
    lines = [r.getMessage() for r in caplog.records if r.name == "realtime.ratelimit"]
    assert lines == [
        "rate limit refusal: limit=upgrade_ip app=1001 client=198.51.100.7 "
        "reason=too many WebSocket upgrades from this address",
        "rate limit refusal: limit=auth_failures app=unknown client=198.51.100.7 "
        "reason=too many API requests failing the signature check from this address",
    ]
    # After the interval the next line carries the count of those not logged.
    monkeypatch.setattr(refusals, "LOG_INTERVAL", 0.0)
    caplog.clear()
    with caplog.at_level("WARNING", logger="realtime.ratelimit"):
        refusals.refused("upgrade_ip", "1001", "198.51.100.7")
    assert "499 more refused since the last line" in caplog.records[-1].getMessage()
    # A flood from many addresses: at most MAX_LINES_PER_SECOND lines a second in all.
    monkeypatch.setattr(refusals, "LOG_INTERVAL", 60.0)
    caplog.clear()
    with caplog.at_level("WARNING", logger="realtime.ratelimit"):
        for i in range(1000):
            refusals.refused("upgrade_ip", "1001", f"203.0.113.{i}")
    assert len(caplog.records) <= 2 * refusals.MAX_LINES_PER_SECOND  # a second boundary may fall inside


def test_refusals_reach_the_metrics():
    from prometheus_client import REGISTRY

    from realtime.node import metrics
    from realtime.ratelimit import refusals

    def value() -> float:
        return (
            REGISTRY.get_sample_value(
                "sockudo_rate_limit_refusals_total", {"app_id": "7007", "limit": "app_publish"}
            )
            or 0.0
        )

    metrics.flush(None)
    before = value()
    for _ in range(3):
        refusals.refused("app_publish", "7007", "192.0.2.1")
    metrics.flush(None)
    metrics.flush(None)  # counted once
    assert value() == before + 3


def test_memory_driver_is_bounded():
    clock = FakeClock()
    driver = MemoryRateLimiter(max_keys=100, sweep_interval=5, clock=clock)
    for i in range(250):
        driver.hit(f"api:{i}", 10, 60)
    assert len(driver) == 100  # the oldest windows made room
    assert driver.hit("api:249", 10, 60).remaining == 8  # the newest kept their count
    clock.now += 61
    driver.hit("api:new", 10, 60)
    assert len(driver) == 1  # expired windows are swept


def test_redis_driver_down_raises_unavailable():
    driver = RedisRateLimiter(dead_redis_url(), timeout=0.5)
    with pytest.raises(RateLimiterUnavailable):
        driver.hit("api:1", 1, 1)
    with pytest.raises(RateLimiterUnavailable):
        asyncio.run(driver.ahit("api:1", 1, 1))


@pytest.mark.parametrize(
    ("peer", "forwarded", "real_ip", "hops", "expected"),
    [
        ("127.0.0.1", "1.1.1.1", "2.2.2.2", 0, "127.0.0.1"),  # no trusted proxy: headers ignored
        ("127.0.0.1", "6.6.6.6, 1.1.1.1", None, 1, "1.1.1.1"),
        ("127.0.0.1", "6.6.6.6, 1.1.1.1, 10.0.0.9", None, 2, "1.1.1.1"),
        ("127.0.0.1", "1.1.1.1", None, 2, "1.1.1.1"),  # fewer entries than hops: the leftmost
        ("127.0.0.1", None, "2.2.2.2", 1, "2.2.2.2"),
        ("127.0.0.1", " , ", None, 1, "127.0.0.1"),
        (None, None, None, 0, "unknown"),
    ],
)
def test_client_ip(peer, forwarded, real_ip, hops, expected):
    assert client_ip(peer, forwarded, real_ip, hops) == expected


# -- the shared upgrade decision, as the WebSocket entry applies it ---------------------------------


class UnavailableLimiter(MemoryRateLimiter):
    def take_nowait(self, key, capacity, per_second, cost=1):
        raise RateLimiterUnavailable


@pytest.fixture
def upgrade_limit(monkeypatch):
    """The upgrade limit at 2 per window behind one trusted proxy, on a fresh memory limiter."""
    from realtime.ratelimit import Bucket, set_limiter, upgrade

    monkeypatch.setattr(upgrade, "websocket_limit", lambda: Bucket("websocket_connect", 2, 2 / 60, 1))
    monkeypatch.setattr(upgrade, "_applied_by_listener", False)
    set_limiter(MemoryRateLimiter())
    yield set_limiter
    set_limiter(None)


def ws_scope(forwarded_for: str) -> dict:
    return {
        "type": "websocket",
        "client": ["127.0.0.1", 5000],
        "headers": [(b"x-forwarded-for", forwarded_for.encode())],
    }


def test_websocket_entry_refuses_over_the_limit_and_keys_on_the_forwarded_client(upgrade_limit):
    from realtime.websocket import admission

    first, other = ws_scope("6.6.6.6, 10.4.0.1"), ws_scope("10.4.0.2")
    assert [admission.refuse(first) for _ in range(3)] == [False, False, True]
    assert admission.refuse(ws_scope("10.4.0.1")) is True  # the same client by its trusted hop
    assert admission.refuse(other) is False


def test_websocket_entry_counts_nothing_when_the_listener_applies_the_limit(upgrade_limit, monkeypatch):
    from realtime.ratelimit import upgrade
    from realtime.websocket import admission

    upgrade.applied_by_listener()
    assert [admission.refuse(ws_scope("10.4.0.3")) for _ in range(5)] == [False] * 5
    monkeypatch.setattr(upgrade, "_applied_by_listener", False)
    assert admission.refuse(ws_scope("10.4.0.3")) is False  # the five above were not counted


def test_websocket_entry_fails_closed_and_refuses_while_draining(upgrade_limit, monkeypatch):
    from realtime.node import drain
    from realtime.websocket import admission

    upgrade_limit(UnavailableLimiter())
    assert admission.refuse(ws_scope("10.4.0.4")) is True
    upgrade_limit(MemoryRateLimiter())
    monkeypatch.setattr(drain, "draining", True)
    assert admission.refuse(ws_scope("10.4.0.5")) is True
