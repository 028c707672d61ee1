"""WebSocket routing: ``/app/{key}`` (optionally under a path prefix a client sets as ``wsPath``).

The router is a plain function that returns the consumer's coroutine instead of awaiting it, so a
connection's task holds one coroutine frame rather than a stack of router frames: with thousands of
idle sockets per process those frames are a measurable share of the memory per connection.
"""

from __future__ import annotations

import re
from typing import Any

from realtime.websocket import admission
from realtime.websocket.consumer import RealtimeConsumer

APP_PATH = re.compile(r"^(?:.*/)?app/([^/]+)/?$")


async def _reject(scope: dict[str, Any], receive, send) -> None:
    message = await receive()
    if message["type"] == "websocket.connect":
        refusal = admission.refuse(scope)  # counted against the upgrade limit like any upgrade
        if not isinstance(refusal, bool):
            await refusal
        await send({"type": "websocket.close", "code": 1008})


def websocket_application(scope: dict[str, Any], receive, send):
    match = APP_PATH.match(scope.get("path", ""))
    if match is None:
        return _reject(scope, receive, send)
    return RealtimeConsumer(match.group(1))(scope, receive, send)
