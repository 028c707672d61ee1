"""The WebSocket consumer: thin. It accepts, hands frames to the engine and reports the disconnect.

Channels' stock ``dispatch`` hops to a worker thread before every message (to close stale database
connections) and goes through an ``asyncio.wait`` per frame; this consumer never touches the ORM,
so it replaces that loop with a direct ``receive`` loop.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import AsyncConsumer

from apps_admin.managers import get_app_manager
from realtime.node.engine import get_engine
from realtime.websocket import admission


class RealtimeConsumer(AsyncConsumer):
    def __init__(self, key: str = "") -> None:
        self.key = key

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        refusal = admission.refuse(scope)
        if refusal is not False and (refusal is True or await refusal):
            await send({"type": "websocket.close"})  # before accept: the upgrade is refused
            return
        engine = await get_engine()
        key = self.key or scope.get("url_route", {}).get("kwargs", {}).get("key", "")
        app = await get_app_manager().aget_by_key(key)
        await send({"type": "websocket.accept"})
        conn = await engine.connect(scope, send, app)
        del scope, send, app  # an idle socket's task keeps only what it needs
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    if conn is not None:
                        text = message.get("text")
                        pending = engine.handle(conn, text if text is not None else message.get("bytes"))
                        if pending is not None:
                            await pending
                elif kind == "websocket.disconnect":
                    if conn is not None:
                        engine.disconnect(conn, message.get("code"))
                    return
        finally:
            if conn is not None:
                engine.disconnect(conn)
