#!/usr/bin/env python3
"""Load generator for Pusher-protocol servers (protocol 7 WebSocket + signed HTTP API).

Standard library only (Python >= 3.11). Three scenarios, each bounded in time and count:

* ``fanout``      S subscribers on one channel, one publisher over the HTTP API; throughput, loss,
                  duplicates, end-to-end latency, server CPU per delivery.
* ``connections`` N sockets over C channels; connect rate and latency, server RSS and CPU per
                  connection, then a liveness check (one event per channel reaches every socket).
* ``churn``       M sockets loop subscribe -> subscription_succeeded -> unsubscribe; rate and RTT.

Subscribers can be spread over ``--processes`` worker processes; results are aggregated. Latency
is measured with CLOCK_MONOTONIC (``time.monotonic_ns``), which is system-wide on Linux, so the
publisher (main process) and the receivers (any worker process) read the same clock.

Run ``python bench/loadgen.py <scenario> --help`` for the options; bench/README.md explains the
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import math
import multiprocessing
import os
import random
import resource
import socket
import ssl
import sys
import threading
import time
import uuid
from array import array
from typing import Any
from urllib.parse import quote, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MARK = b"#lg"  # bench event data: "#lg<seq>:<send monotonic ns>#<padding>"
EVENT_NAME = "bench-event"
MAX_SEQ = 50_000_000  # larger sequence numbers are treated as garbage
CLK_TCK = os.sysconf("SC_CLK_TCK")

# One receive buffer per process: asyncio calls get_buffer() and then buffer_updated()
# synchronously, so every socket can share it (leftover partial frames are copied out).
_RBUF = bytearray(1 << 18)
_RMV = memoryview(_RBUF)

# Latency histogram: bucket 0 holds < 1 µs, bucket b >= 1 holds [2**((b-1)/R), 2**(b/R)) µs.
HIST_RES = 64  # buckets per doubling, ~1.1 % wide
HIST_SIZE = HIST_RES * 40
_log2 = math.log2


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    if not QUIET:
        print(msg, file=sys.stderr, flush=True)


QUIET = False


class Hist:
    """Log-bucketed histogram of durations (recorded in ns, reported in ms)."""

    __slots__ = ("buckets", "n", "max_ns")

    def __init__(self) -> None:
        self.buckets = [0] * HIST_SIZE
        self.n = 0
        self.max_ns = 0

    def add(self, ns: int) -> None:
        us = ns / 1000
        b = 0 if us < 1 else int(_log2(us) * HIST_RES) + 1
        self.buckets[b if b < HIST_SIZE else HIST_SIZE - 1] += 1
        self.n += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def wire(self) -> dict:
        return {"b": {i: c for i, c in enumerate(self.buckets) if c}, "n": self.n, "max": self.max_ns}

    def merge(self, wire: dict) -> None:
        for i, c in wire["b"].items():
            self.buckets[int(i)] += c
        self.n += wire["n"]
        self.max_ns = max(self.max_ns, wire["max"])

    def pct_ms(self, p: float) -> float | None:
        if not self.n:
            return None
        rank = max(1, math.ceil(self.n * p / 100))
        seen = 0
        for b, c in enumerate(self.buckets):
            seen += c
            if seen >= rank:
                us = 0.5 if b == 0 else 2 ** ((b - 0.5) / HIST_RES)
                return round(min(us * 1000, self.max_ns) / 1e6, 3)
        return round(self.max_ns / 1e6, 3)

    def max_ms(self) -> float | None:
        return round(self.max_ns / 1e6, 3) if self.n else None


def hmac_hex(secret: str, msg: str) -> str:
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def channel_auth(key: str, secret: str, socket_id: str, channel: str, channel_data: str | None) -> str:
    to_sign = f"{socket_id}:{channel}" if channel_data is None else f"{socket_id}:{channel}:{channel_data}"
    return f"{key}:{hmac_hex(secret, to_sign)}"


def signed_events_path(prefix: str, app_id: str, key: str, secret: str, body: bytes) -> str:
    """Path + query of a Pusher-signed ``POST /apps/{id}/events`` (auth_version 1.0)."""
    path = f"{prefix}/apps/{app_id}/events"
    params = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),  # noqa: S324 - required by the protocol
    }
    to_sign = "POST\n" + path + "\n" + "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["auth_signature"] = hmac_hex(secret, to_sign)
    return path + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def mask_payload(payload: bytes, key: bytes) -> bytes:
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


def proc_cpu_ticks(pids: list[int]) -> int:
    """utime + stime of the given processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def proc_rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def own_cpu() -> tuple[float, float]:
    """This process's (user + system, system) CPU seconds."""
    t = os.times()
    return t.user + t.system, t.system


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def start_watchdog(seconds: float, who: str) -> None:
    def die() -> None:
        print(f"loadgen {who}: watchdog fired after {seconds:.0f} s, exiting", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, die)
    timer.daemon = True
    timer.start()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


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


# --------------------------------------------------------------------------------------------
# WebSocket + Pusher client
# --------------------------------------------------------------------------------------------


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
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith(("private-", "presence-")):
            cfg = self.fleet.cfg
            data["auth"] = channel_auth(
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


# --------------------------------------------------------------------------------------------
# Fleet: the sockets of one process
# --------------------------------------------------------------------------------------------


def presence_data(gidx: int) -> str:
    return json.dumps({"user_id": f"bench-{gidx}", "user_info": {"n": gidx}})


class Fleet:
    """A set of Pusher sockets in one event loop, with delivery accounting.

    Commands (``open``, ``mark``, ``drain``, ``churn``, ``close``) are called directly in the
    main process, or through a pipe by a worker process.
    """

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.ssl = make_ssl(cfg["insecure"]) if cfg["tls"] else None
        self.sockets: list[PusherSocket] = []
        self.channels: list[str] = []
        self.errors: dict[str, int] = {}
        self.disconnects = 0
        self.reset()

    def reset(self) -> None:
        self.counts = array("I")  # seq -> sockets that received it (first copy only)
        self.lat = Hist()
        self.deliveries = 0  # bench frames received (duplicates included)
        self.unique = 0
        self.duplicates = 0
        self.unparsable = 0
        self.first_ns = 0
        self.last_ns = 0
        for s in self.sockets:
            s.seen = bytearray()

    def note_error(self, what: str) -> None:
        if len(self.errors) < 20 or what in self.errors:
            self.errors[what] = self.errors.get(what, 0) + 1

    def on_bench(self, sock: PusherSocket, payload: bytes, now: int) -> None:
        i = payload.find(MARK)
        j = payload.find(b":", i)
        k = payload.find(b"#", j)
        try:
            seq = int(payload[i + 3 : j])
            sent = int(payload[j + 1 : k])
        except ValueError:
            self.unparsable += 1
            return
        if not 0 <= seq < MAX_SEQ:
            self.unparsable += 1
            return
        self.deliveries += 1
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        seen = sock.seen
        byte = seq >> 3
        if byte >= len(seen):
            seen.extend(bytes(byte - len(seen) + 256))
        bit = 1 << (seq & 7)
        if seen[byte] & bit:
            self.duplicates += 1
            return
        seen[byte] |= bit
        counts = self.counts
        if seq >= len(counts):
            counts.frombytes(bytes(4 * (seq - len(counts) + 1024)))
        counts[seq] += 1
        self.unique += 1
        # latency, inlined Hist.add
        lat = self.lat
        ns = now - sent
        us = ns / 1000
        b = 0 if us < 1 else int(_log2(us) * HIST_RES) + 1
        lat.buckets[b if b < HIST_SIZE else HIST_SIZE - 1] += 1
        lat.n += 1
        if ns > lat.max_ns:
            lat.max_ns = ns

    # -- commands ---------------------------------------------------------------------------

    async def _connect(self, gidx: int, channel: int | None, channel_type: str) -> tuple[int, int] | str:
        """Open one socket (and subscribe); (ns to established, ns to subscribed) or an error."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16)).decode()
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324
        request = (
            f"GET {cfg['path']} HTTP/1.1\r\nHost: {cfg['host_header']}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        t0 = time.monotonic_ns()
        sock: PusherSocket | None = None
        try:
            async with asyncio.timeout(cfg["connect_timeout"]):
                kwargs: dict[str, Any] = {}
                if self.ssl is not None:
                    kwargs = {"ssl": self.ssl, "server_hostname": cfg["host"]}
                _, sock = await loop.create_connection(
                    lambda: PusherSocket(self, request, accept), cfg["ip"], cfg["port"], **kwargs
                )
                sock.gidx = gidx
                self.sockets.append(sock)
                t_est = await sock.established
                if t_est is None:
                    sock.close_now()
                    return "closed before connection_established"
                t_sub = t_est
                if channel is not None:
                    name = self.channels[channel]
                    data = presence_data(gidx) if channel_type == "presence" else None
                    t_sub = await sock.subscribe(name, data)
                    if t_sub is None:
                        sock.close_now()
                        return "subscription failed"
                    sock.channel = channel
                return t_est - t0, t_sub - t0
        except TimeoutError:
            if sock is not None:
                sock.close_now()
            return "timeout"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc}"

    async def open(
        self,
        start: int,
        count: int,
        channels: list[str],
        channel_of: str,
        concurrency: int,
        max_seconds: float,
        channel_type: str = "public",
    ) -> dict:
        """Open ``count`` sockets numbered ``start``..; socket g subscribes to channels[g % C]
        (``channel_of="mod"``) or to nothing (``"none"``)."""
        self.channels = channels
        est, ready = Hist(), Hist()
        failures: dict[str, int] = {}
        nxt = iter(range(start, start + count))
        deadline = time.monotonic() + max_seconds
        cpu0 = own_cpu()[0]
        t0 = time.monotonic()

        async def runner() -> None:
            for gidx in nxt:
                if time.monotonic() > deadline:
                    failures["not attempted (--max-seconds)"] = (
                        failures.get("not attempted (--max-seconds)", 0) + 1
                    )
                    continue
                ch = None if channel_of == "none" else gidx % len(channels)
                res = await self._connect(gidx, ch, channel_type)
                if isinstance(res, str):
                    failures[res] = failures.get(res, 0) + 1
                else:
                    est.add(res[0])
                    ready.add(res[1])

        await asyncio.gather(*(runner() for _ in range(max(1, min(concurrency, count)))))
        return {
            "ok": est.n,
            "failures": failures,
            "est": est.wire(),
            "ready": ready.wire(),
            "seconds": time.monotonic() - t0,
            "cpu": own_cpu()[0] - cpu0,
        }

    async def mark(self) -> dict:
        """Start a measurement: reset counters; report live subscribed sockets per channel."""
        self.reset()
        live: dict[int, int] = {}
        for s in self.sockets:
            if s.open and s.channel is not None:
                live[s.channel] = live.get(s.channel, 0) + 1
        self.mark_cpu = own_cpu()
        return {"live": live, "sockets": sum(1 for s in self.sockets if s.open)}

    async def drain(self, expected: int, failed: list[int], max_wait: float, idle: float) -> dict:
        """Wait until ``expected`` first copies of accepted events arrived (bounded), then report."""
        start = time.monotonic()
        last_count, last_change = -1, start
        failed_set = set(failed)

        def got() -> int:
            c = self.counts
            return self.unique - sum(c[s] for s in failed_set if s < len(c))

        while True:
            now = time.monotonic()
            if got() >= expected or now - start >= max_wait:
                break
            if self.deliveries != last_count:
                last_count, last_change = self.deliveries, now
            elif now - last_change >= idle:
                break
            await asyncio.sleep(0.01)
        cpu, sys_cpu = own_cpu()
        return {
            "counts": self.counts.tobytes(),
            "lat": self.lat.wire(),
            "deliveries": self.deliveries,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "unparsable": self.unparsable,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "cpu": cpu - self.mark_cpu[0],
            "sys": sys_cpu - self.mark_cpu[1],
            "disconnects": self.disconnects,
            "errors": self.errors,
        }

    async def churn(
        self, start_at_ns: int, duration: float, channels: list[str], channel_type: str, sub_timeout: float
    ) -> dict:
        """Every open socket loops subscribe -> succeeded -> unsubscribe on channels[g % C]."""
        rtt = Hist()
        fails = {"timeout": 0}
        delay = (start_at_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        end_ns = time.monotonic_ns() + int(duration * 1e9)
        cpu0, sys0 = own_cpu()

        async def loop_one(sock: PusherSocket) -> None:
            name = channels[sock.gidx % len(channels)]
            data = presence_data(sock.gidx) if channel_type == "presence" else None
            while sock.open and time.monotonic_ns() < end_ns:
                t0 = time.monotonic_ns()
                fut = sock.subscribe(name, data)
                try:
                    t1 = await asyncio.wait_for(fut, sub_timeout)
                except TimeoutError:
                    fails["timeout"] += 1
                else:
                    if t1 is not None:
                        rtt.add(t1 - t0)
                    elif sock.open:  # pusher:subscription_error
                        fails["error"] = fails.get("error", 0) + 1
                sock.waiters.pop(name, None)
                sock.unsubscribe(name)

        await asyncio.gather(*(loop_one(s) for s in self.sockets if s.open))
        cpu, sys_cpu = own_cpu()
        return {
            "rtt": rtt.wire(),
            "failures": {k: v for k, v in fails.items() if v},
            "cpu": cpu - cpu0,
            "sys": sys_cpu - sys0,
            "disconnects": self.disconnects,
            "errors": self.errors,
        }

    async def close(self, timeout: float = 5.0) -> dict:
        t0 = time.monotonic()
        socks = [s for s in self.sockets if not s.closed.done()]
        for s in socks:
            s.close_now()
        if socks:
            await asyncio.wait([s.closed for s in socks], timeout=timeout)
        for s in socks:
            if not s.closed.done() and s.transport is not None:
                s.transport.abort()
        self.sockets = []
        return {"seconds": time.monotonic() - t0, "closed": len(socks)}


# --------------------------------------------------------------------------------------------
# worker processes
# --------------------------------------------------------------------------------------------


async def pipe_recv(conn: Any, timeout: float | None) -> Any:
    """Receive from a multiprocessing Connection without blocking the event loop."""
    if not conn.poll():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = conn.fileno()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            loop.remove_reader(fd)
    return conn.recv()


def worker_main(conn: Any, cfg: dict, watchdog: float, quiet: bool) -> None:
    global QUIET
    QUIET = quiet
    raise_nofile()
    start_watchdog(watchdog + 10, f"worker {os.getpid()}")

    async def serve() -> None:
        fleet = Fleet(cfg)
        while True:
            try:
                cmd, kwargs = await pipe_recv(conn, None)
            except (EOFError, OSError):
                await fleet.close(2.0)
                return
            try:
                result = await getattr(fleet, cmd)(**kwargs)
                conn.send(("ok", result))
            except Exception as exc:  # reported to the main process
                conn.send(("err", f"{type(exc).__name__}: {exc}"))
            if cmd == "close":
                return

    asyncio.run(serve())


class LocalFleet:
    def __init__(self, cfg: dict) -> None:
        self.fleet: Fleet | None = None
        self.cfg = cfg

    async def call(self, cmd: str, timeout: float = 600, **kwargs: Any) -> Any:
        if self.fleet is None:
            self.fleet = Fleet(self.cfg)
        return await asyncio.wait_for(getattr(self.fleet, cmd)(**kwargs), timeout)

    def stop(self) -> None:
        pass


class RemoteFleet:
    def __init__(self, ctx: Any, cfg: dict, watchdog: float) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, cfg, watchdog, QUIET), daemon=True)
        self.proc.start()
        child.close()

    async def call(self, cmd: str, timeout: float = 600, **kwargs: Any) -> Any:
        self.conn.send((cmd, kwargs))
        status, result = await pipe_recv(self.conn, timeout)
        if status != "ok":
            raise RuntimeError(f"worker {self.proc.pid}: {cmd} failed: {result}")
        return result

    def stop(self) -> None:
        self.conn.close()  # a worker still waiting for a command sees EOF, closes its sockets, exits
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)


# --------------------------------------------------------------------------------------------
# HTTP publisher (raw HTTP/1.1 keep-alive over asyncio streams)
# --------------------------------------------------------------------------------------------


class HttpConn:
    def __init__(self, args: argparse.Namespace) -> None:
        u = urlsplit(args.http_url)
        self.tls = u.scheme == "https"
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if self.tls else 80)
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.prefix = u.path.rstrip("/")
        self.ssl = make_ssl(args.insecure) if self.tls else None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            if self.writer is None:
                kwargs: dict[str, Any] = {"ssl": self.ssl, "server_hostname": self.host} if self.ssl else {}
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port, **kwargs)
                self.reconnects += 1
            reader = self.reader
            assert reader is not None
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            self.writer.write(head.encode() + body)
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            version, status_s = lines[0].split(" ", 2)[:2]
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip().lower()
            keep = headers.get("connection") != "close" and (
                version != "HTTP/1.0" or headers.get("connection") == "keep-alive"
            )
            if "content-length" in headers:
                data = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                parts = []
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass
                        break
                    parts.append((await reader.readexactly(size + 2))[:-2])
                data = b"".join(parts)
            else:
                data = await reader.read()
                keep = False
            if not keep:
                self.close()
            return int(status_s), data
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def publish(
    args: argparse.Namespace,
    channel_of: Any,
    *,
    duration: float | None,
    count: int | None,
    rate: float,
    concurrency: int,
) -> dict:
    """Trigger bench events (seq 0, 1, ...) until ``duration`` or ``count``; ``rate`` 0 = max."""
    pad = "x" * args.payload_bytes
    status = bytearray()  # seq -> 1 accepted, 2 failed
    http = Hist()
    errors: dict[str, int] = {}
    state = {"next": 0}
    t_start = time.monotonic()
    t_end = t_start + duration if duration else math.inf
    conns = [HttpConn(args) for _ in range(max(1, concurrency))]

    async def worker(conn: HttpConn) -> None:
        while True:
            seq = state["next"]
            if count is not None and seq >= count:
                return
            if rate:
                due = t_start + seq / rate
                if due >= t_end:
                    return
                state["next"] = seq + 1
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                if time.monotonic() >= t_end:
                    return
                state["next"] = seq + 1
            data = f"#lg{seq}:{time.monotonic_ns()}#{pad}"
            body = json.dumps({"name": EVENT_NAME, "channel": channel_of(seq), "data": data}).encode()
            path = signed_events_path(conn.prefix, args.app_id, args.key, args.secret, body)
            t0 = time.monotonic_ns()
            try:
                code, resp = await asyncio.wait_for(conn.request("POST", path, body), args.http_timeout)
                ok = 200 <= code < 300
                why = f"HTTP {code}: {resp[:100].decode('utf-8', 'replace')}"
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"[:120]
            http.add(time.monotonic_ns() - t0)
            if seq >= len(status):
                status.extend(bytes(seq - len(status) + 4096))
            status[seq] = 1 if ok else 2
            if not ok:
                errors[why] = errors.get(why, 0) + 1

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    sent = state["next"]
    accepted = [s for s in range(sent) if status[s] == 1]
    failed = [s for s in range(sent) if status[s] != 1]
    return {
        "sent": sent,
        "accepted": accepted,
        "failed": failed,
        "seconds": time.monotonic() - t_start,
        "http": http,
        "errors": errors,
        "t_start": t_start,
    }


# --------------------------------------------------------------------------------------------
# scenario plumbing
# --------------------------------------------------------------------------------------------


class Server:
    """Optional /proc view of the server process(es) given by --server-pid."""

    def __init__(self, spec: str | None) -> None:
        self.pids = [int(p) for p in spec.split(",") if p.strip()] if spec else []

    def ticks(self) -> int | None:
        return proc_cpu_ticks(self.pids) if self.pids else None

    def rss_kb(self) -> int | None:
        return proc_rss_kb(self.pids) if self.pids else None

    async def wait_idle(self, max_wait: float = 30.0, threshold_pct: float = 10.0) -> None:
        """Wait (bounded) until the server's CPU use is below ``threshold_pct`` of a core."""
        if not self.pids:
            return
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            t0, w0 = self.ticks(), time.monotonic()
            await asyncio.sleep(0.5)
            pct = (self.ticks() - t0) / CLK_TCK / (time.monotonic() - w0) * 100  # type: ignore[operator]
            if pct < threshold_pct:
                return
        log(f"server still busy after {max_wait:.0f} s; measuring anyway")


def cpu_figures(server: Server, ticks0: int | None, wall: float, per: int, per_name: str) -> dict:
    if ticks0 is None:
        return {}
    ticks = server.ticks() - ticks0  # type: ignore[operator]
    secs = ticks / CLK_TCK
    out = {
        "server_cpu_s": round(secs, 3),
        "server_cpu_pct": round(secs / wall * 100, 1) if wall > 0 else None,
    }
    out[f"server_cpu_us_per_{per_name}"] = round(secs * 1e6 / per, 2) if per else None
    return out


def delivery_accounting(marks: list[dict], drains: list[dict], pub: dict, channel_of_seq: Any) -> dict:
    """Lost / unexpected deliveries from per-process first-copy counts."""
    accepted_set = set(pub["accepted"])
    expected = lost = unexpected = 0
    for mark, dr in zip(marks, drains, strict=True):
        live = {int(k): v for k, v in mark["live"].items()}
        counts = array("I")
        counts.frombytes(dr["counts"])
        for s in pub["accepted"]:
            want = live.get(channel_of_seq(s), 0)
            got = counts[s] if s < len(counts) else 0
            expected += want
            if got < want:
                lost += want - got
            else:
                unexpected += got - want
        for s, c in enumerate(counts):
            if c and s not in accepted_set:
                unexpected += c
        unexpected += dr["unparsable"]
    return {"expected": expected, "lost": lost, "unexpected": unexpected}


def merge_errors(parts: list[dict]) -> dict:
    out: dict[str, int] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + v
    return out


def emit(args: argparse.Namespace, title: str, rows: list[tuple[str, Any]], result: dict) -> int:
    if not args.json and rows:
        width = max(len(r[0]) for r in rows)
        print(f"\n{title}")
        print("-" * (width + 22))
        for label, value in rows:
            if isinstance(value, float):
                value = f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
            elif isinstance(value, int):
                value = f"{value:,}"
            print(f"{label:<{width}}  {'-' if value is None else value}")
        print()
    if args.label:
        result = {"label": args.label, **result}
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0


def make_fleets(args: argparse.Namespace, cfg: dict, watchdog: float) -> list:
    if args.processes <= 1:
        return [LocalFleet(cfg)]
    ctx = multiprocessing.get_context("fork")
    return [RemoteFleet(ctx, cfg, watchdog) for _ in range(args.processes)]


def channel_name(args: argparse.Namespace, base: str) -> str:
    prefix = {"public": "", "private": "private-", "presence": "presence-"}[args.channel_type]
    return f"{prefix}{base}"


async def open_all(
    args: argparse.Namespace, fleets: list, total: int, channels: list[str], channel_of: str, concurrency: int
) -> tuple[list[dict], float]:
    shares = split(total, len(fleets))
    starts = [sum(shares[:i]) for i in range(len(shares))]
    per_conc = max(1, math.ceil(concurrency / len(fleets)))
    t0 = time.monotonic()
    res = await asyncio.gather(
        *(
            f.call(
                "open",
                timeout=args.max_seconds + args.connect_timeout + 30,
                start=st,
                count=n,
                channels=channels,
                channel_of=channel_of,
                concurrency=per_conc,
                max_seconds=args.max_seconds,
                channel_type=args.channel_type,
            )
            for f, st, n in zip(fleets, starts, shares, strict=True)
        )
    )
    return res, time.monotonic() - t0


def gen_cpu(main_cpu0: tuple[float, float], parts: list[dict], local: bool) -> tuple[float, float]:
    cpu, sys_cpu = own_cpu()
    total, total_sys = cpu - main_cpu0[0], sys_cpu - main_cpu0[1]
    if not local:  # worker processes report their own CPU
        total += sum(p["cpu"] for p in parts)
        total_sys += sum(p["sys"] for p in parts)
    return total, total_sys


def cells(*values: Any) -> str:
    return " / ".join("-" if v is None else str(v) for v in values)


async def no_sockets(args: argparse.Namespace, fleets: list, scenario: str, failures: dict) -> int:
    await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    print(f"{scenario}: no socket connected: {failures}", file=sys.stderr)
    emit(args, "", [], {"scenario": scenario, "error": "no socket connected", "failures": failures})
    return 1


def pct(x: float, wall: float) -> float | None:
    return round(x / wall * 100, 1) if wall > 0 else None


# --------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------


async def scenario_fanout(args: argparse.Namespace, fleets: list, server: Server) -> int:
    run = uuid.uuid4().hex[:8]
    channel = channel_name(args, f"bench-fanout-{run}")
    log(f"fanout: opening {args.subscribers} subscribers on {channel} over {len(fleets)} process(es)")
    opened, connect_s = await open_all(
        args, fleets, args.subscribers, [channel], "mod", args.connect_concurrency
    )
    ok = sum(o["ok"] for o in opened)
    failures = merge_errors([o["failures"] for o in opened])
    if failures:
        log(f"fanout: connect failures {failures}")
    if not ok:
        return await no_sockets(args, fleets, "fanout", failures)
    await asyncio.sleep(0.3)
    await server.wait_idle()
    marks = await asyncio.gather(*(f.call("mark") for f in fleets))
    ticks0, main0, w0 = server.ticks(), own_cpu(), time.monotonic()
    log(
        f"fanout: publishing for {args.duration} s (rate {args.rate or 'max'}, concurrency {args.concurrency})"
    )
    pub = await publish(
        args,
        lambda s: channel,
        duration=args.duration,
        count=args.max_events,
        rate=args.rate,
        concurrency=args.concurrency,
    )
    n_acc = len(pub["accepted"])
    log(f"fanout: {n_acc} events accepted, draining (up to {args.drain} s)")
    drains = await asyncio.gather(
        *(
            f.call(
                "drain",
                timeout=args.drain + 30,
                expected=n_acc * m["live"].get(0, 0),
                failed=pub["failed"],
                max_wait=args.drain,
                idle=args.drain_idle,
            )
            for f, m in zip(fleets, marks, strict=True)
        )
    )
    wall = time.monotonic() - w0
    local = isinstance(fleets[0], LocalFleet)
    g_cpu, g_sys = gen_cpu(main0, drains, local)
    acc = delivery_accounting(marks, drains, pub, lambda s: 0)
    deliveries = sum(d["unique"] for d in drains)
    duplicates = sum(d["duplicates"] for d in drains)
    lat = Hist()
    for d in drains:
        lat.merge(d["lat"])
    last_ns = max((d["last_ns"] for d in drains), default=0)
    span = (last_ns / 1e9 - pub["t_start"]) if last_ns else 0
    result: dict[str, Any] = {
        "scenario": "fanout",
        "subscribers": args.subscribers,
        "subscribed": ok,
        "connect_failures": sum(failures.values()),
        "processes": len(fleets),
        "rate": args.rate,
        "concurrency": args.concurrency,
        "payload_bytes": args.payload_bytes,
        "connect_s": round(connect_s, 3),
        "events_sent": pub["sent"],
        "events": n_acc,
        "events_failed": len(pub["failed"]),
        "publish_s": round(pub["seconds"], 3),
        "events_per_s": round(n_acc / max(pub["seconds"], args.duration or 0), 1) if pub["seconds"] else None,
        "deliveries": deliveries,
        "expected": acc["expected"],
        "deliveries_per_s": round(deliveries / span, 1) if span > 0 else None,
        "lost": acc["lost"],
        "lost_pct": round(acc["lost"] / acc["expected"] * 100, 3) if acc["expected"] else 0.0,
        "duplicates": duplicates,
        "unexpected": acc["unexpected"],
        "disconnects": sum(d["disconnects"] for d in drains),
        "lat_p50_ms": lat.pct_ms(50),
        "lat_p95_ms": lat.pct_ms(95),
        "lat_p99_ms": lat.pct_ms(99),
        "lat_max_ms": lat.max_ms(),
        "http_p50_ms": pub["http"].pct_ms(50),
        "http_p99_ms": pub["http"].pct_ms(99),
        "window_s": round(wall, 3),
        **cpu_figures(server, ticks0, wall, deliveries, "delivery"),
        "gen_cpu_pct": pct(g_cpu, wall),
        "gen_sys_pct": pct(g_sys, wall),
    }
    errors = merge_errors([pub["errors"]] + [d["errors"] for d in drains])
    if errors:
        result["errors"] = dict(list(errors.items())[:10])
    await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    rows = [
        ("subscribers (subscribed)", f"{args.subscribers} ({ok})"),
        ("connect time s", result["connect_s"]),
        ("events accepted (failed)", f"{n_acc} ({len(pub['failed'])})"),
        ("events accepted/s", result["events_per_s"]),
        ("deliveries / expected", f"{deliveries} / {acc['expected']}"),
        ("deliveries/s", result["deliveries_per_s"]),
        ("lost / duplicates / unexpected", f"{acc['lost']} / {duplicates} / {acc['unexpected']}"),
        (
            "latency p50/p95/p99/max ms",
            cells(result["lat_p50_ms"], result["lat_p95_ms"], result["lat_p99_ms"], result["lat_max_ms"]),
        ),
        ("HTTP publish p50/p99 ms", cells(result["http_p50_ms"], result["http_p99_ms"])),
        ("server CPU %", result.get("server_cpu_pct")),
        ("server CPU µs/delivery", result.get("server_cpu_us_per_delivery")),
        ("generator CPU % (sys %)", f"{result['gen_cpu_pct']} ({result['gen_sys_pct']})"),
    ]
    return emit(
        args,
        f"fanout: {args.subscribers} subscribers, rate {args.rate or 'max'}, {args.duration} s",
        rows,
        result,
    )


async def scenario_connections(args: argparse.Namespace, fleets: list, server: Server) -> int:
    run = uuid.uuid4().hex[:8]
    channels = [channel_name(args, f"bench-conn-{run}-{i}") for i in range(args.channels)]
    await server.wait_idle()
    rss0, ticks0, main0 = server.rss_kb(), server.ticks(), own_cpu()
    log(f"connections: opening {args.connections} sockets over {args.channels} channels")
    opened, connect_s = await open_all(args, fleets, args.connections, channels, "mod", args.concurrency)
    ok = sum(o["ok"] for o in opened)
    connect_cpu = cpu_figures(server, ticks0, connect_s, ok, "connect")
    local = isinstance(fleets[0], LocalFleet)
    g_cpu = own_cpu()[0] - main0[0] + (0 if local else sum(o["cpu"] for o in opened))
    failures = merge_errors([o["failures"] for o in opened])
    if not ok:
        return await no_sockets(args, fleets, "connections", failures)
    est, ready = Hist(), Hist()
    for o in opened:
        est.merge(o["est"])
        ready.merge(o["ready"])
    await asyncio.sleep(1.0)
    await server.wait_idle()
    rss1 = server.rss_kb()
    # liveness: one event per channel; every subscribed socket must receive its channel's event
    marks = await asyncio.gather(*(f.call("mark") for f in fleets))
    log("connections: liveness check (one event per channel)")
    pub = await publish(
        args,
        lambda s: channels[s],
        duration=None,
        count=args.channels,
        rate=0,
        concurrency=min(16, args.channels),
    )
    drains = await asyncio.gather(
        *(
            f.call(
                "drain",
                timeout=args.drain + 30,
                expected=sum(m["live"].get(s, 0) for s in pub["accepted"]),
                failed=pub["failed"],
                max_wait=args.drain,
                idle=args.drain_idle,
            )
            for f, m in zip(fleets, marks, strict=True)
        )
    )
    acc = delivery_accounting(marks, drains, pub, lambda s: s)
    still_open = sum(m["sockets"] for m in marks)
    closed = await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    close_s = max(c["seconds"] for c in closed)
    result: dict[str, Any] = {
        "scenario": "connections",
        "connections": args.connections,
        "channels": args.channels,
        "processes": len(fleets),
        "concurrency": args.concurrency,
        "connected": ok,
        "failures": sum(failures.values()),
        "connect_s": round(connect_s, 3),
        "connects_per_s": round(ok / connect_s, 1) if connect_s else None,
        "connect_p50_ms": est.pct_ms(50),
        "connect_p99_ms": est.pct_ms(99),
        "connect_max_ms": est.max_ms(),
        "subscribed_p50_ms": ready.pct_ms(50),
        "subscribed_p99_ms": ready.pct_ms(99),
        **connect_cpu,
        "gen_cpu_pct": pct(g_cpu, connect_s),
        "open_after_connect": still_open,
        "liveness_events": len(pub["accepted"]),
        "liveness_expected": acc["expected"],
        "liveness_missing": acc["lost"],
        "liveness_unexpected": acc["unexpected"],
        "disconnects": sum(d["disconnects"] for d in drains),
        "close_s": round(close_s, 3),
    }
    if rss0 is not None and rss1 is not None:
        result.update(
            server_rss_before_kb=rss0,
            server_rss_after_kb=rss1,
            rss_per_conn_kb=round((rss1 - rss0) / ok, 2) if ok else None,
        )
    errors = merge_errors([failures, pub["errors"]] + [d["errors"] for d in drains])
    if errors:
        result["errors"] = dict(list(errors.items())[:10])
    rows = [
        ("connections (connected)", f"{args.connections} ({ok})"),
        ("failures", result["failures"]),
        ("connect time s", result["connect_s"]),
        ("connects/s", result["connects_per_s"]),
        (
            "connect p50/p99/max ms",
            cells(result["connect_p50_ms"], result["connect_p99_ms"], result["connect_max_ms"]),
        ),
        ("subscribed p50/p99 ms", cells(result["subscribed_p50_ms"], result["subscribed_p99_ms"])),
        ("server RSS before/after KB", f"{rss0} / {rss1}" if rss0 is not None else None),
        ("server RSS per connection KB", result.get("rss_per_conn_kb")),
        ("server CPU µs/connect", result.get("server_cpu_us_per_connect")),
        ("liveness missing / expected", f"{acc['lost']} / {acc['expected']}"),
        ("close time s", result["close_s"]),
        ("generator CPU % (connect)", result["gen_cpu_pct"]),
    ]
    return emit(args, f"connections: {args.connections} sockets, {args.channels} channels", rows, result)


async def scenario_churn(args: argparse.Namespace, fleets: list, server: Server) -> int:
    run = uuid.uuid4().hex[:8]
    channels = [channel_name(args, f"bench-churn-{run}-{i}") for i in range(args.channels)]
    log(f"churn: opening {args.sockets} sockets")
    opened, connect_s = await open_all(args, fleets, args.sockets, channels, "none", args.connect_concurrency)
    ok = sum(o["ok"] for o in opened)
    failures = merge_errors([o["failures"] for o in opened])
    if not ok:
        return await no_sockets(args, fleets, "churn", failures)
    await asyncio.sleep(0.3)
    await server.wait_idle()
    ticks0, main0, w0 = server.ticks(), own_cpu(), time.monotonic()
    start_at = time.monotonic_ns() + int(0.2e9)
    log(f"churn: subscribe/unsubscribe loop for {args.duration} s")
    parts = await asyncio.gather(
        *(
            f.call(
                "churn",
                timeout=args.duration + args.sub_timeout + 30,
                start_at_ns=start_at,
                duration=args.duration,
                channels=channels,
                channel_type=args.channel_type,
                sub_timeout=args.sub_timeout,
            )
            for f in fleets
        )
    )
    wall = time.monotonic() - w0 - 0.2
    local = isinstance(fleets[0], LocalFleet)
    g_cpu, g_sys = gen_cpu(main0, parts, local)
    rtt = Hist()
    for p in parts:
        rtt.merge(p["rtt"])
    sub_failures = merge_errors([p["failures"] for p in parts])
    await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    result: dict[str, Any] = {
        "scenario": "churn",
        "sockets": args.sockets,
        "connected": ok,
        "connect_failures": sum(failures.values()),
        "channels": args.channels,
        "channel_type": args.channel_type,
        "processes": len(fleets),
        "duration_s": args.duration,
        "subscribes": rtt.n,
        "subscribe_failures": sum(sub_failures.values()),
        "subscribes_per_s": round(rtt.n / args.duration, 1),
        "sub_p50_ms": rtt.pct_ms(50),
        "sub_p99_ms": rtt.pct_ms(99),
        "sub_max_ms": rtt.max_ms(),
        "disconnects": sum(p["disconnects"] for p in parts),
        **cpu_figures(server, ticks0, wall, rtt.n, "subscribe"),
        "gen_cpu_pct": pct(g_cpu, wall),
    }
    errors = merge_errors([failures] + [p["errors"] for p in parts])
    if errors:
        result["errors"] = dict(list(errors.items())[:10])
    rows = [
        ("sockets (connected)", f"{args.sockets} ({ok})"),
        ("subscribes (failures)", f"{rtt.n} ({result['subscribe_failures']})"),
        ("subscribes/s", result["subscribes_per_s"]),
        (
            "subscribe RTT p50/p99/max ms",
            cells(result["sub_p50_ms"], result["sub_p99_ms"], result["sub_max_ms"]),
        ),
        ("server CPU %", result.get("server_cpu_pct")),
        ("server CPU µs/subscribe", result.get("server_cpu_us_per_subscribe")),
        ("generator CPU %", result["gen_cpu_pct"]),
    ]
    return emit(
        args,
        f"churn: {args.sockets} sockets, {args.channels} {args.channel_type} channel(s), {args.duration} s",
        rows,
        result,
    )


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("target")
    g.add_argument("--ws-url", default="ws://127.0.0.1:6001", help="server base URL (ws:// or wss://)")
    g.add_argument(
        "--protocol", type=int, default=7, help="7 = Pusher protocol (V1), 2 = Sockudo Protocol V2"
    )
    g.add_argument("--http-url", default="http://127.0.0.1:6001", help="HTTP API base URL")
    g.add_argument("--app-id", default="1001")
    g.add_argument("--key", default="app-key")
    g.add_argument("--secret", default="app-secret")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    g.add_argument("--server-pid", help="server PID(s), comma-separated: CPU and RSS from /proc")
    g = common.add_argument_group("run")
    g.add_argument("--processes", type=int, default=1, help="worker processes holding the sockets")
    g.add_argument("--channel-type", choices=["public", "private", "presence"], default="public")
    g.add_argument("--connect-timeout", type=float, default=10.0, help="per socket (s)")
    g.add_argument("--max-seconds", type=float, default=120.0, help="bound of the connect phase (s)")
    g.add_argument("--drain", type=float, default=10.0, help="max wait for outstanding deliveries (s)")
    g.add_argument(
        "--drain-idle", type=float, default=3.0, help="stop draining after this long without a delivery (s)"
    )
    g.add_argument("--http-timeout", type=float, default=10.0, help="per publish request (s)")
    g.add_argument("--payload-bytes", type=int, default=0, help="padding added to each event's data")
    g.add_argument("--json", action="store_true", help="print only the JSON result line")
    g.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    g.add_argument("--label", help="added to the JSON line (e.g. the server's name)")

    p = argparse.ArgumentParser(prog="loadgen.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="scenario", required=True)
    f = sub.add_parser("fanout", parents=[common], help="one channel, many subscribers, HTTP publisher")
    f.add_argument("--subscribers", type=int, default=1000)
    f.add_argument("--rate", type=float, default=0, help="events/s; 0 = as fast as the server accepts")
    f.add_argument("--duration", type=float, default=10.0, help="publishing time (s)")
    f.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight")
    f.add_argument("--max-events", type=int, default=None, help="stop publishing after this many events")
    f.add_argument("--connect-concurrency", type=int, default=100)
    c = sub.add_parser("connections", parents=[common], help="open many sockets, check liveness, close")
    c.add_argument("--connections", type=int, default=10000)
    c.add_argument("--channels", type=int, default=100)
    c.add_argument("--concurrency", type=int, default=100, help="connects in flight")
    ch = sub.add_parser("churn", parents=[common], help="subscribe/unsubscribe loop")
    ch.add_argument("--sockets", type=int, default=100)
    ch.add_argument("--channels", type=int, default=1)
    ch.add_argument("--duration", type=float, default=10.0)
    ch.add_argument("--sub-timeout", type=float, default=5.0, help="max wait for subscription_succeeded (s)")
    ch.add_argument("--connect-concurrency", type=int, default=100)
    args = p.parse_args(argv)
    if args.scenario == "fanout" and args.max_events is None and args.duration <= 0:
        p.error("--duration must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    global QUIET
    args = parse_args(argv)
    QUIET = args.quiet or args.json
    nofile = raise_nofile()
    need = {"fanout": "subscribers", "connections": "connections", "churn": "sockets"}[args.scenario]
    if getattr(args, need) + 100 > nofile * max(1, args.processes):
        log(f"warning: open-files limit {nofile} may be too low for {getattr(args, need)} sockets")
    watchdog = args.max_seconds + args.connect_timeout + getattr(args, "duration", 0) + args.drain + 60
    server = Server(args.server_pid)
    try:
        server.ticks()
    except (OSError, IndexError, ValueError) as exc:
        print(f"cannot read /proc for --server-pid {args.server_pid}: {exc}", file=sys.stderr)
        return 2
    cfg = target_config(args)
    fleets = make_fleets(args, cfg, watchdog)  # forked before any event loop or thread exists
    start_watchdog(watchdog, "main")
    scenario = {"fanout": scenario_fanout, "connections": scenario_connections, "churn": scenario_churn}
    try:
        return asyncio.run(scenario[args.scenario](args, fleets, server))
    finally:
        for f in fleets:
            f.stop()


if __name__ == "__main__":
    sys.exit(main())
