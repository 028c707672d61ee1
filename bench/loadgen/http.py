"""The publisher: Pusher-signed ``POST /apps/{id}/events`` over raw HTTP/1.1 keep-alive connections.

A hand-written client on asyncio streams keeps the generator's cost per publish small and
predictable; requests are signed with the project's own ``realtime.protocol.signatures``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from realtime.protocol.signatures import md5_hex, sign_api_request

from .connections import make_ssl
from .report import Hist

EVENT_NAME = "bench-event"


def signed_events_path(prefix: str, app_id: str, key: str, secret: str, body: bytes) -> str:
    """Path + query of a Pusher-signed ``POST /apps/{id}/events`` (auth_version 1.0)."""
    path = f"{prefix}/apps/{app_id}/events"
    params = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": md5_hex(body),
    }
    params["auth_signature"] = sign_api_request(secret, "POST", path, params)
    return path + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


class HttpConn:
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it."""

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
    channel_of: Callable[[int], str],
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
