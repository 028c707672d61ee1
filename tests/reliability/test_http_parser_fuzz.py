"""HTTP parser fuzzing of the tuned transport (the upgrade sniffer, the lean publish channel and
daphne's HTTP channel behind them), as daphne's own tests fuzz its HTTP parsing: hypothesis builds
requests (methods, targets, versions, header sets in odd spellings, bodies framed right and wrong,
pipelines, requests split across writes) and each goes to a live node on a fresh TCP connection.

The property: the server answers with an HTTP status line, or closes the connection, within
``BOUND`` seconds of the last byte; it never hangs or dies. A request that may rightly still be
waiting for bytes (a body shorter than its ``Content-Length``, bytes past the declared body, a
chunked body that never ends, a head cut short) is given the same bound after the client shuts
its write side. A head with bare-LF line ends is always answered. Afterwards the node still
serves: ``/up`` answers 200 and a signed publish reaches a WebSocket subscriber, and its memory
stays bounded."""

from __future__ import annotations

import collections
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.testing import LiveServer, signed_query

from ._measure import rss_kb
from .test_transport_faults import (
    event_body,
    open_socket,
    publish_bytes,
    read_frames,
    read_response,
    upgrade_bytes,
    ws_frame,
)

BOUND = 2.0  # seconds from the last byte sent (or from the client's EOF) to an answer or a close
SETTLE = 0.3  # how long an incomplete request is given before the client shuts its write side
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")  # a body need not end in a line end

KNOWN_ERROR = "ThreadSensitiveContext has exited"
# The live node of each run, read by the strategies (they need its app id, key and secret).
NODE: dict[str, LiveServer] = {}


# -- requests ------------------------------------------------------------------------------------
@dataclass
class Request:
    data: bytes
    incomplete: bool  # may rightly wait for more bytes
    bare_lf: bool  # its head has a line ended by LF alone
    note: list[str] = field(default_factory=list)


@dataclass
class Example:
    requests: list[Request]
    cuts: list[int]  # write boundaries
    pause: float

    @property
    def data(self) -> bytes:
        return b"".join(r.data for r in self.requests)

    @property
    def incomplete(self) -> bool:
        return any(r.incomplete for r in self.requests)

    def __repr__(self) -> str:
        return (
            f"Example(data={self.data!r}, cuts={self.cuts}, pause={self.pause}, incomplete={self.incomplete})"
        )


no_line_end = st.binary(max_size=24).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
token = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~", min_size=1, max_size=12
)
non_ascii = st.binary(min_size=1, max_size=8).map(lambda b: bytes(0x80 | c for c in b))

METHODS = [
    b"GET",
    b"POST",
    b"PUT",
    b"HEAD",
    b"OPTIONS",
    b"DELETE",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"get",
    b"Post",
]
methods = st.one_of(
    st.sampled_from(METHODS),
    st.sampled_from([b"GET", b"POST"]),  # the two the transport routes on, more often
    token.map(str.encode),
    no_line_end,
)
VERSIONS = [
    b"HTTP/1.1",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/0.9",
    b"http/1.1",
    b"HTTP/1.x",
    b"HTTP/11",
    b"",
]
versions = st.sampled_from(VERSIONS) | no_line_end


@st.composite
def targets(draw) -> tuple[bytes, bool]:
    """(target, whether to sign it as a publish of the body)."""
    node = NODE["server"]
    publish = f"/apps/{node.app_id}/events".encode()
    kind = draw(
        st.sampled_from(
            [
                "publish",
                "publish",
                "signed",
                "signed",
                "batch",
                "upgrade",
                "upgrade",
                "up",
                "channels",
                "star",
                "absolute",
                "long",
                "garbage",
                "empty",
                "other-app",
            ]
        )
    )
    if kind == "publish":
        return publish + draw(st.sampled_from([b"", b"?", b"?auth_key=x", b"/", b"?a=%ff&b"])), False
    if kind == "signed":
        return publish, True
    if kind == "batch":
        return f"/apps/{node.app_id}/batch_events".encode(), False
    if kind == "upgrade":
        return f"/app/{node.key}?protocol=7&client=fuzz&version=1".encode() + draw(
            st.sampled_from([b"", b"&x=\xff"])
        ), False
    if kind == "up":
        return b"/up", False
    if kind == "channels":
        return f"/apps/{node.app_id}/channels".encode(), False
    if kind == "star":
        return b"*", False
    if kind == "absolute":
        return f"http://{node.host}:{node.port}/up".encode(), False
    if kind == "long":
        size = draw(st.sampled_from([4000, 9000, 17000, 70000]))
        return draw(
            st.sampled_from([b"/up?", publish + b"?", b"/app/" + node.key.encode() + b"?"])
        ) + b"a" * size, False
    if kind == "other-app":
        return b"/apps/9999/events", False
    if kind == "empty":
        return b"", False
    return draw(no_line_end), False


def header_value(draw, name: str, body_len: int) -> bytes:
    node = NODE["server"]
    if name == "content-length":
        return draw(
            st.sampled_from(
                [b"%d" % body_len] * 4 + [b" %d " % body_len, b"-1", b"abc", b"1,1", b"9" * 30, b"0x10", b""]
            )
            | st.integers(0, body_len + 40).map(lambda n: b"%d" % n)
        )
    if name == "transfer-encoding":
        return draw(
            st.sampled_from(
                [
                    b"chunked",
                    b"chunked",
                    b"Chunked",
                    b"gzip, chunked",
                    b"chunked, gzip",
                    b"identity",
                    b"chunked\x00",
                    b"",
                ]
            )
        )
    if name == "upgrade":
        return draw(
            st.sampled_from(
                [
                    b"websocket",
                    b"websocket",
                    b"WebSocket",
                    b" websocket ",
                    b"h2c",
                    b"websocket, foo",
                    b"web socket",
                ]
            )
        )
    if name == "connection":
        return draw(
            st.sampled_from([b"Upgrade", b"close", b"keep-alive", b"keep-alive, Upgrade", b"Close", b"\xffx"])
        )
    if name == "expect":
        return draw(st.sampled_from([b"100-continue", b"100-Continue", b"200-ok", b""]))
    if name == "host":
        return draw(
            st.sampled_from(
                [f"{node.host}:{node.port}".encode(), b"", b"evil.test", b"a b", b"[::1", b"h\xc3\xa9.test"]
            )
        )
    if name == "sec-websocket-key":
        return draw(st.sampled_from([b"dGhlIHNhbXBsZSBub25jZQ==", b"", b"short", b"\x80" * 24]))
    if name == "sec-websocket-version":
        return draw(st.sampled_from([b"13", b"8", b"", b"13, 8"]))
    if name == "x-forwarded-for":
        return draw(
            st.sampled_from([b"10.0.0.1", b"10.0.0.1, 10.0.0.2", b"garbage", b"", b"::1", b"999.1.1.1"])
        )
    if name == "content-type":
        return draw(
            st.sampled_from(
                [b"application/json", b"application/json; charset=\xff", b"multipart/form-data; boundary="]
            )
        )
    return draw(
        st.one_of(
            no_line_end,
            no_line_end.map(lambda b: b"\t" + b + b"\t"),
            non_ascii,
            st.just(b"a\rb"),  # a stray CR
            st.sampled_from([20000, 70000]).map(lambda n: b"v" * n),  # an oversized line
        )
    )


CLEAN = {
    "upgrade": b"websocket",
    "connection": b"Upgrade",
    "sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": b"13",
    "expect": b"100-continue",
    "content-type": b"application/json",
}
HEADER_NAMES = [
    "host",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "connection",
    "expect",
    "sec-websocket-key",
    "sec-websocket-version",
    "x-forwarded-for",
    "content-type",
    "random",
]


def spelling(draw, name: str) -> bytes:
    if name == "random":
        return draw(token.map(str.encode) | no_line_end | non_ascii)
    canonical = "-".join(part.capitalize() for part in name.split("-")).encode()
    return draw(
        st.sampled_from(
            [canonical, canonical, name.encode(), name.upper().encode(), canonical + b" ", b" " + canonical]
        )
    )


def chunked(draw, body: bytes) -> tuple[bytes, str]:
    kind = draw(
        st.sampled_from(["valid", "valid", "extension", "truncated", "bad-size", "bad-crlf", "huge-size"])
    )
    cut = draw(st.integers(0, len(body)))
    parts = [p for p in (body[:cut], body[cut:]) if p]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    if kind == "valid":
        return encoded + b"0\r\n\r\n", kind
    if kind == "extension":
        return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n", kind
    if kind == "truncated":
        return encoded, kind
    if kind == "bad-size":
        return b"zz\r\n" + body + b"\r\n0\r\n\r\n", kind
    if kind == "huge-size":
        return b"f" * 20 + b"\r\nabc\r\n0\r\n\r\n", kind
    return b"3\r\nabcXX0\r\n\r\n", kind


@st.composite
def requests(draw) -> Request:
    node = NODE["server"]
    if draw(st.integers(0, 19)) == 0:  # pure garbage
        data = draw(st.binary(min_size=1, max_size=200))
        return Request(data, True, b"\n" in data.replace(b"\r\n", b""), ["garbage"])
    # Half the requests are well-formed but for their framing, so the fuzz also gets past the
    # parsers into the routes (publish, upgrade, /up); the other half are sloppy throughout.
    sloppy = draw(st.booleans())
    method = draw(methods if sloppy else st.sampled_from([b"GET", b"POST", b"POST", b"HEAD", b"PUT"]))
    target, signed = draw(targets())
    version = draw(versions if sloppy else st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    body = draw(st.sampled_from([b"", b""]) | st.just(event_body("fuzz-channel")) | st.binary(max_size=64))
    if signed:
        method = b"POST"
        target += b"?" + signed_query("POST", target.decode(), node.key, node.secret, body).encode()
    sep = draw(st.sampled_from([b" ", b" ", b" ", b"  ", b"\t"])) if sloppy else b" "
    line = method + sep + target + (b" " + version if version else b"")
    names = draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=7))
    if not sloppy:
        names = ["host", "content-type", *[name for name in names[:1] if name not in ("random", "upgrade")]]
        if target.startswith(b"/app/") and method == b"GET" and draw(st.booleans()):
            names = ["host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"]
    # The framing: mostly a matching Content-Length, sometimes chunked, sometimes nothing.
    framing = draw(st.sampled_from(["length", "length", "length", "chunked", "none"]))
    if framing == "length" and "content-length" not in names:
        names.append("content-length")
    if framing == "chunked" and "transfer-encoding" not in names:
        names.append("transfer-encoding")
    headers: list[tuple[bytes, bytes, bytes, str]] = []
    for name in names:
        value = header_value(draw, name, len(body))
        if not sloppy and name in CLEAN:
            value = CLEAN[name]
        if not sloppy and name == "host":
            value = f"{node.host}:{node.port}".encode()
        if name == "content-length" and framing == "length" and draw(st.booleans()):
            value = b"%d" % len(body)
        if name == "transfer-encoding" and framing == "chunked" and draw(st.booleans()):
            value = b"chunked"
        if sloppy:
            colon = draw(st.sampled_from([b": ", b": ", b": ", b":", b":\t", b" : ", b""]))  # "" = no colon
            spelt = spelling(draw, name)
        else:
            colon, spelt = draw(st.sampled_from([b": ", b":"])), name.encode()
        headers.append((spelt, colon, value, name))
    chunk_kind = None
    wire_body = body
    if framing == "chunked":
        wire_body, chunk_kind = chunked(draw, body)
    if draw(st.integers(0, 4)) == 0:  # a body shorter or longer than it says
        wire_body = draw(st.sampled_from([wire_body[: len(wire_body) // 2], wire_body + b"extra"]))
    endings = draw(st.sampled_from(["crlf", "crlf", "crlf", "lf", "mixed"])) if sloppy else "crlf"
    lines = [line] + [spelt + colon + value for spelt, colon, value, _ in headers]
    if endings == "crlf":
        ends = [b"\r\n"] * (len(lines) + 1)
    elif endings == "lf":
        ends = [b"\n"] * (len(lines) + 1)
    else:
        ends = [draw(st.sampled_from([b"\r\n", b"\n"])) for _ in range(len(lines) + 1)]
    head = b"".join(text + end for text, end in zip(lines, ends, strict=False)) + ends[-1]
    truncate = draw(st.integers(0, 9)) == 0
    if truncate:
        head = head[: draw(st.integers(1, max(1, len(head) - 1)))]
        wire_body = b""
    bare_lf = any(end == b"\n" for end in ends) and not truncate
    # May the server rightly still be waiting for bytes?
    declared = [value for spelt, colon, value, name in headers if name == "content-length"]
    te = [value for spelt, colon, value, name in headers if name == "transfer-encoding"]
    incomplete = truncate or any(
        re.search(rb"\d", value) and value.strip() != b"%d" % len(wire_body) for value in declared
    )
    if te:
        valid = chunk_kind in ("valid", "extension") and wire_body.endswith(b"0\r\n\r\n")
        incomplete = (
            incomplete or not valid or bool(declared) or any(v.strip().lower() != b"chunked" for v in te)
        )
    if wire_body and not declared and not te:
        incomplete = True  # bytes nothing frames: the start of a request that never ends
    return Request(head + wire_body, incomplete, bare_lf, [endings, framing, chunk_kind or ""])


@st.composite
def examples(draw) -> Example:
    count = draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
    reqs = [draw(requests()) for _ in range(count)]
    data_len = sum(len(r.data) for r in reqs)
    cuts = []
    if draw(st.integers(0, 3)) == 0 and data_len > 1:
        cuts = sorted(set(draw(st.lists(st.integers(1, data_len - 1), min_size=1, max_size=3))))
    return Example(reqs, cuts, draw(st.sampled_from([0.0, 0.01, 0.05])))


# -- one exchange --------------------------------------------------------------------------------
@dataclass
class Outcome:
    statuses: list[int]
    closed: bool
    took: float  # seconds from the last byte (or EOF) to the answer or close
    shut: bool  # the client shut its write side first


def exchange(server: LiveServer, example: Example) -> Outcome:
    sock = open_socket(server)
    data = example.data
    bounds = [0, *example.cuts, len(data)]
    closed = False
    try:
        for i in range(len(bounds) - 1):
            if i:
                time.sleep(example.pause)
            sock.sendall(data[bounds[i] : bounds[i + 1]])
    except OSError:
        closed = True  # refused and closed while we were still sending
    sent_at = time.monotonic()
    received = b""
    shut = False
    expected = len(example.requests)

    def done() -> bool:
        final = [int(s) for s in STATUS.findall(received) if not s.startswith(b"1") or s == b"101"]
        return closed or 101 in final or len(final) >= expected

    deadline = sent_at + (SETTLE if example.incomplete else BOUND)
    try:
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if example.incomplete and not shut:
                    sock.shutdown(socket.SHUT_WR)
                    shut, sent_at = True, time.monotonic()
                    deadline = sent_at + BOUND
                    continue
                break
            readable, _, _ = select.select([sock], [], [], remaining)
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed = True
                received += chunk
    finally:
        took = time.monotonic() - sent_at
        sock.close()
    statuses = [int(s) for s in STATUS.findall(received)]
    assert not received or received.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), (received[:200], example)
    answered = bool(statuses)
    assert answered or closed, (
        f"no answer and no close within {BOUND} s{' after EOF' if shut else ''}: {example!r}"
    )
    assert done(), f"not every request answered within {BOUND} s: {statuses} {example!r}"
    if example.requests[0].bare_lf and not example.incomplete:
        assert answered and not shut, f"bare-LF head not answered: {received[:200]!r} {example!r}"
    return Outcome(statuses, closed, took, shut)


# -- the runs --------------------------------------------------------------------------------------
class Subscriber:
    """A raw WebSocket subscribed to one channel, opened before the fuzz (so an upgrade limit the
    fuzz exhausts does not keep it out)."""

    def __init__(self, server: LiveServer, channel: str) -> None:
        self.sock = open_socket(server, 10)
        self.sock.sendall(upgrade_bytes(server))
        status, _, _, rest = read_response(self.sock, time.monotonic() + 5)
        assert status == 101
        self.buffer = bytearray(rest)
        frames = read_frames(self.sock, self.buffer, time.monotonic() + 5)
        assert b"connection_established" in next(frames)[1]
        self.sock.sendall(ws_frame(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}})))
        assert b"subscription_succeeded" in next(frames)[1]

    def receives(self, marker: bytes) -> bool:
        return any(
            marker in payload for _, payload in read_frames(self.sock, self.buffer, time.monotonic() + 5)
        )


def still_serves(server: LiveServer, subscriber: Subscriber) -> tuple[int, int]:
    with open_socket(server) as sock:
        sock.sendall(f"GET /up HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode())
        up = read_response(sock, time.monotonic() + 5)[0]
    with open_socket(server) as sock:
        sock.sendall(publish_bytes(server, event_body("fuzz-subscriber", data="after-the-fuzz")))
        published = read_response(sock, time.monotonic() + 5)[0]
    assert up == 200
    assert published == 200
    assert subscriber.receives(b"after-the-fuzz"), "the publish did not reach the subscriber"
    return up, published


def fuzz_run(server: LiveServer, max_examples: int, label: str, pause_after: float = 0.0) -> None:
    NODE["server"] = server
    subscriber = Subscriber(server, "fuzz-subscriber")
    pid = server.process.pid
    rss_before = rss_kb(pid)
    histogram: collections.Counter = collections.Counter()
    times: list[float] = []
    waited = collections.Counter()
    started = time.monotonic()

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(example=examples())
    def fuzz(example: Example) -> None:
        outcome = exchange(server, example)
        assert server.process.poll() is None, f"the server exited after {example!r}"
        histogram.update(outcome.statuses or ["closed"])
        times.append(outcome.took)
        waited["after EOF" if outcome.shut else "at once"] += 1

    fuzz()
    elapsed = time.monotonic() - started
    time.sleep(pause_after)
    still_serves(server, subscriber)
    rss_after = rss_kb(pid)
    subscriber.sock.close()
    ordered = dict(sorted(histogram.items(), key=lambda kv: str(kv[0])))
    print(
        f"\n{label}: {len(times)} examples in {elapsed:.1f} s; status lines {ordered}; "
        f"{dict(waited)}; max answer time {max(times):.3f} s; "
        f"RSS {rss_before / 1024:.1f} MiB -> {rss_after / 1024:.1f} MiB"
    )
    assert len(times) >= max_examples * 0.9
    assert rss_after - rss_before < 50 * 1024, (rss_before, rss_after)
    # Known, not fixed here: a client that goes away while Django still runs its request (the
    # fuzz's EOF after an unanswered request) can make asgiref raise "ThreadSensitiveContext has
    # exited"; daphne logs it with a traceback and serves on. Any other traceback fails the run.
    log = server.log_path.read_text()
    errors = re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*(.*)", log)
    print(f"{label}: tracebacks in the log: {collections.Counter(errors)}")
    assert all(KNOWN_ERROR in error for error in errors), log[log.find("Traceback") - 300 :][:4000]


@pytest.fixture
def node() -> Iterator[callable]:
    started: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        # The tuned transport's parsers; stock daphne waits on bare-LF heads (docs/reliability.md).
        live = LiveServer(env={"SERVER_FAST_PATHS": "true", **env}).start()
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()
    NODE.clear()


@pytest.mark.timeout(150)
def test_http_parser_fuzz(node) -> None:
    fuzz_run(node(RATE_LIMITER_ENABLED="false"), 300, "limiter off")


@pytest.mark.timeout(90)
def test_http_parser_fuzz_with_the_rate_limiter(node) -> None:
    """Small limits, so the sniffer's and the API's refusal paths run too (X-Forwarded-For is read
    with one trusted hop). The final publish waits out the failed-request window."""
    server = node(
        RATE_LIMITER_ENABLED="true",
        RATE_LIMITER_WS_MAX_REQUESTS="5",
        RATE_LIMITER_WS_WINDOW_SECONDS="60",
        RATE_LIMITER_API_MAX_REQUESTS="5",
        RATE_LIMITER_API_WINDOW_SECONDS="2",
        RATE_LIMITER_TRUST_HOPS="1",
    )
    fuzz_run(server, 100, "limiter on", pause_after=2.5)


def test_bare_lf_head_split_across_writes_is_answered(node) -> None:
    """Found by the fuzz: a non-GET head whose first write holds no line end was handed to daphne
    at once, which then waited for a CRLF the bare-LF head never sends (until daphne's timeout).
    Also the second request of a lean publish connection, when its first write is not a publish."""
    server = node()
    NODE["server"] = server
    publish = f"POST /apps/{server.app_id}/events HTTP/1.1\nHost: x\nContent-Length: 2\n\n{{}}".encode()
    cases = {
        "publish split after one byte": [publish[:1], publish[1:]],
        "POST /up split before the first LF": [b"POST /up HTTP/1.1", b"\nHost: x\n\n"],
        "second request on a publish connection": [
            publish_bytes(server, event_body("split")) + b"GET /up HTTP/1.1",
            b"\nHost: x\n\n",
        ],
    }
    got = {}
    for name, pieces in cases.items():
        requests_ = [Request(b"".join(pieces), False, True)]
        if name.startswith("second"):
            requests_ = [Request(pieces[0][: -len(b"GET /up HTTP/1.1")], False, False), requests_[0]]
        cut = len(pieces[0])
        outcome = exchange(server, Example(requests_, [cut], 0.05))
        got[name] = (outcome.statuses, round(outcome.took, 3))
    print(f"\nbare-LF heads split across writes (status lines, seconds): {got}")
    assert all(statuses and took < 1 for statuses, took in got.values()), got
    assert got["publish split after one byte"][0] == got["POST /up split before the first LF"][0] == [400]
