"""The lean publish channel: keep-alive and pipelined publishes, requests that arrive in pieces, and
the hand-off to daphne's HTTP channel for every other request on the same connection (raw sockets
against a live server, so the bytes on the wire are what is checked)."""

from __future__ import annotations

import json
import socket
import time

from realtime.testing import LiveServer, signed_query
from tests._live import connect, publish, run, subscribed, uid

EVENT_TIMEOUT = 10.0


def publish_request(
    server: LiveServer, channel: str, data: str, extra: bytes = b"", kind: str = "events"
) -> bytes:
    path = f"/apps/{server.app_id}/{kind}"
    if kind == "events":
        body = json.dumps({"name": "probe", "channel": channel, "data": data}).encode()
    else:
        body = json.dumps({"batch": [{"name": "probe", "channel": channel, "data": data}]}).encode()
    query = signed_query("POST", path, server.key, server.secret, body)
    head = (
        f"POST {path}?{query} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    return head + extra + b"\r\n" + body


def get_request(server: LiveServer, path: str) -> bytes:
    query = signed_query("GET", path, server.key, server.secret)
    return f"GET {path}?{query} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode()


class Reader:
    """HTTP/1.1 responses read off one socket (Content-Length or chunked framing)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            assert self._fill(), "connection closed mid-response"
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            assert self._fill(), "connection closed mid-body"
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status = int(self._line().split(b" ")[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if status < 200:
            return status, headers, b""  # an interim answer has no body
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if "chunked" not in headers.get("transfer-encoding", ""):
            while self._fill():  # framed by the close
                pass
            body, self.buffer = self.buffer, b""
            return status, headers, body
        body = b""
        while size := int(self._line(), 16):
            body += self._take(size)
            self._take(2)
        self._line()
        return status, headers, body

    def closed(self) -> bool:
        return not self.buffer and not self._fill()


def open_socket(server: LiveServer) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection((server.host, server.port), timeout=EVENT_TIMEOUT)
    return sock, Reader(sock)


def test_keep_alive_and_pipelined_publishes_are_answered_in_order_and_delivered(server):
    channel = f"pipe-{uid()}"

    async def body():
        client = await connect(server)
        await subscribed(client, channel)
        sock, reader = open_socket(server)
        with sock:
            sock.sendall(publish_request(server, channel, "1"))
            assert reader.response()[0] == 200
            # Three at once, the last a batch, then one more after the answers.
            sock.sendall(
                publish_request(server, channel, "2")
                + publish_request(server, channel, "3")
                + publish_request(server, channel, "4", kind="batch_events")
            )
            answers = [reader.response() for _ in range(3)]
            assert [(status, body) for status, _h, body in answers] == [
                (200, b'{"ok":true}'),
                (200, b'{"ok":true}'),
                (200, b"{}"),
            ]
            sock.sendall(publish_request(server, channel, "5"))
            status, headers, answer = reader.response()
            assert (status, answer) == (200, b'{"ok":true}')
            assert headers["content-type"] == "application/json"
            assert headers["content-length"] == str(len(answer))
            assert "transfer-encoding" not in headers
        received = [(await client.expect("probe", channel))["data"] for _ in range(5)]
        assert received == ["1", "2", "3", "4", "5"]
        await client.close()

    run(body())


def test_a_request_that_arrives_in_pieces_is_served_whole(server):
    request = publish_request(server, f"bytes-{uid()}", "x" * 300)
    sock, reader = open_socket(server)
    with sock:
        for piece in (request[:3], request[3:20], request[20:-50], request[-50:-1], request[-1:]):
            sock.sendall(piece)
            time.sleep(0.02)
        assert reader.response()[:3:2] == (200, b'{"ok":true}')


def test_other_requests_on_the_connection_go_to_daphne_and_are_answered(server):
    channel = f"mixed-{uid()}"
    sock, reader = open_socket(server)
    with sock:
        sock.sendall(publish_request(server, channel, "1"))
        assert reader.response()[0] == 200
        # A GET: daphne takes the connection from here on, publishes included.
        sock.sendall(get_request(server, f"/apps/{server.app_id}/channels"))
        status, _headers, answer = reader.response()
        assert status == 200 and "channels" in json.loads(answer), answer
        sock.sendall(publish_request(server, channel, "2"))
        assert reader.response()[:3:2] == (200, b'{"ok":true}')


def test_publishes_the_channel_does_not_take_get_daphnes_answer(server):
    cases = {
        "chunked body": (b"Transfer-Encoding: chunked\r\n", True),
        "expect": (b"Expect: 100-continue\r\n", False),
        "underscore header": (b"X_Probe: 1\r\n", False),
    }
    for name, (extra, chunked) in cases.items():
        request = publish_request(server, f"other-{uid()}", name, extra)
        if chunked:
            head, _, payload = request.partition(b"\r\n\r\n")
            head = b"\r\n".join(
                line for line in head.split(b"\r\n") if not line.startswith(b"Content-Length")
            )
            request = head + b"\r\n\r\n" + b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
        sock, reader = open_socket(server)
        with sock:
            sock.sendall(request)
            status, _headers, answer = reader.response()
            if status == 100:
                status, _headers, answer = reader.response()
            assert (status, answer) == (200, b'{"ok":true}'), (name, status, answer)


def test_the_lean_answer_has_the_headers_daphne_gives(server):
    """The same publish answered by the channel and (an underscore header makes it hand off) by daphne."""
    answers = []
    for extra in (b"", b"X_Hand_Off: 1\r\n"):
        sock, reader = open_socket(server)
        with sock:
            sock.sendall(publish_request(server, f"same-{uid()}", "x", extra))
            answers.append(reader.response())
    (lean_status, lean_headers, lean_body), (status, headers, answer) = answers
    assert (lean_status, lean_body) == (status, answer) == (200, b'{"ok":true}')
    assert lean_headers == headers, (lean_headers, headers)


def test_http_1_0_and_connection_close_are_answered_and_closed(server):
    for version, extra in ((b"HTTP/1.0", b""), (b"HTTP/1.1", b"Connection: close\r\n")):
        request = publish_request(server, f"close-{uid()}", "x", extra).replace(b"HTTP/1.1", version, 1)
        sock, reader = open_socket(server)
        with sock:
            sock.sendall(request)
            assert reader.response()[:3:2] == (200, b'{"ok":true}')
            assert reader.closed()


def test_bad_heads_and_bodies_get_errors_and_the_server_keeps_serving(server):
    bad = [
        b"POST /apps/x/events HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /apps/x/events HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{",
        b"POST /apps/x/events HTTP/1.1\r\nBad Header\r\nContent-Length: 0\r\n\r\n",
    ]
    for request in bad:
        sock, reader = open_socket(server)
        with sock:
            sock.sendall(request)
            assert reader.response()[0] == 400, request
    # Declared larger than the API's limit (10 MiB): daphne's channel reads it, the API answers 413.
    size = 10 * 1024 * 1024 + 1
    path = f"/apps/{server.app_id}/events"
    head = (
        f"POST {path}?{signed_query('POST', path, server.key, server.secret, b'')} HTTP/1.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    sock, reader = open_socket(server)
    with sock:
        sock.sendall(head + b" " * size)
        assert reader.response()[0] == 413
    # Clients that go away mid-body or mid-head: nobody else notices.
    for partial in (publish_request(server, "gone", "x")[:-5], b"POST /apps/x/ev"):
        sock = socket.create_connection((server.host, server.port))
        sock.sendall(partial)
        sock.close()
    run(publish(server, f"after-{uid()}", "probe", "x"))


def test_a_publish_answered_after_a_stall_within_the_head_timeout(server):
    request = publish_request(server, f"stall-{uid()}", "x")
    sock, reader = open_socket(server)
    with sock:
        sock.sendall(request[:40])
        time.sleep(1.0)
        sock.sendall(request[40:])
        assert reader.response()[:3:2] == (200, b'{"ok":true}')


UNIT_PROBE = """
import asyncio, json
from twisted.internet.testing import StringTransport
from realtime.server.http_channel import PublishChannel

class Server:
    root_path = ""
    server_name = "daphne"
    def __init__(self):
        self.scopes = []
    async def application(self, scope, receive, send):
        message = await receive()
        self.scopes.append(dict(scope, body=message["body"].decode(), headers=[[k.decode(), v.decode()] for k, v in scope["headers"]],
                                raw_path=scope["raw_path"].decode(), query_string=scope["query_string"].decode()))
        await asyncio.sleep(0.01)  # answers complete out of step with the bytes arriving
        text = json.dumps(dict(n=len(self.scopes)), separators=(",", ":")).encode()
        await send(dict(type="http.response.start", status=200, headers=[(b"content-type", b"application/json")]))
        await send(dict(type="http.response.body", body=text))

def request(path, body, extra=b""):
    return (b"POST " + path + b" HTTP/1.1\\r\\nHost: h\\r\\nContent-Length: %d\\r\\n" % len(body) + extra + b"\\r\\n" + body)

async def feed(pieces):
    server, handed = Server(), []
    channel = PublishChannel(server, lambda ch, data: handed.append(data.decode()), 1000)
    transport = StringTransport(peerAddress=type("A", (), dict(host="10.0.0.7", port=5555))(),
                                hostAddress=type("A", (), dict(host="127.0.0.1", port=6001))())
    channel.makeConnection(transport)
    for piece in pieces:
        channel.dataReceived(piece)
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    return dict(scopes=server.scopes, written=transport.value().decode(), handed=handed)

async def main():
    one = request(b"/apps/1/events?auth_key=k&x=%3A", b'{"a":1}', b"X-Forwarded-For: 1.2.3.4\\r\\n")
    two = request(b"/apps/1/batch_events", b'{"batch":[]}')
    get = b"GET /apps/1/channels HTTP/1.1\\r\\n\\r\\n"
    pipelined = await feed([one + two + get])
    bytewise = await feed([bytes([b]) for b in one])
    chunked = await feed([request(b"/apps/1/events", b"", b"Transfer-Encoding: chunked\\r\\n")])
    too_big = await feed([request(b"/apps/1/events", b"x" * 1001)])
    other_path = await feed([request(b"/apps/1/channels/x", b"{}")])
    return dict(pipelined=pipelined, bytewise=bytewise, chunked=chunked, too_big=too_big, other_path=other_path)

print(json.dumps(asyncio.run(main())))
"""


def test_the_channel_builds_daphnes_scope_answers_in_order_and_hands_off_the_rest():
    from tests.test_api_handler import probe

    result = probe(UNIT_PROBE)
    pipelined = result["pipelined"]
    first, second = pipelined["scopes"]
    assert first == {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/apps/1/events",
        "raw_path": "/apps/1/events",
        "root_path": "",
        "scheme": "http",
        "query_string": "auth_key=k&x=%3A",
        "headers": [["host", "h"], ["content-length", "7"], ["x-forwarded-for", "1.2.3.4"]],
        "client": ["10.0.0.7", 5555],
        "server": ["127.0.0.1", 6001],
        "body": '{"a":1}',
    }
    assert (second["path"], second["body"]) == ("/apps/1/batch_events", '{"batch":[]}')
    answer = (
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nserver: daphne\r\ncontent-length: 7\r\n\r\n"
    )
    assert pipelined["written"] == answer + '{"n":1}' + answer + '{"n":2}'
    # The GET after them goes to daphne, byte for byte, once both publishes are answered.
    assert pipelined["handed"] == ["GET /apps/1/channels HTTP/1.1\r\n\r\n"]
    assert [scope["body"] for scope in result["bytewise"]["scopes"]] == ['{"a":1}']
    for name in ("chunked", "other_path"):
        assert result[name]["scopes"] == [] and result[name]["written"] == "", name
        assert len(result[name]["handed"]) == 1 and result[name]["handed"][0].startswith("POST "), name
    # A declared body over the limit is refused here, before any of it is kept.
    too_big = result["too_big"]
    assert too_big["scopes"] == [] and too_big["handed"] == []
    assert too_big["written"].startswith("HTTP/1.1 413 Payload Too Large\r\n")
    assert '"code":"payload_too_large"' in too_big["written"]


def test_a_large_body_within_the_request_limit_is_read_whole_and_answered(server):
    """5 MiB (the request limit is 10 MiB) arriving in many reads: the event is refused as too large
    for an event, in the API's envelope, and the connection goes on serving."""
    request = publish_request(server, f"large-{uid()}", "x" * (5 * 1024 * 1024))
    sock, reader = open_socket(server)
    with sock:
        for offset in range(0, len(request), 256 * 1024):
            sock.sendall(request[offset : offset + 256 * 1024])
        status, _headers, answer = reader.response()
        assert status == 413 and json.loads(answer)["status"] == 413, (status, answer[:200])
        sock.sendall(publish_request(server, f"large-{uid()}", "after"))
        assert reader.response()[:3:2] == (200, b'{"ok":true}')
