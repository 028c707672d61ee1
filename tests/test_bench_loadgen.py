"""bench.loadgen: functional checks against the live test server (no timing thresholds), plus an
offline check of its WebSocket frame parser and of the signatures it sends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadgen import connections
from bench.loadgen.connections import WS_GUID, PusherSocket
from bench.loadgen.fleet import Fleet
from bench.loadgen.http import signed_events_path
from realtime.protocol.signatures import api_string_to_sign, hmac_hex, sign_channel

REPO_ROOT = Path(__file__).resolve().parent.parent
LOADGEN = [sys.executable, "-m", "bench.loadgen"]  # run with cwd=REPO_ROOT, as bench/README.md says


def run_loadgen(server, *args: str, timeout: float = 90) -> dict:
    cmd = [
        *LOADGEN, *args, "--json",
        "--ws-url", f"ws://{server.host}:{server.port}", "--http-url", f"http://{server.host}:{server.port}",
        "--app-id", server.app_id, "--key", server.key, "--secret", server.secret,
        "--server-pid", str(server.process.pid),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # --json prints exactly one line
    return json.loads(lines[0])


@pytest.mark.parametrize("processes", ["1", "2"])
def test_fanout(server, processes):
    r = run_loadgen(
        server, "fanout", "--subscribers", "20", "--rate", "20", "--duration", "2", "--processes", processes
    )
    assert r["scenario"] == "fanout"
    assert r["subscribed"] == 20 and r["connect_failures"] == 0
    assert r["events"] > 0 and r["events_failed"] == 0
    assert r["lost"] == 0
    assert r["deliveries"] == r["events"] * 20 == r["expected"]
    assert r["duplicates"] == 0 and r["unexpected"] == 0
    assert r["lat_p50_ms"] is not None and r["lat_max_ms"] >= r["lat_p50_ms"]
    assert "server_cpu_us_per_delivery" in r


def test_connections(server):
    r = run_loadgen(server, "connections", "--connections", "50", "--channels", "5")
    assert r["connected"] == 50 and r["failures"] == 0
    assert r["liveness_events"] == 5
    assert r["liveness_expected"] == 50 and r["liveness_missing"] == 0 and r["liveness_unexpected"] == 0
    assert "rss_per_conn_kb" in r and "server_cpu_us_per_connect" in r


def test_churn(server):
    r = run_loadgen(server, "churn", "--sockets", "5", "--duration", "2")
    assert r["connected"] == 5
    assert r["subscribes"] > 0 and r["subscribe_failures"] == 0


def test_unreachable_server_fails_fast():
    proc = subprocess.run(
        [*LOADGEN, "churn", "--sockets", "2", "--duration", "1", "--json",
         "--ws-url", "ws://127.0.0.1:9", "--http-url", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 1
    assert json.loads(proc.stdout.strip().splitlines()[-1])["error"] == "no socket connected"


def test_signatures_match_the_server():
    body = b'{"name":"e","channel":"c","data":"d"}'
    path, _, query = signed_events_path("", "42", "k", "s", body).partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert path == "/apps/42/events" and params["body_md5"] == hashlib.md5(body).hexdigest()
    assert params["auth_signature"] == hmac_hex("s", api_string_to_sign("POST", path, params))


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def unmask_client_frame(frame: bytes) -> tuple[int, bytes]:
    assert frame[1] & 0x80, "client frames must be masked"
    n, pos = frame[1] & 0x7F, 2
    if n == 126:
        n, pos = int.from_bytes(frame[2:4], "big"), 4
    key, payload = frame[pos : pos + 4], frame[pos + 4 : pos + 4 + n]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = close


def open_socket(fleet: Fleet) -> tuple[PusherSocket, FakeTransport]:
    """A PusherSocket on a fake transport, before its handshake (needs a running loop)."""
    key = base64.b64encode(b"0123456789abcdef").decode()
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    sock = PusherSocket(fleet, b"GET / HTTP/1.1\r\n\r\n", accept)
    transport = FakeTransport()
    sock.connection_made(transport)
    return sock, transport


def test_subscriptions_are_signed_as_the_server_checks():
    async def body() -> None:
        fleet = Fleet({"tls": False, "insecure": False, "key": "k", "secret": "s"})
        sock, transport = open_socket(fleet)
        sock.open, sock.socket_id = True, "1.2"
        data = '{"user_id":"u"}'
        for channel, channel_data in (("private-a", None), ("presence-a", data)):
            sock.subscribe(channel, channel_data)
            opcode, payload = unmask_client_frame(transport.written[-1])
            sent = json.loads(payload)["data"]
            assert opcode == 1 and sent["channel"] == channel and sent.get("channel_data") == channel_data
            assert sent["auth"] == sign_channel("k", "s", "1.2", channel, channel_data)
        sock.subscribe("public-a")
        assert "auth" not in json.loads(unmask_client_frame(transport.written[-1])[1])["data"]

    asyncio.run(body())


def test_frame_parser_handles_split_reads_and_fragments():
    async def body() -> None:
        fleet = Fleet({"tls": False, "insecure": False, "key": "k", "secret": "s"})
        fleet.reset()
        sock, transport = open_socket(fleet)
        accept = sock.accept
        established = json.dumps({"socket_id": "1.2", "activity_timeout": 120})
        big = "#lg1:0#" + "x" * 70_000  # 64-bit length
        stream = (
            f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            + server_frame(
                1, json.dumps({"event": "pusher:connection_established", "data": established}).encode()
            )
            + server_frame(
                1, json.dumps({"event": "e", "channel": "c", "data": "#lg0:0#" + "y" * 300}).encode()
            )
            + server_frame(1, b'{"event":"e","channel":"c","data":"#lg2', fin=False)  # fragmented message
            + server_frame(9, b"hi")  # a ping between fragments
            + server_frame(0, b':0#"}')
            + server_frame(1, json.dumps({"event": "e", "channel": "c", "data": big}).encode())
            + server_frame(
                1, json.dumps({"event": "e", "channel": "c", "data": "#lg0:0#"}).encode()
            )  # duplicate
        )
        # feed in uneven chunks, including 1-byte reads across every header boundary
        pos, sizes = 0, [1, 2, 3, 7, 64, 1, 1, 1000, 5]
        i = 0
        while pos < len(stream):
            chunk = stream[pos : pos + sizes[i % len(sizes)]]
            connections._RBUF[: len(chunk)] = chunk
            sock.buffer_updated(len(chunk))
            pos += len(chunk)
            i += 1
        assert sock.established.done() and sock.established.result() is not None
        assert sock.socket_id == "1.2"
        assert fleet.unique == 3 and fleet.duplicates == 1 and fleet.unparsable == 0
        assert list(fleet.counts[:3]) == [1, 1, 1]
        pongs = [unmask_client_frame(w) for w in transport.written[1:]]
        assert (10, b"hi") in pongs

    asyncio.run(body())
