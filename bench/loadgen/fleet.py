"""The sockets of one process and their delivery accounting.

A fleet lives in one event loop, either the main process's or a worker's; its commands take and
return plain data so the same code serves both (see ``workers``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import time
from array import array
from typing import Any

from .connections import MARK, WS_GUID, PusherSocket, make_ssl
from .proc import own_cpu
from .report import HIST_RES, HIST_SIZE, Hist

MAX_SEQ = 50_000_000  # larger sequence numbers are treated as garbage
_log2 = math.log2


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
        """Count an error by reason; at most 20 distinct reasons, so a storm stays readable."""
        if len(self.errors) < 20 or what in self.errors:
            self.errors[what] = self.errors.get(what, 0) + 1

    def on_bench(self, sock: PusherSocket, payload: bytes, now: int) -> None:
        """A benchmark event: count its first copy per socket, note duplicates, record latency."""
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
        # latency, inlined Hist.add (this runs once per delivered frame)
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
        """Close every socket (close frame, then TCP), aborting those that do not finish in time."""
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
