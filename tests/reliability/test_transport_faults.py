"""Transport faults: oversized bodies, upgrade-limit bypasses, slow consumers, bare-LF heads and
foreign Host headers, against real servers over raw sockets on 127.0.0.1. Every wait is bounded
and every test prints the figure it measured."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from realtime.testing import LiveServer, signed_query

LIMIT = 10 << 20  # HTTP_API_REQUEST_LIMIT_IN_MB's default


# -- helpers ---------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (a ``serve`` may run workers), in MB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


class PeakRss:
    """Samples a server's RSS every 20 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_mb(pid)
        self.peak = self.before
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def stop(self) -> tuple[float, float, float]:
        self.running = False
        self.thread.join(2)
        return self.before, self.peak, rss_mb(self.pid)


def open_socket(server: LiveServer, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes, bytes]:
    """(status, headers, body, bytes after it) of one HTTP/1.1 response (Content-Length framing,
    else framed by the close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status == 101:
        return status, headers, b"", rest
    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            while b"\r\n" not in rest:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                assert chunk, "closed mid-response"
                rest += chunk
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                assert chunk, "closed mid-response"
                rest += chunk
            body, rest = body + rest[:size], rest[size + 2 :]
            if size == 0:
                return status, headers, body, rest
    length = int(headers.get("content-length", -1))
    while length < 0 or len(rest) < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    if length < 0:
        return status, headers, rest, b""
    return status, headers, rest[:length], rest[length:]


def publish_bytes(server: LiveServer, body: bytes, host: str | None = None, path: str | None = None) -> bytes:
    path = path or f"/apps/{server.app_id}/events"
    query = signed_query("POST", path, server.key, server.secret, body)
    return (
        f"POST {path}?{query} HTTP/1.1\r\nHost: {host or f'{server.host}:{server.port}'}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def event_body(channel: str, data: str = "hi", size: int = 0) -> bytes:
    body = json.dumps({"name": "probe", "channel": channel, "data": data}).encode()
    return body + b" " * max(0, size - len(body))  # JSON allows trailing whitespace


def upgrade_bytes(server: LiveServer, spelling: bytes = b"Upgrade: websocket") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        f"GET /app/{server.key}?protocol=7&client=test&version=1 HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\n".encode()
        + spelling
        + b"\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
        + key
        + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    started: list[LiveServer] = []
    yield started
    for live in started:
        live.stop()


def start(servers: list[LiveServer], **env: str) -> LiveServer:
    live = LiveServer(env=env).start()
    servers.append(live)
    return live


# -- 1. bodies over HTTP_API_REQUEST_LIMIT_IN_MB ----------------------------------------------------
def send_oversized(
    server: LiveServer, size: int, chunked: bool, budget: float
) -> tuple[int | None, int, float]:
    """POST ``size`` unsigned bytes as fast as the server takes them; stop when it answers.
    Returns (status or None, bytes sent, seconds to the answer)."""
    sock = open_socket(server)
    path = f"/apps/{server.app_id}/events"
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    piece = b"x" * 65536
    if chunked:
        piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sock.setblocking(False)
    sent, started = 0, time.monotonic()
    deadline = started + budget
    answer = b""
    try:
        while time.monotonic() < deadline and sent < size:
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(piece)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    break
        sock.setblocking(True)
        if chunked and sent >= size:
            sock.sendall(b"0\r\n\r\n")  # the whole body went in: end it
        status, _, answer, _ = read_response(sock, deadline + 2)
        return status, sent, time.monotonic() - started
    except (OSError, AssertionError):
        return None, sent, time.monotonic() - started
    finally:
        sock.close()


def test_oversized_bodies_are_refused_before_they_are_buffered(servers) -> None:
    server = start(servers, SERVER_FAST_PATHS="true")  # the stock transport: test_stock_transport_... below
    sampler = PeakRss(server.process.pid)
    results: list[tuple[int | None, int, float]] = []
    threads = [
        threading.Thread(target=lambda: results.append(send_oversized(server, 200 << 20, False, 20)))
        for _ in range(3)
    ]
    threads.append(
        threading.Thread(target=lambda: results.append(send_oversized(server, 200 << 20, True, 20)))
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    time.sleep(0.3)
    before, peak, after = sampler.stop()
    print(
        f"\n3 x 200 MB Content-Length + 1 chunked 200 MB unsigned POSTs: answers {[r[0] for r in results]}, "
        f"sent {[r[1] >> 20 for r in results]} MB in {[round(r[2], 2) for r in results]} s; "
        f"RSS {before:.0f} MB -> peak {peak:.0f} MB -> {after:.0f} MB (growth {peak - before:.0f} MB)"
    )
    assert [r[0] for r in results] == [413] * 4
    assert all(r[1] < 50 << 20 for r in results), "the server kept reading a refused body"
    assert peak - before < 100
    # The server still serves.
    status, _, _, _ = _publish(server, event_body("after-oversized"))
    assert status == 200


def _publish(server: LiveServer, body: bytes, host: str | None = None):
    sock = open_socket(server, 10)
    try:
        sock.sendall(publish_bytes(server, body, host))
        return read_response(sock, time.monotonic() + 10)
    finally:
        sock.close()


def test_body_at_the_limit_is_published_and_one_byte_more_is_413(servers) -> None:
    server = start(servers)
    started = time.monotonic()
    status, _, answer, _ = _publish(server, event_body("at-limit", size=LIMIT))
    took = time.monotonic() - started
    assert status == 200, answer
    status_over, _, answer_over, _ = _publish(server, event_body("over-limit", size=LIMIT + 1))
    print(f"\nbody of exactly {LIMIT} bytes: {status} in {took:.2f} s; {LIMIT + 1} bytes: {status_over}")
    assert status_over == 413
    assert json.loads(answer_over)["code"] == "payload_too_large"


def test_chunked_body_is_cut_off_at_the_limit_on_a_keep_alive_publish_connection(servers) -> None:
    """The second request of a lean publish connection, chunked: daphne's channel takes it over and
    cuts the body off as soon as it passes the limit."""
    server = start(servers, SERVER_FAST_PATHS="true")
    sock = open_socket(server, 10)
    try:
        sock.sendall(publish_bytes(server, event_body("first")))
        status, _, _, _ = read_response(sock, time.monotonic() + 5)
        assert status == 200
        path = f"/apps/{server.app_id}/events"
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        piece = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
        sent, started = 0, time.monotonic()
        sock.setblocking(False)
        while sent < 100 << 20 and time.monotonic() - started < 15:
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            if readable:
                break
            if writable:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(piece)
        sock.setblocking(True)
        status, _, _, _ = read_response(sock, time.monotonic() + 5)
        print(f"\nchunked body on a publish connection: {status} after {sent >> 20} MB sent")
        assert status == 413
        assert sent < 50 << 20
    finally:
        sock.close()


def test_stock_transport_answers_413_for_oversized_bodies(servers) -> None:
    """SERVER_FAST_PATHS=false: the API answers 413 without Django reading the body, but stock daphne
    receives the whole body first (spooled to a file, then queued in memory): the figure is noted."""
    server = start(servers, SERVER_FAST_PATHS="false")
    sampler = PeakRss(server.process.pid)
    result = send_oversized(server, 60 << 20, False, 30)
    chunked = send_oversized(server, 30 << 20, True, 30)
    time.sleep(0.3)
    before, peak, after = sampler.stop()
    print(
        f"\nstock daphne, 60 MB Content-Length / 30 MB chunked unsigned POST: {result[0]} / {chunked[0]} "
        f"after {result[1] >> 20} / {chunked[1] >> 20} MB sent; RSS {before:.0f} -> peak {peak:.0f} -> {after:.0f} MB"
    )
    assert result[0] == 413
    assert chunked[0] == 413


# -- 2. the per-IP upgrade limit ----------------------------------------------------------------------
def upgrade_status(sock: socket.socket, request: bytes) -> int:
    sock.sendall(request)
    status, _, _, _ = read_response(sock, time.monotonic() + 5)
    return status


@pytest.mark.parametrize("fast", [True, False], ids=["tuned", "stock"])
def test_upgrade_limit_cannot_be_bypassed(servers, fast: bool) -> None:
    server = start(
        servers,
        RATE_LIMITER_ENABLED="true",
        RATE_LIMITER_WS_MAX_REQUESTS="2",
        SERVER_FAST_PATHS="true" if fast else "false",
    )
    allowed = []
    for _ in range(2):
        with open_socket(server) as sock:
            allowed.append(upgrade_status(sock, upgrade_bytes(server)))
    assert allowed == [101, 101]
    got: dict[str, int] = {}
    for name, spelling in (
        ("no space", b"Upgrade:websocket"),
        ("tab", b"Upgrade:\twebsocket"),
        ("case", b"uPgRaDe:  WebSocket "),
    ):
        with open_socket(server) as sock:
            got[name] = upgrade_status(sock, upgrade_bytes(server, spelling))
    with open_socket(server) as sock:  # second request after one daphne's channel served
        sock.sendall(f"GET /up HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
        first, _, _, _ = read_response(sock, time.monotonic() + 5)
        got["after GET /up"] = upgrade_status(sock, upgrade_bytes(server))
    with open_socket(server) as sock:  # second request after a publish on the lean channel
        sock.sendall(publish_bytes(server, event_body("before-upgrade")))
        published, _, _, _ = read_response(sock, time.monotonic() + 5)
        assert published == 200
        got["after a publish"] = upgrade_status(sock, upgrade_bytes(server))
    print(f"\n{'tuned' if fast else 'stock'} transport, limit 2: first two {allowed}, then {got}")
    # Stock daphne can refuse an upgrade only by closing before accept, which it answers 403.
    assert set(got.values()) == ({429} if fast else {403}), got


# -- 3. slow consumers ------------------------------------------------------------------------------
def ws_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        head = struct.pack("!BB", 0x81, 0x80 | len(payload))
    else:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return head + mask + masked


def read_frames(sock: socket.socket, buffer: bytearray, deadline: float) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each server frame, until the deadline or the connection ends."""
    while True:
        while True:
            if len(buffer) >= 2:
                length = buffer[1] & 0x7F
                start = 2
                if length == 126:
                    if len(buffer) < 4:
                        break
                    length, start = struct.unpack("!H", buffer[2:4])[0], 4
                elif length == 127:
                    if len(buffer) < 10:
                        break
                    length, start = struct.unpack("!Q", buffer[2:10])[0], 10
                if len(buffer) >= start + length:
                    opcode = buffer[0] & 0x0F
                    payload = bytes(buffer[start : start + length])
                    del buffer[: start + length]
                    yield opcode, payload
                    continue
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        sock.settimeout(remaining)
        chunk = sock.recv(262144)
        if not chunk:
            return
        buffer += chunk
        read_frames.total = getattr(read_frames, "total", 0) + len(chunk)


def channel_occupied(server: LiveServer, channel: str) -> bool:
    path = f"/apps/{server.app_id}/channels/{channel}"
    query = signed_query("GET", path, server.key, server.secret)
    answer = httpx.get(f"{server.http_url}{path}?{query}", timeout=5)
    return bool(answer.json().get("occupied"))


def test_slow_consumer_that_reads_gets_4100(servers) -> None:
    # The tuned transport's outlet sees the socket's unsent bytes; stock daphne hides them (its
    # Twisted buffer grows without a bound the ASGI app can see), see docs/reliability.md.
    server = start(servers, WEBSOCKET_MAX_BUFFER_KB="64", SERVER_FAST_PATHS="true")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little for us
    sock.settimeout(5)
    sock.connect((server.host, server.port))
    sock.sendall(upgrade_bytes(server))
    status, _, _, rest = read_response(sock, time.monotonic() + 5)
    assert status == 101
    buffer = bytearray(rest)
    channel = "slow-" + os.urandom(4).hex()
    deadline = time.monotonic() + 5
    frames = read_frames(sock, buffer, deadline)
    assert b"connection_established" in next(frames)[1]
    sock.sendall(ws_frame(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}})))
    assert b"subscription_succeeded" in next(frames)[1]
    # Stop reading; publish until the server gives up on this socket.
    data = "x" * 60000
    published = 0
    with httpx.Client(base_url=server.http_url, timeout=5) as client:
        path = f"/apps/{server.app_id}/events"
        while published < 400 and channel_occupied(server, channel):
            for _ in range(10):
                body = json.dumps({"name": "big", "channel": channel, "data": data}).encode()
                query = signed_query("POST", path, server.key, server.secret, body)
                client.post(f"{path}?{query}", content=body, headers={"Content-Type": "application/json"})
                published += 1
    decided = time.monotonic()
    assert not channel_occupied(server, channel), "the server never closed the slow consumer"
    time.sleep(3)  # a consumer stalled longer than autobahn's 2 s close handshake, then reading
    read_frames.total = 0
    code = None
    data_frames = 0
    for opcode, payload in read_frames(sock, buffer, time.monotonic() + 15):
        if opcode == 8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            break
        data_frames += 1
    took = time.monotonic() - decided
    sock.close()
    print(
        f"\nslow consumer after {published} publishes of 60 KB: close code {code or 1006} "
        f"{took:.2f} s after the server closed it, {read_frames.total} bytes ({data_frames} frames) read before"
    )
    assert code == 4100


# -- 4. bare-LF heads ---------------------------------------------------------------------------------
def test_bare_lf_requests_are_answered_at_once(servers) -> None:
    """The tuned transport only: stock daphne waits for CRLF until its own timeout (docs/reliability.md)."""
    server = start(servers, SERVER_FAST_PATHS="true")
    cases = {
        "publish": f"POST /apps/{server.app_id}/events HTTP/1.1\nHost: x\nContent-Length: 2\n\n{{}}".encode(),
        "upgrade": f"GET /app/{server.key} HTTP/1.1\nHost: x\nUpgrade: websocket\n\n".encode(),
        "other": b"GET /up HTTP/1.1\nHost: x\n\n",
    }
    got = {}
    for name, request in cases.items():
        with open_socket(server) as sock:
            started = time.monotonic()
            sock.sendall(request)
            try:
                status = read_response(sock, started + 3)[0]
            except (OSError, AssertionError):
                status = None
            got[name] = (status, round(time.monotonic() - started, 3))
    with open_socket(server) as sock:  # the second request of a lean publish connection
        sock.sendall(publish_bytes(server, event_body("before-lf")))
        assert read_response(sock, time.monotonic() + 5)[0] == 200
        started = time.monotonic()
        sock.sendall(cases["publish"])
        try:
            status = read_response(sock, started + 3)[0]
        except (OSError, AssertionError):
            status = None
        got["second publish"] = (status, round(time.monotonic() - started, 3))
    print(f"\ntuned transport, bare-LF requests (status, seconds): {got}")
    assert all(status == 400 and took < 1 for status, took in got.values()), got
    assert _publish(server, event_body("after-lf"))[0] == 200


# -- 5. ALLOWED_HOSTS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["tuned", "stock"])
def test_allowed_hosts_applies_to_publishes(servers, fast: bool) -> None:
    server = start(servers, ALLOWED_HOSTS="example.com", SERVER_FAST_PATHS="true" if fast else "false")
    foreign = _publish(server, event_body("hosts"), host="evil.test")[0]
    allowed = _publish(server, event_body("hosts"), host="example.com")[0]
    path = f"/apps/{server.app_id}/channels"
    query = signed_query("GET", path, server.key, server.secret)
    with open_socket(server) as sock:
        sock.sendall(f"GET {path}?{query} HTTP/1.1\r\nHost: evil.test\r\n\r\n".encode())
        foreign_get = read_response(sock, time.monotonic() + 5)[0]
    print(
        f"\n{'tuned' if fast else 'stock'} transport, ALLOWED_HOSTS=example.com: publish with Host evil.test "
        f"{foreign}, example.com {allowed}; GET channels with evil.test {foreign_get}"
    )
    assert (foreign, allowed, foreign_get) == (400, 200, 400)
