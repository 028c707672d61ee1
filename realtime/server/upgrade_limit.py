"""The per-IP limit of WebSocket upgrades on the tuned transport: ``daphne_tuning.UpgradeSniffer``
applies the shared decision (``realtime.ratelimit.upgrade``) to the raw request head, so a refused
client gets a plain ``HTTP/1.1 429`` before any handshake or frame (protocol-v1.md §1.1), and a
counter store that does not answer gets ``503`` (fail closed).

The decision must not block the event loop. The memory driver answers at once; with Redis the
sniffer defers the upgrade: it keeps buffering the socket's bytes while the decision runs on the
loop and hands the connection on (or refuses it) when the answer arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial

from realtime.api.limits import TOO_MANY, compact_json
from realtime.ratelimit import upgrade
from realtime.ratelimit.base import Decision

SERVICE_UNAVAILABLE = {"error": "Service Unavailable", "message": "Rate limiter backend unavailable."}
_REASONS = {429: "Too Many Requests", 503: "Service Unavailable"}


def header(head: bytes, name: bytes) -> str | None:
    """Every value of header ``name`` in a lower-cased request head, joined by commas (as Django
    joins repeated headers); ``None`` when absent."""
    values = []
    for line in head.split(b"\r\n")[1:]:
        field, sep, value = line.partition(b":")
        if sep and field.strip() == name:
            values.append(value.strip().decode("latin-1"))
    return ",".join(values) if values else None


def too_many(decision: Decision) -> bytes:
    return _response(429, compact_json(TOO_MANY), decision.headers())


def unavailable() -> bytes:
    return _response(503, compact_json(SERVICE_UNAVAILABLE), {"Retry-After": "1"})


def _response(status: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def refusal_bytes(refusal: upgrade.Refusal) -> bytes:
    if refusal.decision is not None:
        return too_many(refusal.decision)
    return unavailable()


def check(
    head: bytes, peer: str | None, target: bytes | None = None
) -> bytes | None | Awaitable[bytes | None]:
    """The verdict on one upgrade from its lower-cased request head: ``None`` to go ahead, the bytes
    of a refusal to write before closing, or (when the driver needs I/O) an awaitable that resolves
    to one of those two. ``target`` is the request target as sent (it names the app of a refusal)."""
    path = target.decode("latin-1") if target else None
    verdict = upgrade.check(peer, partial(header, head), path)
    if verdict is None:
        return None
    if isinstance(verdict, upgrade.Refusal):
        return refusal_bytes(verdict)
    return _respond_later(verdict)


async def _respond_later(verdict: Awaitable[upgrade.Verdict]) -> bytes | None:
    refusal = await verdict
    return None if refusal is None else refusal_bytes(refusal)
