"""Cluster-wide sequencer over Redis: one hash per channel, ``{stream, serial}``.

``next`` is one round trip: a Lua script increments the serial and returns it with the stream id,
atomically, so every node of the cluster gets strictly increasing serials for the same channel. A
channel whose hash is missing (first use, or Redis lost its data) is initialised from the durable
history head with ``HSETNX`` semantics inside the same script: concurrent initialisers agree.

Keys: ``{REDIS_PREFIX}seq:{app_id}:{channel}``, no expiry (a lost key means a new stream unless the
channel has durable history, which re-seeds it).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from history.sequencer.base import HeadLoader, Position, Sequencer, new_stream_id
from realtime.cluster.redis_pool import async_client
from realtime.conf import server_settings

# KEYS[1] = the channel's hash. ARGV[1] = '1' to take the next serial, '0' to read the head;
# ARGV[2], ARGV[3] (optional) = stream id and head serial to start from when the hash is missing.
# Returns {stream_id, serial}, or false when the hash is missing and no start was given.
_NEXT = """
local stream = redis.call('HGET', KEYS[1], 'stream')
if not stream then
  if not ARGV[2] then return false end
  redis.call('HSET', KEYS[1], 'stream', ARGV[2], 'serial', ARGV[3])
  stream = ARGV[2]
end
local serial
if ARGV[1] == '1' then
  serial = redis.call('HINCRBY', KEYS[1], 'serial', 1)
else
  serial = tonumber(redis.call('HGET', KEYS[1], 'serial'))
end
return {stream, serial}
"""

# KEYS[1] = the channel's hash; ARGV[1], ARGV[2] = stream id and serial to give back. Decrements
# the serial only while it is still that stream's newest; returns 1 when it did.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'stream') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'serial') ~= ARGV[2] then return 0 end
redis.call('HINCRBY', KEYS[1], 'serial', -1)
return 1
"""


class RedisSequencer(Sequencer):
    def __init__(
        self, head_loader: HeadLoader | None = None, url: str | None = None, prefix: str | None = None
    ) -> None:
        super().__init__(head_loader)
        if url is None or prefix is None:
            s = server_settings()
            url = s.REDIS_URL if url is None else url
            prefix = s.REDIS_PREFIX if prefix is None else prefix
        self.url = url
        self.prefix = prefix
        # redis.asyncio connections belong to the loop that opened them: one client per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def _key(self, app_id: str, channel: str) -> str:
        return f"{self.prefix}seq:{app_id}:{channel}"

    def _client(self) -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()
        pair = self._clients.get(loop)
        if pair is None:
            client = async_client(self.url, decode_responses=True, health_check_interval=10)
            pair = (client, client.register_script(_NEXT), client.register_script(_RELEASE))
            self._clients[loop] = pair
        return pair

    async def _run(self, app_id: str, channel: str, take: bool) -> Position:
        _client, script, _release = self._client()
        key = self._key(app_id, channel)
        flag = "1" if take else "0"
        result = await script(keys=[key], args=[flag])
        if result is None:
            start = await self._initial(app_id, channel)
            result = await script(keys=[key], args=[flag, start.stream_id, str(start.serial)])
        return Position(result[0], int(result[1]))

    async def next(self, app_id: str, channel: str) -> Position:
        return await self._run(app_id, channel, take=True)

    async def current(self, app_id: str, channel: str) -> Position:
        return await self._run(app_id, channel, take=False)

    async def release(self, app_id: str, channel: str, position: Position) -> bool:
        _client, _script, release = self._client()
        key = self._key(app_id, channel)
        return bool(await release(keys=[key], args=[position.stream_id, str(position.serial)]))

    async def reset(self, app_id: str, channel: str) -> str:
        client, _script, _release = self._client()
        stream_id = new_stream_id()
        await client.hset(self._key(app_id, channel), mapping={"stream": stream_id, "serial": 0})
        return stream_id

    async def close(self) -> None:
        try:
            pair = self._clients.pop(asyncio.get_running_loop(), None)
        except RuntimeError:
            return
        if pair is not None:
            await pair[0].aclose()
            await pair[0].connection_pool.disconnect()
