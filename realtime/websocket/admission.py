"""What the WebSocket entry checks before it accepts an upgrade, on whatever transport serves it.

* A draining node (``realtime.node.drain``) takes no new socket: clients and load balancers retry
  elsewhere.
* The per-IP upgrade limit (``realtime.ratelimit.upgrade``), unless the listener already applied it
  to the raw request (the tuned transport answers 429 / 503 there, before the handshake).

A refused upgrade is closed before it is accepted. Stock daphne answers that with ``HTTP 403``
("Access denied"): it can send no other status before the handshake (it does not implement the
ASGI WebSocket denial-response extension), so on the stock transport both refusals are 403s.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any

from realtime.node import drain as shutdown
from realtime.ratelimit import upgrade


def refuse(scope: dict[str, Any]) -> bool | Awaitable[bool]:
    """Whether to refuse this upgrade (counting it against the limit when this layer applies it);
    an awaitable of that answer when the limiter needs I/O."""
    if shutdown.draining:
        return True
    if upgrade.listener_applies():
        return False
    client = scope.get("client")
    verdict = upgrade.check(client[0] if client else None, partial(header, scope), scope.get("path"))
    if verdict is None or isinstance(verdict, upgrade.Refusal):
        return verdict is not None
    return _refuse_later(verdict)


async def _refuse_later(verdict: Awaitable[upgrade.Verdict]) -> bool:
    return await verdict is not None


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """Every value of header ``name`` (lower case) in the scope, joined by commas; ``None`` when absent."""
    values = [
        value.decode("latin-1").strip() for key, value in scope.get("headers", ()) if key.lower() == name
    ]
    return ",".join(values) if values else None
