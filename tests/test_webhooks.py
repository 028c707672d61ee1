"""Webhooks end to end: a live server POSTs to a receiver running in this test process.

Covers every event kind the server emits today, channel filters, Pusher signatures (checked with the
``pusher`` SDK), retries after 5xx, permanent failures, batching, the leave debounce, and one
delivery through a real Celery worker over Redis (with ``CI=true`` a missing Redis fails the test).
Timings are shortened by settings (``WEBHOOK_LEAVE_DELAY_MS`` 700 instead of 3000, backoff 100 ms).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pusher
import pytest

from realtime.conf import SETTINGS
from realtime.taskrunner import Retry, task
from realtime.taskrunner.inprocess import InProcessRunner
from realtime.testing import LiveServer, free_port
from realtime.webhooks.config import ChannelFilter, namespace_of, parse_webhook
from realtime.webhooks.delivery import build_request, encode_body
from realtime.webhooks.retry import RetryPolicy, classify

from ._live import AppCreds, connect, run, subscribed, uid

ROOT = Path(__file__).resolve().parent.parent
LEAVE_DELAY = 0.7
ALL_KINDS = [
    "channel_occupied",
    "channel_vacated",
    "subscription_count",
    "member_added",
    "member_removed",
    "member_updated",
    "client_event",
    "cache_miss",
]


# -- a receiver: a small threaded HTTP server that records every request ----------------------------
@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.failures: dict[str, tuple[int, int]] = {}  # path -> (remaining, status)
        self.statuses: dict[str, int] = {}  # path -> status always answered
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.hits.append(Hit(self.path, dict(self.headers.items()), body, time.monotonic()))
                    status = receiver.statuses.get(self.path, 200)
                    remaining, fail_status = receiver.failures.get(self.path, (0, 0))
                    if remaining:
                        receiver.failures[self.path] = (remaining - 1, fail_status)
                        status = fail_status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def fail(self, path: str, times: int, status: int = 500) -> None:
        with self.lock:
            self.failures[path] = (times, status)

    def at(self, path: str, channels: set[str] | None = None) -> list[Hit]:
        """Requests to ``path`` carrying at least one event on one of ``channels``."""
        with self.lock:
            hits = [h for h in self.hits if h.path == path]
        if channels is None:
            return hits
        return [h for h in hits if any(e.get("channel") in channels for e in h.payload["events"])]

    def events(self, path: str, channels: set[str]) -> list[dict]:
        return [
            e for h in self.at(path, channels) for e in h.payload["events"] if e.get("channel") in channels
        ]

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def wait_until(check: Callable[[], Any], timeout: float = 8.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout}s")


def names(events: list[dict]) -> list[str]:
    return sorted(e["name"] for e in events)


def hook(url: str, types: list[str], **extra: Any) -> dict:
    return {"url": url, "event_types": types, **extra}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def hooked(receiver: Receiver) -> Iterator[LiveServer]:
    """One server whose default app has a webhook per scenario (told apart by path)."""
    u = receiver.url
    occupied = ["channel_occupied"]
    webhooks = [
        hook(f"{u}/all", ALL_KINDS, headers={"X-Env": "test", "X-Pusher-Key": "spoofed"}),
        hook(
            f"{u}/presence",
            ["member_added", "member_removed", "channel_occupied"],
            filter={"channel_prefix": "presence-"},
        ),
        hook(f"{u}/suffix", occupied, filter={"channel_suffix": "-log"}),
        hook(f"{u}/pattern", occupied, filter={"channel_pattern": r"^chat-\d+-"}),
        hook(f"{u}/ns", occupied, filter={"channel_namespace": "orders"}),
        hook(f"{u}/nss", occupied, filter={"channel_namespaces": ["chat", "news"]}),
        hook(f"{u}/broken", occupied, filter={"channel_pattern": "("}),
        hook(f"{u}/and", occupied, filter={"channel_prefix": "private-", "channel_namespace": "orders"}),
        hook(f"{u}/flaky", ["client_event"], filter={"channel_prefix": "private-flaky-"}),
        hook(f"{u}/gone", ["client_event"], filter={"channel_prefix": "private-gone-"}),
    ]
    env = {
        "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        "SOCKUDO_DEFAULT_APP_WEBHOOKS": json.dumps(webhooks),
        "SOCKUDO_DEFAULT_APP_CHANNEL_NAMESPACES": json.dumps(
            [{"name": n} for n in ("orders", "chat", "news")]
        ),
        "WEBHOOK_LEAVE_DELAY_MS": str(int(LEAVE_DELAY * 1000)),
        "WEBHOOK_RETRY_INITIAL_BACKOFF_MS": "100",
        "WEBHOOK_RETRY_MAX_BACKOFF_MS": "400",
    }
    with LiveServer(env=env) as live:
        yield live


def creds(live: LiveServer) -> AppCreds:
    return AppCreds(live.app_id, live.key, live.secret)


def assert_pusher_request(hit: Hit, live: LiveServer) -> dict:
    """What a Pusher receiver checks: content type, key, HMAC (via the pusher SDK), compact body."""
    assert hit.headers["Content-Type"] == "application/json", hit.headers
    assert hit.headers["X-Pusher-Key"] == live.key, hit.headers
    sdk = pusher.Pusher(app_id=live.app_id, key=live.key, secret=live.secret)
    data = sdk.validate_webhook(
        key=hit.headers["X-Pusher-Key"], signature=hit.headers["X-Pusher-Signature"], body=hit.body.decode()
    )
    assert data is not None, f"pusher SDK rejected {hit}"
    assert list(data) == ["time_ms", "events"], data
    assert hit.body == json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    assert isinstance(data["time_ms"], int) and abs(data["time_ms"] - time.time() * 1000) < 60_000
    assert 1 <= len(data["events"]) <= 100
    return data


# -- unit: the pure parts -------------------------------------------------------------------------
def test_signature_of_the_spec_example():
    body = encode_body(1700000000000, [{"name": "channel_occupied", "channel": "presence-lobby"}])
    assert (
        body == b'{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"presence-lobby"}]}'
    )

    class App:
        key, secret = "278d425bdf160c739803", "7ad3773142a6692b25b8"

    _, headers = build_request(
        App(),
        parse_webhook(0, hook("http://x", ["channel_occupied"])),
        1700000000000,
        json.loads(body)["events"],
    )
    assert headers["X-Pusher-Signature"] == "d4e8b42ee30653a0d1325b0ee0e83d6f6016aa1005642a22b98cecea3d58afc2"


def test_custom_headers_come_after_and_never_replace_the_standard_ones():
    class App:
        key, secret = "k", "s"

    webhook = parse_webhook(
        0, hook("http://x", ["a"], headers={"X-Env": "prod", "content-type": "text/plain"})
    )
    _, headers = build_request(App(), webhook, 1, [{"name": "a"}])
    assert list(headers) == ["Content-Type", "X-Pusher-Key", "X-Pusher-Signature", "X-Env"]
    assert headers["Content-Type"] == "application/json"


def test_retry_schedule_and_classification():
    assert RetryPolicy().schedule_ms() == [0, 1000, 3000, 7000, 15000, 31000, 63000, 123000, 183000, 243000]
    assert RetryPolicy(max_attempts=3).schedule_ms() == [0, 1000, 3000]
    assert RetryPolicy(enabled=False).schedule_ms() == [0]
    assert [classify(s) for s in (200, 204, 299)] == ["success"] * 3
    assert [classify(s) for s in (408, 409, 425, 429, 500, 502, 503, 599)] == ["retry"] * 8
    assert [classify(s) for s in (301, 400, 401, 403, 404, 410, 422)] == ["failed"] * 7


def test_per_webhook_retry_fields_override_the_server_policy():
    server = {s.env: s.default for s in SETTINGS}
    policy = RetryPolicy.from_settings(server, {"max_attempts": 8, "max_elapsed_time_ms": 120000})
    assert policy == RetryPolicy(max_attempts=8, max_elapsed_ms=120000)
    assert server["WEBHOOK_LEAVE_DELAY_MS"] == 3000  # the 3 s debounce is the default
    assert server["WEBHOOK_BATCHING_DURATION"] == 50 and server["WEBHOOK_BATCHING_SIZE"] == 100


def test_channel_filters_and_namespaces():
    assert namespace_of("presence-orders:123") == "orders"
    assert namespace_of("chat:room-1") == "chat"
    assert namespace_of("private-encrypted-cache-a:b") == "a"
    assert namespace_of("orders-1") is None
    f = ChannelFilter.parse(
        {"channel_prefix": "private-", "channel_suffix": "-x", "channel_namespaces": ["a"]}
    )
    assert f.matches("private-a:1-x") and not f.matches("private-b:1-x") and not f.matches("private-a:1")
    assert not ChannelFilter.parse({"channel_namespace": "orders"}).matches("orders-1")
    assert ChannelFilter.parse({"channel_pattern": r"\d"}).matches("a1b")  # search, not match
    assert not ChannelFilter.parse({"channel_pattern": "("}).matches("anything")
    assert ChannelFilter.parse({}) is None


def test_in_process_runner_retries_with_countdowns():
    calls: list[tuple[float, int]] = []
    done = threading.Event()

    @task("tests.flaky")
    def flaky(attempt: int = 0) -> None:
        calls.append((time.monotonic(), attempt))
        if attempt < 2:
            raise Retry(0.2, attempt=attempt + 1)
        done.set()

    runner = InProcessRunner(workers=2)
    assert runner.submit(flaky, {})
    assert done.wait(5)
    assert [a for _, a in calls] == [0, 1, 2]
    assert all(b[0] - a[0] >= 0.19 for a, b in zip(calls, calls[1:], strict=False))
    assert runner.drain(1)

    full = InProcessRunner(workers=1, max_pending=1)
    assert full.submit(flaky, {"attempt": 0}, countdown=30)  # parked on the timer heap
    assert not full.submit(flaky, {})  # over the bound: refused, not queued


# -- live: every event kind ------------------------------------------------------------------------
def test_every_event_kind_arrives_once_signed_and_valid(hooked: LiveServer, receiver: Receiver):
    app = creds(hooked)
    s = uid()
    public, cache, presence, private = f"pub-{s}", f"cache-{s}", f"presence-room-{s}", f"private-chat-{s}"
    ours = {public, cache, presence, private}

    async def scenario() -> dict[str, float]:
        a = await connect(hooked)
        b = await connect(hooked)
        await subscribed(a, public)
        await subscribed(a, cache)
        await subscribed(a, private, app)
        await subscribed(b, private, app)
        await subscribed(b, presence, app, {"user_id": "u1", "user_info": {"name": "Ann"}})
        await a.send("client-typing", {"typing": True}, private)
        await b.send("client-typing", {"typing": True}, presence)
        await b.expect("client-typing", private)  # relayed before the sockets go
        await a.send("pusher:unsubscribe", {"channel": public})
        left = {"public": time.monotonic()}
        await b.close()  # presence-room and private lose b
        left["b"] = time.monotonic()
        await a.close()
        return left

    left = run(scenario())
    expected = [
        ("channel_occupied", public),
        ("subscription_count", public),
        ("subscription_count", public),
        ("channel_vacated", public),
        ("channel_occupied", cache),
        ("subscription_count", cache),
        ("cache_miss", cache),
        ("subscription_count", cache),
        ("channel_vacated", cache),
        ("channel_occupied", private),
        ("subscription_count", private),
        ("subscription_count", private),
        ("client_event", private),
        ("subscription_count", private),
        ("subscription_count", private),
        ("channel_vacated", private),
        ("channel_occupied", presence),
        ("member_added", presence),
        ("client_event", presence),
        ("member_removed", presence),
        ("channel_vacated", presence),
    ]
    want = sorted(expected)
    wait_until(lambda: len(receiver.events("/all", ours)) >= len(want), what="every event")
    time.sleep(LEAVE_DELAY + 0.5)  # anything extra (a duplicate) would have arrived by now
    got = receiver.events("/all", ours)
    assert sorted((e["name"], e["channel"]) for e in got) == want

    hits = receiver.at("/all", ours)
    for h in hits:
        assert_pusher_request(h, hooked)
        assert h.headers["X-Env"] == "test"  # a custom header, after the standard ones
    assert len({h.headers["X-Pusher-Signature"] for h in hits}) == len(hits)  # no body sent twice

    by_name = {(e["name"], e["channel"]): e for e in got}
    assert by_name[("cache_miss", cache)] == {"name": "cache_miss", "channel": cache, "data": "{}"}
    assert by_name[("member_added", presence)] == {
        "name": "member_added",
        "channel": presence,
        "user_id": "u1",
    }
    assert by_name[("member_removed", presence)] == {
        "name": "member_removed",
        "channel": presence,
        "user_id": "u1",
    }
    on_private = by_name[("client_event", private)]
    assert on_private == {
        "name": "client_event",
        "channel": private,
        "event": "client-typing",
        "data": '{"typing":true}',
        "socket_id": on_private["socket_id"],
    }
    assert by_name[("client_event", presence)]["user_id"] == "u1"
    counts = [
        e["subscription_count"] for e in got if e["name"] == "subscription_count" and e["channel"] == private
    ]
    assert sorted(counts) == [0, 1, 1, 2]

    # Leave events wait the debounce delay; the others do not.
    def arrival(name: str, channel: str) -> float:
        return next(
            h.at
            for h in hits
            if any(e["name"] == name and e["channel"] == channel for e in h.payload["events"])
        )

    assert arrival("channel_vacated", public) - left["public"] >= LEAVE_DELAY - 0.05
    assert arrival("member_removed", presence) - left["b"] >= LEAVE_DELAY - 0.05
    assert "Traceback" not in hooked.log(), hooked.log()


def test_leave_events_are_dropped_when_the_channel_or_user_comes_back(hooked: LiveServer, receiver: Receiver):
    app = creds(hooked)
    s = uid()
    public, presence = f"flap-{s}", f"presence-flap-{s}"
    ours = {public, presence}

    def leaves() -> list[dict]:
        return [
            e for e in receiver.events("/all", ours) if e["name"] in ("channel_vacated", "member_removed")
        ]

    async def scenario() -> list[dict]:
        a = await connect(hooked)
        await subscribed(a, public)
        await subscribed(a, presence, app, {"user_id": "u9"})
        await a.send("pusher:unsubscribe", {"channel": public})
        await a.send("pusher:unsubscribe", {"channel": presence})
        await subscribed(a, public)  # back within the delay
        await subscribed(a, presence, app, {"user_id": "u9"})
        await asyncio.sleep(LEAVE_DELAY + 0.6)
        while_back = leaves()
        await a.close()
        return while_back

    assert run(scenario()) == []  # the re-check found the channel occupied and the user present
    wait_until(lambda: len(leaves()) == 3, what="leave events after the close")
    time.sleep(0.5)
    assert names(leaves()) == ["channel_vacated", "channel_vacated", "member_removed"]
    added = [e for e in receiver.events("/all", {presence}) if e["name"] == "member_added"]
    assert len(added) == 2  # member_added is immediate, as upstream


# -- live: filters -------------------------------------------------------------------------------
def test_channel_filters_pick_the_channels_of_each_webhook(hooked: LiveServer, receiver: Receiver):
    app = creds(hooked)
    s = uid()
    channels = {
        "plain": f"plain-{s}",
        "log": f"audit-{s}-log",
        "chat": f"chat-12-{s}",
        "orders": f"orders:{s}",
        "private_orders": f"private-orders:{s}",
        "chat_ns": f"chat:{s}",
        "news_ns": f"presence-news:{s}",
        "presence": f"presence-lobby-{s}",
    }
    everything = set(channels.values())

    async def scenario() -> None:
        a = await connect(hooked)
        for name in channels.values():
            if name.startswith("presence-"):
                await subscribed(a, name, app, {"user_id": "f1"})
            else:
                await subscribed(a, name, app)
        await a.close()

    run(scenario())
    wait_until(
        lambda: (
            len([e for e in receiver.events("/all", everything) if e["name"] == "channel_vacated"])
            == len(everything)
        ),
        what="all vacated",
    )
    time.sleep(0.3)

    def occupied(path: str) -> set[str]:
        return {e["channel"] for e in receiver.events(path, everything) if e["name"] == "channel_occupied"}

    assert occupied("/all") == everything
    assert occupied("/suffix") == {channels["log"]}
    assert occupied("/pattern") == {channels["chat"]}
    assert occupied("/ns") == {channels["orders"], channels["private_orders"]}
    assert occupied("/nss") == {channels["chat_ns"], channels["news_ns"]}
    assert occupied("/and") == {channels["private_orders"]}
    assert occupied("/broken") == set()
    presence_events = receiver.events("/presence", everything)
    assert {e["channel"] for e in presence_events} == {channels["news_ns"], channels["presence"]}
    assert names(presence_events) == sorted(["channel_occupied", "member_added", "member_removed"] * 2)
    # A webhook only ever receives its own event types.
    assert {e["name"] for e in receiver.events("/suffix", everything)} == {"channel_occupied"}


# -- live: failures and retries ------------------------------------------------------------------
def test_a_failing_receiver_gets_the_same_batch_later(hooked: LiveServer, receiver: Receiver):
    app = creds(hooked)
    channel = f"private-flaky-{uid()}"
    receiver.fail("/flaky", 2, 500)

    async def scenario() -> None:
        a = await connect(hooked)
        await subscribed(a, channel, app)
        await a.send("client-note", "hello", channel)
        await asyncio.sleep(0.1)
        await a.close()

    run(scenario())
    hits = wait_until(
        lambda: len(receiver.at("/flaky", {channel})) >= 3 and receiver.at("/flaky", {channel}),
        what="3 attempts",
    )
    time.sleep(1.0)  # no 4th attempt after the success
    hits = receiver.at("/flaky", {channel})
    assert len(hits) == 3
    assert len({h.body for h in hits}) == 1  # identical body (same time_ms) ...
    assert len({h.headers["X-Pusher-Signature"] for h in hits}) == 1  # ... and signature
    assert_pusher_request(hits[-1], hooked)
    assert hits[0].payload["events"] == [
        {
            "name": "client_event",
            "channel": channel,
            "event": "client-note",
            "data": "hello",
            "socket_id": hits[0].payload["events"][0]["socket_id"],
        }
    ]
    gaps = [b.at - a.at for a, b in zip(hits, hits[1:], strict=False)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps  # 100 ms, then 200 ms backoff


def test_a_permanent_failure_is_not_retried(hooked: LiveServer, receiver: Receiver):
    app = creds(hooked)
    channel = f"private-gone-{uid()}"
    receiver.statuses["/gone"] = 410

    async def scenario() -> None:
        a = await connect(hooked)
        await subscribed(a, channel, app)
        await a.send("client-note", "x", channel)
        await asyncio.sleep(0.1)
        await a.close()

    run(scenario())
    wait_until(lambda: receiver.at("/gone", {channel}), what="one attempt")
    time.sleep(1.0)
    assert len(receiver.at("/gone", {channel})) == 1
    assert "webhook delivery failed" in hooked.log()


# -- live: batching ------------------------------------------------------------------------------
def burst_of_subscriptions(live: LiveServer, count: int) -> set[str]:
    s = uid()
    channels = [f"burst-{s}-{i}" for i in range(count)]

    async def scenario() -> None:
        a = await connect(live)
        for name in channels:
            await a.subscribe(name)
        for name in channels:
            await a.expect("pusher_internal:subscription_succeeded", name)
        await a.close()

    run(scenario())
    return set(channels)


def test_batching_merges_events_into_requests_of_at_most_size(receiver: Receiver, server_factory):
    env = {
        "SOCKUDO_DEFAULT_APP_WEBHOOKS": json.dumps([hook(f"{receiver.url}/batch", ["channel_occupied"])]),
        "WEBHOOK_BATCHING_SIZE": "10",
        "WEBHOOK_BATCHING_DURATION": "200",
    }
    live = server_factory(env)
    channels = burst_of_subscriptions(live, 35)
    wait_until(lambda: len(receiver.events("/batch", channels)) == 35, what="35 events")
    time.sleep(0.3)
    hits = receiver.at("/batch", channels)
    sizes = [len(h.payload["events"]) for h in hits]
    assert sum(sizes) == 35 and max(sizes) <= 10, sizes
    assert len(hits) < 35 and max(sizes) > 1, sizes  # merged
    assert {e["channel"] for e in receiver.events("/batch", channels)} == channels  # each once
    for h in hits:
        assert_pusher_request(h, live)


def test_without_batching_each_request_carries_one_event(receiver: Receiver, server_factory):
    env = {
        "SOCKUDO_DEFAULT_APP_WEBHOOKS": json.dumps([hook(f"{receiver.url}/single", ["channel_occupied"])]),
        "WEBHOOK_BATCHING_ENABLED": "false",
    }
    live = server_factory(env)
    channels = burst_of_subscriptions(live, 8)
    wait_until(lambda: len(receiver.events("/single", channels)) == 8, what="8 events")
    time.sleep(0.3)
    assert [len(h.payload["events"]) for h in receiver.at("/single", channels)] == [1] * 8


def test_an_app_without_webhooks_sends_nothing(receiver: Receiver, server):
    before = len(receiver.hits)
    burst_of_subscriptions(server, 3)
    time.sleep(0.3)
    assert len(receiver.hits) == before


# -- a real Celery worker over Redis ---------------------------------------------------------------
CELERY_REDIS = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture
def celery_broker() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
    except OSError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Redis is required on 127.0.0.1:6379 in CI")
        pytest.skip("no Redis on 127.0.0.1:6379")
    return CELERY_REDIS


def test_delivery_through_a_real_celery_worker(receiver: Receiver, celery_broker: str):
    queue = f"webhooks-test-{uuid.uuid4().hex[:8]}"  # nobody else's worker takes our tasks
    env = {
        "CELERY_BROKER_URL": celery_broker,
        "WEBHOOK_QUEUE": queue,
        "SOCKUDO_DEFAULT_APP_WEBHOOKS": json.dumps(
            [hook(f"{receiver.url}/celery", ["channel_occupied", "client_event"])]
        ),
        "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        "WEBHOOK_RETRY_INITIAL_BACKOFF_MS": "200",
    }
    receiver.fail("/celery", 1, 503)  # the first attempt fails: the retry is a Celery retry
    with LiveServer(env=env) as live:
        worker_log = Path(live.tmp.name) / "worker.log"
        with open(worker_log, "w") as log:
            worker = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "sockudo_project",
                    "worker",
                    "-Q",
                    queue,
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "INFO",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "--hostname",
                    f"{queue}@%h",
                ],
                cwd=ROOT,
                env=live.env,  # the server's environment: same apps, same broker, same queue
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: "ready" in worker_log.read_text(), timeout=30, what="worker ready")
            channel = f"celery-{uid()}"

            async def scenario() -> None:
                a = await connect(live)
                await subscribed(a, channel)
                await a.close()

            run(scenario())
            hits = wait_until(
                lambda: receiver.at("/celery", {channel}), timeout=20, what="delivery via Celery"
            )
            wait_until(
                lambda: len(receiver.at("/celery", {channel})) >= 2, timeout=20, what="retry via Celery"
            )
            time.sleep(0.5)
            hits = receiver.at("/celery", {channel})
            assert len(hits) == 2 and hits[0].body == hits[1].body
            data = assert_pusher_request(hits[-1], live)
            assert data["events"] == [{"name": "channel_occupied", "channel": channel}]
            text = worker_log.read_text()
            assert "sockudo.webhooks.deliver" in text and "retry" in text.lower(), text[-3000:]
            assert "succeeded" in text, text[-3000:]
        finally:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)


def test_an_unreachable_broker_degrades_readiness(server_factory):
    live = server_factory({"CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"})
    response = httpx.get(f"{live.http_url}/up", timeout=10)
    assert (response.status_code, response.text) == (200, "DEGRADED")


def test_a_graceful_shutdown_sends_pending_leave_events(receiver: Receiver, server_factory):
    """SIGTERM closes every socket; the 3 s leave delay is cut short so channel_vacated is not lost."""
    env = {"SOCKUDO_DEFAULT_APP_WEBHOOKS": json.dumps([hook(f"{receiver.url}/bye", ["channel_vacated"])])}
    live = server_factory(env)
    channel = f"bye-{uid()}"

    async def scenario() -> None:
        a = await connect(live)
        await subscribed(a, channel)
        started = time.monotonic()
        await asyncio.to_thread(live.stop)
        assert time.monotonic() - started < 3  # did not wait out the default 3 s delay

    run(scenario())
    assert [e["name"] for e in receiver.events("/bye", {channel})] == ["channel_vacated"]
