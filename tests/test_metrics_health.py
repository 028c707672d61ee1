"""Metrics, health probes, graceful shutdown and several worker processes on one port, against real
server processes (operations.md §3-4, http-api.md §12).

The Redis tests need Redis on 127.0.0.1:6379 (``.ci/run`` starts it): with ``CI=true`` a missing
Redis fails them, elsewhere it skips them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from realtime.testing import LiveServer

from ._live import (
    close_all,
    close_reason,
    connect,
    eventually,
    publish,
    read_until_closed,
    run,
    subscribed,
    upgrade_refused_status,
)

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FAST_HEALTH = {
    "CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS": "300",
    "CLUSTER_HEALTH_NODE_TIMEOUT_MS": "2000",
    "CLUSTER_HEALTH_CLEANUP_INTERVAL_MS": "300",
}


@pytest.fixture
def redis_url() -> str:
    host, port = "127.0.0.1", 6379
    try:
        with socket.create_connection((host, port), timeout=1):
            pass
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required on {host}:{port} in CI")
        pytest.skip(f"no Redis on {host}:{port}")
    return REDIS_URL


# -- helpers ---------------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(server: LiveServer) -> dict:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{server.http_url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4"), response.headers
    return parse_metrics(response.text)


def get(server: LiveServer, path: str) -> httpx.Response:
    # A fresh connection per call: with several workers each call may land on another one.
    return httpx.get(f"{server.http_url}{path}", timeout=5, headers={"Connection": "close"})


class StuckSocket:
    """A WebSocket client that completes the handshake and then never reads again, so the server's
    close handshake with it cannot finish (the server gives up after 1 - 2 s)."""

    def __init__(self, server: LiveServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /app/{server.key}?protocol=7 HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head

    def close(self) -> None:
        self.sock.close()


# -- /metrics --------------------------------------------------------------------------------------
def test_metrics_count_connections_frames_broadcasts_and_errors(server_factory):
    srv = server_factory()
    app = {"app_id": srv.app_id}

    async def body():
        before = await scrape(srv)
        a, b = await connect(srv), await connect(srv)
        sent_texts = [
            json.dumps({"event": "pusher:subscribe", "data": {"channel": "room", "auth": ""}}),
            json.dumps({"event": "pusher:subscribe", "data": {"channel": "room"}}),
            "not json",
        ]
        await a.ws.send(sent_texts[0])
        await a.expect("pusher_internal:subscription_succeeded", "room")
        await b.ws.send(sent_texts[1])
        await b.expect("pusher_internal:subscription_succeeded", "room")
        await publish(srv, "room", "hello", {"n": 1})
        for client in (a, b):
            await client.expect("hello", "room")
        await a.ws.send(sent_texts[2])
        error = await a.expect("pusher:error")
        assert error["data"]["code"] == 4000, error

        after = await scrape(srv)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert value(after, "sockudo_connected", **app) == 2
        assert delta("sockudo_new_connections_total", **app) == 2
        assert delta("sockudo_new_disconnections_total", **app) == 0
        assert delta("sockudo_ws_messages_received_total", **app) == 3
        assert delta("sockudo_socket_received_bytes", **app) == sum(len(t) for t in sent_texts)
        # connection_established x2, subscription_succeeded x2, the event x2, the error frame
        assert delta("sockudo_ws_messages_sent_total", **app) == 7
        assert delta("sockudo_socket_transmitted_bytes", **app) > 7 * 30
        assert delta("sockudo_connection_errors_total", error_type="4000", **app) == 1
        fanout = {"channel_type": "public", "recipient_count_bucket": "xs", **app}
        assert delta("sockudo_broadcast_latency_ms_count", **fanout) == 1
        assert delta("sockudo_broadcast_latency_ms_bucket", le="+Inf", **fanout) == 1
        assert delta("sockudo_http_calls_received_total", **app) == 1
        assert delta("sockudo_http_received_bytes", **app) > 0
        assert delta("sockudo_http_transmitted_bytes", **app) > 0
        # django-prometheus's HTTP and database series share the endpoint.
        names = {name for name, _ in after}
        assert "django_http_requests_before_middlewares_total" in names, sorted(names)[:40]
        assert any(name.startswith("django_db_") for name in names), sorted(names)[:40]
        assert not any(name.endswith("_created") for name in names if name.startswith("sockudo_"))

        await a.close()

        async def one_left():
            now = await scrape(srv)
            assert value(now, "sockudo_connected", **app) == 1
            assert (
                value(now, "sockudo_new_disconnections_total", **app)
                - value(before, "sockudo_new_disconnections_total", **app)
                == 1
            )

        await eventually(one_left)
        await b.close()

    run(body())


def test_metrics_and_usage_can_be_switched_off(server_factory):
    srv = server_factory(env={"METRICS_ENABLED": "false", "HTTP_API_USAGE_ENABLED": "false"})
    response = get(srv, "/metrics")
    assert response.status_code == 200
    assert response.text == "# Metrics collection is not enabled.\n"
    for path in ("/usage", "/stats", "/operator/stats"):
        assert get(srv, path).status_code == 404, path


# -- health ----------------------------------------------------------------------------------------
def test_live_and_up(server):
    live = get(server, "/live")
    assert live.status_code == 200 and live.text == ""
    for path in ("/up", f"/up/{server.app_id}"):
        response = get(server, path)
        assert response.status_code == 200, (path, response.text)
        assert response.text == "OK" and response.headers["X-Health-Check"] == "OK"
    unknown = get(server, "/up/no-such-app")
    assert unknown.status_code == 404
    assert unknown.text == "NOT_FOUND" and unknown.headers["X-Health-Check"] == "NOT_FOUND"


def test_up_is_error_when_the_adapter_backend_is_down(server_factory):
    srv = server_factory(
        env={
            "ADAPTER_DRIVER": "redis",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "HEALTH_CHECK_TIMEOUT_MS": "500",
        }
    )
    for path in ("/up", f"/up/{srv.app_id}"):
        response = get(srv, path)
        assert response.status_code == 503, (path, response.text)
        assert response.text == "ERROR" and response.headers["X-Health-Check"] == "ERROR"
    assert get(srv, "/live").status_code == 200  # liveness never depends on a backend


def test_usage_and_stats(server):
    usage = get(server, "/usage")
    assert usage.status_code == 200
    memory = usage.json()["memory"]
    assert set(memory) == {"free", "used", "total", "percent"}
    assert memory["total"] > 0 and memory["used"] + memory["free"] == memory["total"]

    async def body():
        channel = f"presence-stats-{uuid.uuid4().hex[:6]}"
        client = await connect(server)
        try:
            await subscribed(
                client, channel, _creds(server), {"user_id": "ada", "user_info": {"name": "Ada"}}
            )
            for path in ("/stats", "/operator/stats"):
                stats = get(server, path).json()
                assert set(stats) >= {"memory", "history", "presence_history", "totals", "apps"}, stats
                assert stats["history"]["enabled"] is False
                entry = next(a for a in stats["apps"] if a["app_id"] == server.app_id)
                assert entry["connections"] >= 1 and entry["connections_with_meta"] >= 1
                occupancy = entry["occupancy"]
                assert occupancy["presence_channels"] >= 1 and occupancy["presence_members"] >= 1
                assert occupancy["subscriptions"] >= occupancy["presence_subscriptions"] >= 1
                assert stats["totals"]["connections"] >= entry["connections"]
                assert stats["totals"]["apps"] == len(stats["apps"])
                assert [a["app_id"] for a in stats["apps"]] == sorted(a["app_id"] for a in stats["apps"])
        finally:
            await client.close()

    run(body())


def _creds(server: LiveServer):
    from ._live import default_app

    return default_app(server)


# -- graceful shutdown -----------------------------------------------------------------------------
def test_sigterm_drains_closes_sockets_with_4200_and_exits_0(server_factory):
    srv = server_factory(env={"SHUTDOWN_GRACE_PERIOD": "1"})

    # Asked before the signal: a draining node's refusals and close reasons depend on the transport.
    refused_status = upgrade_refused_status(srv, 503)  # stock daphne: 403
    shutting_down = close_reason(srv, "Server shutting down")  # stock daphne: no reason text

    async def body():
        a, b = await connect(srv), await connect(srv)
        await subscribed(a, "drain")
        stuck = await asyncio.to_thread(StuckSocket, srv)  # keeps the drain open for the 1 s grace
        try:
            started = time.monotonic()
            srv.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)  # the signal is handled
            # While draining (the whole grace period here: the stuck socket outlives it): new
            # upgrades are refused (503; 403 on stock daphne) and /up answers DRAINING. Both asked
            # within that second.
            upgrade = websockets.connect(
                f"ws://{srv.host}:{srv.port}/app/{srv.key}?protocol=7", open_timeout=2
            )
            attempt, up = await asyncio.gather(
                upgrade, asyncio.to_thread(get, srv, "/up"), return_exceptions=True
            )
            with pytest.raises(InvalidStatus) as refused:
                raise attempt if isinstance(attempt, BaseException) else AssertionError(attempt)
            assert refused.value.response.status_code == refused_status
            if isinstance(up, BaseException):
                raise up
            assert up.status_code == 503 and up.text == "DRAINING", up.text
            assert up.headers["X-Health-Check"] == "DRAINING"
            for client in (a, b):
                closed = await read_until_closed(client.ws, timeout=3)
                assert (closed.code, closed.reason) == (4200, shutting_down), closed
            code = await asyncio.to_thread(srv.process.wait, 5)
            elapsed = time.monotonic() - started
            assert code == 0, srv.log()
            # The stuck socket held the drain for the whole grace period, then it ended.
            assert 1 <= elapsed < 1 + 2.5, elapsed
        finally:
            stuck.close()
            await close_all(a, b)

    run(body())


def test_sigterm_with_nothing_connected_exits_at_once(server_factory):
    srv = server_factory(env={"SHUTDOWN_GRACE_PERIOD": "10"})
    assert get(srv, "/up").status_code == 200
    started = time.monotonic()
    srv.process.send_signal(signal.SIGTERM)
    assert srv.process.wait(8) == 0, srv.log()
    assert time.monotonic() - started < 5  # "up to" the grace period: nothing to wait for


def test_sigterm_on_a_cluster_node_removes_its_presence_members_at_once(redis_url):
    """A node that drains leaves the cluster itself: peers see member_removed well before the
    dead-node timeout (15 s here) would have removed the member."""
    env = {
        "ADAPTER_DRIVER": "redis",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-drain-{uuid.uuid4().hex[:8]}:",
        "SHUTDOWN_GRACE_PERIOD": "1",
        "CLUSTER_HEALTH_NODE_TIMEOUT_MS": "15000",
    }
    leaving, staying = LiveServer(env=env).start(), LiveServer(env=env).start()
    channel = f"presence-drain-{uuid.uuid4().hex[:6]}"
    try:

        async def body():
            creds = _creds(staying)
            watcher = await connect(staying)
            await subscribed(watcher, channel, creds, {"user_id": "stays"})
            goer = await connect(leaving)
            await subscribed(goer, channel, creds, {"user_id": "goes"})
            added = await watcher.expect("pusher_internal:member_added", channel)
            assert json.loads(added["data"])["user_id"] == "goes"
            started = time.monotonic()
            leaving.process.send_signal(signal.SIGTERM)
            closed = await read_until_closed(goer.ws, timeout=3)
            assert closed.code == 4200, closed
            removed = await watcher.expect("pusher_internal:member_removed", channel, timeout=5)
            assert json.loads(removed["data"])["user_id"] == "goes"
            assert time.monotonic() - started < 5
            assert await asyncio.to_thread(leaving.process.wait, 5) == 0, leaving.log()
            await watcher.close()

        run(body())
    finally:
        leaving.stop()
        staying.stop()


# -- several workers on one port -------------------------------------------------------------------
def _nodes(server: LiveServer, attempts: int = 60) -> dict[int, dict]:
    """pid -> the /stats of that worker, from as many fresh connections as it takes to see them."""
    seen: dict[int, dict] = {}
    for _ in range(attempts):
        stats = get(server, "/stats").json()
        seen[stats["node"]["pid"]] = stats
    return seen


def test_workers_share_one_port_and_form_a_cluster(redis_url):
    env = {
        "ADAPTER_DRIVER": "redis",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-workers-{uuid.uuid4().hex[:8]}:",
        "SHUTDOWN_GRACE_PERIOD": "2",
        **FAST_HEALTH,
    }
    srv = LiveServer(env=env, args=("--workers", "2")).start()
    try:

        async def body():
            await eventually(lambda: _both_up(srv), timeout=20)
            clients = [await connect(srv) for _ in range(12)]
            try:
                for client in clients:
                    await subscribed(client, "fan")

                # Each worker reports only its own sockets; together they hold all twelve.
                def spread():
                    nodes = _nodes(srv)
                    counts = {pid: s["totals"]["connections"] for pid, s in nodes.items()}
                    assert len(counts) == 2, counts
                    assert sum(counts.values()) == 12 and all(counts.values()), counts
                    assert len({s["node"]["id"] for s in nodes.values()}) == 2  # two cluster nodes

                await asyncio.to_thread(spread)
                # A publish received by either worker reaches the clients of both.
                await publish(srv, "fan", "to-all", {"ok": True})
                for client in clients:
                    await client.expect("to-all", "fan")

                # /metrics on any worker covers every worker (multiprocess mode, 1 s flush).
                async def all_counted():
                    samples = await scrape(srv)
                    assert value(samples, "sockudo_connected", app_id=srv.app_id) == 12
                    assert value(samples, "sockudo_new_connections_total", app_id=srv.app_id) >= 12

                await eventually(all_counted, timeout=5)
            finally:
                await close_all(*clients)

        run(body())

        # A crashed worker is restarted: a new process serves the port beside the survivor.
        victim = next(iter(_nodes(srv)))
        os.kill(victim, signal.SIGKILL)

        def replaced():
            pids = set(_nodes(srv, attempts=30))
            assert victim not in pids and len(pids) == 2, pids

        deadline = time.monotonic() + 20
        while True:
            try:
                replaced()
                break
            except (AssertionError, httpx.HTTPError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

        # SIGTERM to the supervisor drains every worker and exits 0.
        srv.process.send_signal(signal.SIGTERM)
        assert srv.process.wait(15) == 0, srv.log()
    finally:
        srv.stop()


async def _both_up(srv: LiveServer) -> None:
    nodes = await asyncio.to_thread(_nodes, srv, 20)
    assert len(nodes) == 2, nodes


# -- system check ----------------------------------------------------------------------------------
def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_system_check_refuses_local_adapter_with_several_workers(tmp_path):
    refused = _manage(tmp_path, "check", ADAPTER_DRIVER="local", SOCKUDO_WORKERS="2")
    assert refused.returncode != 0
    assert "realtime.E001" in refused.stderr + refused.stdout
    assert _manage(tmp_path, "check", ADAPTER_DRIVER="redis", SOCKUDO_WORKERS="2").returncode == 0
    assert _manage(tmp_path, "check", ADAPTER_DRIVER="local", SOCKUDO_WORKERS="1").returncode == 0
    # serve --workers counts like SOCKUDO_WORKERS, and refuses before binding anything.
    serve = _manage(tmp_path, "serve", "--workers", "2", "--port", "0", ADAPTER_DRIVER="local")
    assert serve.returncode != 0 and "realtime.E001" in serve.stderr + serve.stdout
