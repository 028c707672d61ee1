"""A lean HTTP/1.1 channel for the API's publishes, in front of daphne's HTTP channel.

Twisted's HTTP server and daphne's request object cost about half of a publish's CPU (py-spy):
header objects, a content file, deferreds, a per-request timeout, the response's header
serialisation and keep-alive bookkeeping. A backend's SDK sends its publishes on a keep-alive
connection, each a ``POST /apps/{id}/events`` (or ``/batch_events``) with a ``Content-Length``;
this channel serves exactly those requests itself: it reads the head and body, calls the same ASGI
application with the scope daphne would have built, and writes the answer in one ``write``.

At the first request it does not take (another method or path, HTTP/1.0, ``Connection: close``,
``Expect``, chunked bodies, anything unusual in the head, TLS), it hands the
connection, with every byte not yet served, to daphne's HTTP channel for good, as the WebSocket
sniffer does; daphne then answers as it always has, errors included. Two requests are answered
here without daphne: a ``Content-Length`` over the body limit gets 413 before any of the body is
kept, and a head with bare-LF line ends gets 400 (both then close).
"""

from __future__ import annotations

import asyncio
import logging
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from twisted.internet import interfaces, protocol, reactor

from realtime.server import refusal
from realtime.server.outlets import plain_tcp, write_through

log = logging.getLogger(__name__)

# What a header name may be (RFC 9110 token) and what a value may not contain, as daphne checks.
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
FORBIDDEN_IN_VALUE = re.compile(rb"[\x00\r\n]")
PUBLISH_TARGET = re.compile(rb"/apps/[^/?#\s]+/(?:batch_)?events/?(?:\?[^#\s]*)?")
# Bodies framed otherwise, interim answers, protocol switches, daphne's root-path override.
NOT_TAKEN = frozenset((b"transfer-encoding", b"expect", b"upgrade", b"daphne-root-path"))
MAX_HEAD = 16384
HEAD_TIMEOUT = 10.0  # a request started must arrive whole within this long
MAX_PIPELINED = 1 << 22  # bytes queued behind the request being served before the peer is cut off
_DISCONNECT = {"type": "http.disconnect"}


def takes(head: bytes) -> bool:
    """Whether a connection whose first request starts with ``head`` begins here."""
    return head[:11].lower() == b"post /apps/"


class PublishChannel(protocol.Protocol):
    """Serves publishes one request at a time (pipelined ones wait their turn).

    ``server`` is daphne's ``Server`` (its ASGI application, root path and name); ``hand_off`` is
    called with this channel and the unserved bytes when daphne must take the connection over.
    """

    def __init__(self, server: Any, hand_off: Any, max_body: int) -> None:
        self.server = server
        self.hand_off = hand_off
        self.max_body = max_body
        self.buffer = bytearray()  # grows in place: a large body arrives in many reads
        self.awaiting = 0  # buffered bytes the request being read needs before it is whole
        self.serving = False
        self.lost = False
        self.handed_off = False
        self.timer: Any = None
        self.disconnected: asyncio.Future | None = None

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        transport = self.transport
        peer, host = transport.getPeer(), transport.getHost()
        self.client = [str(peer.host), peer.port] if hasattr(peer, "port") else None
        self.server_addr = [str(host.host), host.port] if hasattr(host, "port") else None
        self.secure = interfaces.ISSLTransport.providedBy(transport)
        self.direct = plain_tcp(transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.handed_off:
            return
        self.buffer += data
        if self.serving:
            if len(self.buffer) > MAX_PIPELINED:
                self.transport.abortConnection()
            return
        if len(self.buffer) >= self.awaiting:
            self._next()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        self.lost = True
        self._stop_timer()
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)

    # -- requests --------------------------------------------------------------------------------
    def _next(self) -> None:
        """Serve the next whole request in the buffer, wait for the rest of it, or hand off."""
        buffer = self.buffer
        if not buffer or self.handed_off:
            self._stop_timer()
            return
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if refusal.bare_lf(buffer):
                self._refuse(refusal.BAD_REQUEST)
            elif len(buffer) >= MAX_HEAD:
                self._give_up()
            else:
                self._start_timer()
            return
        request = self._parse(bytes(buffer[:end]))
        if request is None:
            self._give_up()
            return
        target, headers, length = request
        if length > self.max_body:
            self._refuse(refusal.too_large(self.max_body))  # before a byte of the body is kept
            return
        start = end + 4
        if len(buffer) - start < length:
            self.awaiting = start + length
            self._start_timer()
            return
        self._stop_timer()
        self.awaiting = 0
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._serve(target, headers, body)

    def _parse(self, head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], int] | None:
        """(target, headers, body length) of a request this channel takes; None for any other."""
        if self.secure:
            return None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[0] != b"POST" or parts[2] != b"HTTP/1.1":
            return None
        target = parts[1]
        if not PUBLISH_TARGET.fullmatch(target) or not target.isascii():
            return None
        headers = []
        length = None
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not TOKEN.fullmatch(name) or b"_" in name or FORBIDDEN_IN_VALUE.search(value):
                return None  # also an obsolete folded line, which starts with a space
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return None
                length = int(value)
            elif name in NOT_TAKEN or (name == b"connection" and value.lower() != b"keep-alive"):
                return None
            headers.append((name, value))
        if length is None:
            return None
        return target, headers, length

    def _serve(self, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        path, _, query = target.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "root_path": self.server.root_path,
            "scheme": "http",
            "query_string": query,
            "headers": headers,
            "client": self.client,
            "server": self.server_addr,
        }
        exchange = _Exchange(self, body)
        self.serving = True
        instance = self.server.application(scope=scope, receive=exchange.receive, send=exchange.send)
        task = asyncio.ensure_future(instance)
        task.add_done_callback(exchange.finished)

    def _answered(self) -> None:
        """The response went out: the next pipelined request may start."""
        self.serving = False
        if not self.lost:
            self._next()

    def _give_up(self) -> None:
        """daphne's HTTP channel takes the connection and every byte not served yet."""
        self._stop_timer()
        self.handed_off = True
        data, self.buffer = bytes(self.buffer), bytearray()
        self.hand_off(self, data)

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` in the transport's name and close (``refusal.refuse``)."""
        self._stop_timer()
        self.handed_off = True
        self.buffer = bytearray()
        refusal.refuse(self.transport, response)

    def wait_disconnect(self) -> asyncio.Future:
        if self.disconnected is None:
            self.disconnected = asyncio.get_running_loop().create_future()
            if self.lost:
                self.disconnected.set_result(None)
        return self.disconnected

    def _start_timer(self) -> None:
        if self.timer is None:
            self.timer = reactor.callLater(HEAD_TIMEOUT, self.transport.abortConnection)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None


class _Exchange:
    """One request's ASGI ``receive`` and ``send``: the body once, then a disconnect when it comes."""

    __slots__ = ("channel", "body", "status", "headers", "chunks", "done")

    def __init__(self, channel: PublishChannel, body: bytes) -> None:
        self.channel = channel
        self.body: bytes | None = body
        self.status: int | None = None
        self.headers: list = []
        self.chunks: list[bytes] = []
        self.done = False

    async def receive(self) -> dict:
        body = self.body
        if body is not None:
            self.body = None
            return {"type": "http.request", "body": body, "more_body": False}
        # Shielded: a caller that stops listening (Django cancels its watcher) must not cancel
        # the connection's one disconnect future for the requests that follow.
        await asyncio.shield(self.channel.wait_disconnect())
        return _DISCONNECT

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.status is not None:
                raise ValueError("HTTP response has already been started")
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            if self.status is None:
                raise ValueError("HTTP response has not yet been started")
            if self.done:
                return
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
                self._write()

    def _write(self) -> None:
        channel = self.channel
        if channel.lost:
            return
        body = b"".join(self.chunks)
        self.chunks = []
        names = {name.lower() for name, _ in self.headers}
        lines = [b"HTTP/1.1 %d %s" % (self.status, _reason(self.status))]
        lines.extend(name + b": " + value for name, value in self.headers)
        if b"server" not in names and channel.server.server_name:
            lines.append(b"server: " + channel.server.server_name.encode())
        if b"content-length" not in names:
            lines.append(b"content-length: %d" % len(body))
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        if channel.direct:
            write_through(channel.transport, data)
        else:
            channel.transport.write(data)
        # The next request starts after the application returns (``finished``).

    def finished(self, task: asyncio.Task) -> None:
        channel = self.channel
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("publish request failed", exc_info=error)
        if not self.done:
            # The application ended without a whole response: 500, as daphne answers, and the
            # connection closes (its framing can no longer be trusted).
            if not channel.lost:
                if self.status is None:
                    text = b"Internal Server Error"
                    channel.transport.write(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(text), text)
                    )
                channel.transport.loseConnection()
            channel.lost = True
            return
        channel._answered()


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"
