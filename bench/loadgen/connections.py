"""The WebSocket side: a small RFC 6455 client speaking Pusher protocol 7, one per socket.

Written on ``asyncio.BufferedProtocol`` with one receive buffer shared by every socket of a
process, and benchmark events recognised by a marker instead of being JSON-decoded, so that one
process can receive around 100k frames per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from realtime.protocol.signatures import sign_channel

if TYPE_CHECKING:
    from .fleet import Fleet

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MARK = b"#lg"  # bench event data: "#lg<seq>:<send monotonic ns>#<padding>"

# One receive buffer per process: asyncio calls get_buffer() and then buffer_updated()
# synchronously, so every socket can share it (leftover partial frames are copied out).
_RBUF = bytearray(1 << 18)
_RMV = memoryview(_RBUF)


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte key, done as one big-integer operation rather than byte by byte."""
    n = len(payload)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    key = random.getrandbits(32).to_bytes(4, "big")
    return head + key + mask_payload(payload, key)


def target_config(args: argparse.Namespace) -> dict:
    """Everything a worker needs to open sockets (plain data, so it survives a fork/pickle)."""
    ws = urlsplit(args.ws_url)
    tls = ws.scheme == "wss"
    port = ws.port or (443 if tls else 80)
    host = ws.hostname or "127.0.0.1"
    if "/app/" in ws.path:
        path = ws.path + (f"?{ws.query}" if ws.query else "")
    else:
        path = f"{ws.path.rstrip('/')}/app/{args.key}?protocol={args.protocol}&client=bench&version=1&flash=false"
    ip = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    default_port = (tls and port == 443) or (not tls and port == 80)
    return {
        "ip": ip,
        "port": port,
        "host": host,
        "host_header": host if default_port else f"{host}:{port}",
        "path": path,
        "tls": tls,
        "insecure": args.insecure,
        "key": args.key,
        "secret": args.secret,
        "connect_timeout": args.connect_timeout,
    }


def make_ssl(insecure: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PusherSocket(asyncio.BufferedProtocol):
    """One Pusher connection: RFC 6455 client (masked frames out, any frames in) + protocol 7."""

    def __init__(self, fleet: Fleet, request: bytes, accept: str) -> None:
        loop = asyncio.get_running_loop()
        self.fleet = fleet
        self.request = request
        self.accept = accept
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.open = False
        self.closing = False
        self.buf = bytearray()
        self.frag: bytearray | None = None
        self.socket_id: str | None = None
        self.established = loop.create_future()  # result: monotonic ns, or None on failure
        self.closed = loop.create_future()
        self.waiters: dict[str, asyncio.Future] = {}  # channel -> future (monotonic ns, or None)
        self.seen = bytearray()  # bitmap of bench sequence numbers received
        self.channel: int | None = None  # index of the subscribed channel (fleet.channels)
        self.gidx = 0

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self.open
        self.open = False
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.established.done():
            self.established.set_result(None)
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()
        if was_open and not self.closing:
            self.fleet.disconnects += 1

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RMV

    def buffer_updated(self, nbytes: int) -> None:
        now = time.monotonic_ns()
        buf = self.buf
        if not self.handshaken:
            buf += _RMV[:nbytes]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail("handshake response too large")
                return
            if not self._check_handshake(bytes(buf[:end]).decode("latin-1")):
                return
            del buf[: end + 4]
            self.handshaken = self.open = True
            if not buf:
                return
            view: Any = buf
            n = len(buf)
        elif buf:
            buf += _RMV[:nbytes]
            view = buf
            n = len(buf)
        else:
            view = _RMV
            n = nbytes
        pos = 0
        while n - pos >= 2:
            b0 = view[pos]
            b1 = view[pos + 1]
            length = b1 & 0x7F
            hdr = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (view[pos + 2] << 8) | view[pos + 3]
                hdr = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
                hdr = 10
            if b1 & 0x80:
                hdr += 4
            end = pos + hdr + length
            if end > n:
                break
            payload = bytes(view[pos + hdr : end])
            if b1 & 0x80:
                payload = mask_payload(payload, bytes(view[pos + hdr - 4 : pos + hdr]))
            pos = end
            opcode = b0 & 0x0F
            if opcode == 1 or opcode == 2:
                if b0 & 0x80:
                    self.on_message(payload, now)
                else:
                    self.frag = bytearray(payload)
            elif opcode == 0:
                if self.frag is None:
                    self._fail("continuation frame without a start")
                    return
                self.frag += payload
                if b0 & 0x80:
                    whole = bytes(self.frag)
                    self.frag = None
                    self.on_message(whole, now)
            elif opcode == 8:
                self.close_now(payload[:2] or b"\x03\xe8")
                return
            elif opcode == 9:
                self._write(ws_frame(10, payload))
            # opcode 10 (pong) and reserved opcodes are ignored
        if buf:
            del buf[:pos]
        elif pos < n:
            buf += view[pos:n]

    def eof_received(self) -> bool | None:
        return None

    # -- protocol ---------------------------------------------------------------------------

    def _check_handshake(self, head: str) -> bool:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            self._fail(f"handshake refused: {lines[0][:80]}")
            return False
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("sec-websocket-accept") != self.accept:
            self._fail("bad Sec-WebSocket-Accept")
            return False
        return True

    def on_message(self, payload: bytes, now: int) -> None:
        if MARK in payload:
            self.fleet.on_bench(self, payload, now)
            return
        try:
            msg = json.loads(payload)
            event = msg.get("event")
            if isinstance(event, str) and event.startswith("sockudo"):  # Protocol V2 spellings
                event = "pusher" + event[len("sockudo") :]
        except (ValueError, AttributeError):
            self.fleet.unparsable += 1
            return
        if event == "pusher_internal:subscription_succeeded":
            fut = self.waiters.pop(msg.get("channel"), None)
            if fut is not None and not fut.done():
                fut.set_result(now)
        elif event == "pusher:connection_established":
            data = msg.get("data")
            try:
                if isinstance(data, str):
                    data = json.loads(data)
                self.socket_id = data["socket_id"]
            except (ValueError, TypeError, KeyError):
                self._fail("connection_established without a socket_id")
                return
            if not self.established.done():
                self.established.set_result(now)
        elif event == "pusher:ping":
            self.send('{"event":"pusher:pong","data":{}}')
        elif event in ("pusher:subscription_error", "pusher:error"):
            self.fleet.note_error(f"{event}: {str(msg.get('data'))[:120]}")
            fut = self.waiters.pop(msg.get("channel"), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            if not self.established.done():
                self.established.set_result(None)

    def send(self, text: str) -> None:
        if self.open:
            self._write(ws_frame(1, text.encode()))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def subscribe(self, channel: str, channel_data: str | None = None) -> asyncio.Future:
        """Send ``pusher:subscribe``; private and presence channels are signed locally with the secret."""
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith(("private-", "presence-")):
            cfg = self.fleet.cfg
            data["auth"] = sign_channel(
                cfg["key"], cfg["secret"], self.socket_id or "", channel, channel_data
            )
        if channel_data is not None:
            data["channel_data"] = channel_data
        fut = asyncio.get_running_loop().create_future()
        self.waiters[channel] = fut
        self.send(json.dumps({"event": "pusher:subscribe", "data": data}))
        return fut

    def unsubscribe(self, channel: str) -> None:
        self.send(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}}))

    def close_now(self, code: bytes = b"\x03\xe8") -> None:
        """Send a close frame (if open) and close the TCP connection."""
        self.closing = True
        if self.open:
            self._write(ws_frame(8, code))
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, why: str) -> None:
        self.fleet.note_error(why)
        self.closing = True
        self.open = False
        if self.transport is not None:
            self.transport.abort()
