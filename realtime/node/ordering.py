"""Per-key ordering of background work: operations on one key run one after another, in the order
they were queued, whatever order their tasks happen to start in.

Presence uses it per (app, channel, user): a leave is queued the moment a socket unsubscribes or
closes, and a join of the same user that arrives just after it waits for that leave to finish. So
the adapter sees leave-then-join in the order the sockets did it, and observers get one
``member_removed`` and then one ``member_added`` instead of nothing (or a lost member).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class KeyedOrder:
    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Future] = {}

    def __len__(self) -> int:
        return len(self._tails)

    def queue(self, key: Hashable, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Take the next turn on ``key`` now and run ``coro`` in a task once the turns before it
        have ended (finished, failed or cancelled)."""
        prev = self._tails.get(key)
        task = asyncio.ensure_future(self._after(prev, coro))
        self._tails[key] = task
        task.add_done_callback(lambda done: self._release(key, done))
        return task

    async def run(self, key: Hashable, coro: Coroutine[Any, Any, T]) -> T:
        """Take the next turn on ``key`` when this coroutine starts and run ``coro`` inline once
        the turns before it have ended."""
        prev = self._tails.get(key)
        done = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        try:
            if prev is not None and not prev.done():
                await asyncio.wait({prev})
        except BaseException:
            coro.close()
            done.set_result(None)
            self._release(key, done)
            raise
        try:
            return await coro
        finally:
            done.set_result(None)
            self._release(key, done)

    @staticmethod
    async def _after(prev: asyncio.Future | None, coro: Coroutine[Any, Any, T]) -> T:
        if prev is not None and not prev.done():
            try:
                await asyncio.wait({prev})
            except BaseException:
                coro.close()
                raise
        return await coro

    def _release(self, key: Hashable, done: asyncio.Future) -> None:
        if self._tails.get(key) is done:
            del self._tails[key]
