"""Calling the engine from synchronous code (DRF views run in a worker thread).

The registry belongs to the event loop thread, so every read and every publish is run there: the
view blocks until the coroutine finished on the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync

from realtime.node.engine import Engine, get_engine

T = TypeVar("T")


def on_loop(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``await fn(engine, *args, **kwargs)`` on the server's event loop and return its result."""

    async def runner() -> T:
        engine: Engine = await get_engine()
        return await fn(engine, *args, **kwargs)

    return async_to_sync(runner)()
