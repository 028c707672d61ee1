"""Counters and token buckets shared by every node through Redis, so a cluster limits as one server.

One hit is one round trip: a Lua script does ``INCRBY`` and, for a counter without a TTL (its
first hit), ``PEXPIRE``, and returns the count and the milliseconds left. Windows therefore run
on Redis' clock, not on the nodes' (their clocks may differ).

One take is one round trip too: a Lua script reads the bucket (a hash of tokens and the time they
were counted), refills it by the time passed on Redis' clock (``TIME``), takes the cost if there is
enough, writes it back and lets the key expire once the bucket would be full again (a full bucket
and no key are the same thing).

Two clients over the same URL: a blocking one for ``hit`` (DRF views run in a worker thread) and
an asyncio one for ``ahit`` (the API middleware and the WebSocket upgrade path run on the event
loop, which must never wait on a socket). Timeouts are short (``timeout``, default 1 s) and there
is one immediate retry (a pooled connection that went stale when Redis restarted); after that
the hit raises ``RateLimiterUnavailable`` and the caller fails closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis as redis_sync
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from realtime.cluster.redis_pool import async_client
from realtime.ratelimit.base import Decision, RateLimiter, RateLimiterUnavailable

_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""

_TAKE = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 1000
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
if tokens == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - tonumber(state[2])) * per_ms)
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter(RateLimiter):
    def __init__(self, url: str, prefix: str = "sockudo_rl:", timeout: float = 1.0) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._sync: Any = None
        self._sync_script: Any = None
        self._async: Any = None
        self._async_script: Any = None
        self._sync_take: Any = None
        self._async_take: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> RedisRateLimiter:
        # One REDIS_URL serves the adapter and the limiter (operations.md §2.2).
        return cls(url=settings["REDIS_URL"], prefix=settings["RATE_LIMITER_PREFIX"])

    def _options(self, retry_cls: type) -> dict[str, Any]:
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": retry_cls(NoBackoff(), 1),
        }

    def _connect_sync(self) -> None:
        if self._sync is None:
            from redis.retry import Retry

            self._sync = redis_sync.Redis.from_url(self.url, **self._options(Retry))
            self._sync_script = self._sync.register_script(_HIT)
            self._sync_take = self._sync.register_script(_TAKE)

    def _connect_async(self) -> None:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            from redis.asyncio.retry import Retry

            self._async = async_client(self.url, **self._options(Retry))
            self._async_script = self._async.register_script(_HIT)
            self._async_take = self._async.register_script(_TAKE)
            self._async_loop = loop

    def _call(self, script: Any, key: str, args: list) -> Any:
        try:
            return script(keys=[self.prefix + key], args=args)
        except (RedisError, OSError) as exc:
            raise RateLimiterUnavailable(str(exc)) from exc

    async def _acall(self, script: Any, key: str, args: list) -> Any:
        try:
            return await asyncio.wait_for(script(keys=[self.prefix + key], args=args), self.timeout * 3)
        except (RedisError, OSError, TimeoutError) as exc:
            raise RateLimiterUnavailable(str(exc)) from exc

    def hit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        self._connect_sync()
        count, ttl_ms = self._call(self._sync_script, key, [cost, _ms(window)])
        return Decision.of(int(count), limit, int(ttl_ms) / 1000)

    async def ahit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        self._connect_async()
        count, ttl_ms = await self._acall(self._async_script, key, [cost, _ms(window)])
        return Decision.of(int(count), limit, int(ttl_ms) / 1000)

    def take(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision:
        self._connect_sync()
        allowed, tokens = self._call(self._sync_take, key, [capacity, repr(float(per_second)), cost])
        return Decision.of_bucket(bool(allowed), float(tokens), capacity, per_second, cost)

    async def atake(self, key: str, capacity: int, per_second: float, cost: int = 1) -> Decision:
        self._connect_async()
        allowed, tokens = await self._acall(self._async_take, key, [capacity, repr(float(per_second)), cost])
        return Decision.of_bucket(bool(allowed), float(tokens), capacity, per_second, cost)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
