"""Answers the transport gives before (or instead of) the application: oversized bodies (413) and
malformed heads (400), each followed by a lingering close.

A client still sending a body it was refused would get a TCP reset if the socket were closed with
its bytes unread, and a reset may destroy the answer before the client reads it. So after the
answer the write side is shut (the client reads the answer, then end of stream) and whatever else
arrives is read and dropped, never kept, for at most ``LINGER`` seconds; then the connection is
aborted.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import protocol, reactor
from twisted.protocols.policies import ProtocolWrapper

LINGER = 2.0  # seconds a refused client may keep sending (dropped unread) before the abort

BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 11\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"Bad Request"
)


def too_large(limit: int) -> bytes:
    """The 413 answer to a body over ``limit`` bytes (the API's error envelope)."""
    body = json.dumps(
        {
            "error": f"Request body is larger than {limit >> 20} MiB",
            "code": "payload_too_large",
            "status": 413,
        },
        separators=(",", ":"),
    ).encode()
    return (
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


def bare_lf(data: bytes) -> bool:
    """Whether the request head at the start of ``data`` (whole or not) ends a line with LF alone:
    such requests are answered 400 at once (RFC 9112 §2.2 allows it), where Twisted would wait for
    a CRLF that never comes."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 4]
    return head.count(b"\n") != head.count(b"\r\n")


class _Drain(protocol.Protocol):
    """Reads and drops what a refused client still sends, until it closes or ``LINGER`` passes."""

    def __init__(self) -> None:
        self.timer: Any = None

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.timer = reactor.callLater(LINGER, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        pass

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        if self.timer is not None and self.timer.active():
            self.timer.cancel()


def refuse(transport: Any, response: bytes) -> None:
    """Write ``response``, shut the write side and drop further input (a lingering close).

    The transport's protocol becomes a ``_Drain``: whatever protocol had it gets no more data."""
    transport.write(response)
    drain = _Drain()
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = drain
    else:
        transport.protocol = drain
    drain.makeConnection(transport)
    half_close = getattr(transport, "loseWriteConnection", None)
    if isinstance(transport, ProtocolWrapper) or half_close is None:
        transport.loseConnection()  # TLS: its close notification ends the stream
    else:
        half_close()
