"""The Redis adapter: several nodes (processes, machines) form one cluster over Redis.

* Broadcasts: one ``PUBLISH`` per broadcast on ``{prefix}#broadcast``; every other node fans it out
  to its own subscribers (the publisher already delivered locally). Frames travel encoded, so no node
  re-encodes per subscriber.
* Shared facts are written as each node's *absolute* local numbers (``HSET key node_id count``), so
  writes are idempotent, coalesced per loop tick, and a node can re-publish its whole state after
  Redis comes back. Cluster figures are sums over live nodes.
* Presence membership is decided atomically in Redis (Lua): exactly one ``member_added`` for a user's
  first connection anywhere and one ``member_removed`` after its last.
* Nodes heartbeat into a sorted set; the lowest-id live node removes a dead node's sockets and
  presence members (broadcasting the ``member_removed`` they imply) within ``node timeout + cleanup
  interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from redis.exceptions import RedisError

from realtime.cluster.base import Adapter, AdapterUnavailable, Node, PresenceJoin
from realtime.cluster.redis_pool import async_client
from realtime.conf import server_settings
from realtime.protocol import frames
from realtime.protocol.outframe import OutFrame

log = logging.getLogger(__name__)
SEP = "\x1f"

# KEYS[1] = presence connections hash (node:sid -> uid), KEYS[2] = member info hash (uid -> info),
# KEYS[3] = per-user connection counts (uid -> n), KEYS[4] = the node's key index set.
# ARGV = field, uid, info json, max members. Returns {is_new (1/0/-1 full), members json pairs...}.
_JOIN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return {0, redis.call('HGETALL', KEYS[2])}
end
local count = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
if count == 0 and tonumber(ARGV[4]) > 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then
  return {-1, {}}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('SADD', KEYS[4], KEYS[1])
local is_new = 0
if count == 0 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  is_new = 1
end
return {is_new, redis.call('HGETALL', KEYS[2])}
"""

# KEYS as for _JOIN; ARGV[1] = field. Returns {left_entirely (1/0), uid or ''}.
_LEAVE = """
local uid = redis.call('HGET', KEYS[1], ARGV[1])
if not uid then return {0, ''} end
redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('HINCRBY', KEYS[3], uid, -1)
if left <= 0 then
  redis.call('HDEL', KEYS[3], uid)
  redis.call('HDEL', KEYS[2], uid)
  return {1, uid}
end
return {0, uid}
"""

# KEYS[1] = per-node count hash, KEYS[2] = app channel set (or app set), KEYS[3] = node key index.
# ARGV = node, local count, member name for KEYS[2]. Returns {sum before, sum after}: atomic, so
# exactly one node sees a channel go from 0 to occupied or back.
_COUNT = """
local before = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do before = before + tonumber(v) end
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('SADD', KEYS[3], KEYS[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
if total == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end
return {before, total}
"""


class RedisAdapter(Adapter):
    def __init__(self, engine: Node) -> None:
        super().__init__(engine)
        s = server_settings()
        self.url = s.REDIS_URL
        self.prefix = s.REDIS_PREFIX
        self.node_id = s.INSTANCE_PROCESS_ID or uuid.uuid4().hex[:16]
        self.heartbeat_interval = s.CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS / 1000
        self.node_timeout = s.CLUSTER_HEALTH_NODE_TIMEOUT_MS / 1000
        self.cleanup_interval = s.CLUSTER_HEALTH_CLEANUP_INTERVAL_MS / 1000
        self.redis = async_client(self.url, decode_responses=True, health_check_interval=10)
        self.topic = f"{self.prefix}#broadcast"
        # Every message this node sends starts like this (``_envelope`` puts the node id first).
        self._own_prefix = frames.dumps({"n": self.node_id})[:-1] + ","
        self._join = self.redis.register_script(_JOIN)
        self._leave = self.redis.register_script(_LEAVE)
        self._count = self.redis.register_script(_COUNT)
        # Messages for the next write to Redis; a future when a caller waits for Redis to take it.
        self._outbox: list[tuple[str, asyncio.Future | None]] = []
        self._dirty_channels: set[tuple[str, str]] = set()
        self._dirty_apps: set[str] = set()
        self._writer: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self.healthy = False
        self._conn_cache: dict[str, tuple[int, float]] = {}

    # -- keys ----------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _presence_keys(self, app_id: str, channel: str) -> list[str]:
        return [
            self._k("pconn", app_id, channel),
            self._k("pinfo", app_id, channel),
            self._k("pcount", app_id, channel),
            self._k("node", self.node_id, "keys"),
        ]

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen_forever()), loop.create_task(self._heartbeat_forever())]

    async def stop(self) -> None:
        """Leave the cluster cleanly: peers see our members leave now, not after a timeout."""
        for task in self._tasks:
            task.cancel()
        # Publish what is still queued first: the member_removed of sockets a shutdown just closed.
        if self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer}, timeout=5)
        await self._flush()
        try:
            await self._cleanup_node(self.node_id)
            await self.redis.zrem(self._k("nodes"), self.node_id)
        except RedisError:
            log.warning("could not remove this node's state from Redis on shutdown")
        await self.redis.aclose()

    async def _listen_forever(self) -> None:
        """Receive broadcasts; on any Redis failure, back off, reconnect and re-publish our state."""
        delay = 0.2
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.topic)
                await self._resync()
                self.healthy = True
                delay = 0.2
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.healthy = False
                log.warning("Redis adapter disconnected (%s); retrying in %.1fs", exc, delay)
            finally:
                with contextlib.suppress(Exception):  # the connection is already broken
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_message(self, raw: str) -> None:
        if raw.startswith(self._own_prefix):
            return  # our own broadcast, already delivered here: not worth decoding
        try:
            msg = json.loads(raw)
            kind = msg["t"]
            if kind == "b":
                position = msg.get("p")
                frame = OutFrame(msg["f"], msg.get("g"), tuple(position) if position else None)
                if position:
                    self.engine.remember_remote(msg["a"], msg["c"], frame)
                self.engine.deliver_local(msg["a"], msg["c"], frame, msg.get("x"))
            elif kind == "u":
                self.engine.deliver_to_user(msg["a"], msg["u"], OutFrame(msg["f"]))
            elif kind == "k":
                self.engine.close_user(msg["a"], msg["u"], msg["code"], msg["reason"])
        except Exception:  # a malformed message must not stop the listener
            log.exception("bad cluster message")

    # -- delivery ------------------------------------------------------------------------------
    def broadcast(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> None:
        self.engine.deliver_local(app_id, channel, frame, except_socket_id)
        self._send_soon(self._broadcast_envelope(app_id, channel, frame, except_socket_id))

    async def publish(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None = None
    ) -> None:
        # Redis first: a publish answered 503 reached nobody, so the caller can retry it safely.
        await self._publish_now(self._broadcast_envelope(app_id, channel, frame, except_socket_id))
        self.engine.deliver_local(app_id, channel, frame, except_socket_id)

    def send_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        self.engine.deliver_to_user(app_id, user_id, frame)
        self._send_soon(self._envelope("u", a=app_id, u=user_id, f=frame.text))

    async def publish_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        await self._publish_now(self._envelope("u", a=app_id, u=user_id, f=frame.text))
        self.engine.deliver_to_user(app_id, user_id, frame)

    def terminate_user(self, app_id: str, user_id: str, code: int, reason: str) -> None:
        self.engine.close_user(app_id, user_id, code, reason)
        self._send_soon(self._envelope("k", a=app_id, u=user_id, code=code, reason=reason))

    def _broadcast_envelope(
        self, app_id: str, channel: str, frame: OutFrame, except_socket_id: str | None
    ) -> str:
        """One cluster message per broadcast: the frame as encoded for each protocol."""
        return self._envelope(
            "b", a=app_id, c=channel, f=frame.text, g=frame.v2_text, p=frame.position, x=except_socket_id
        )

    def _envelope(self, kind: str, **fields: Any) -> str:
        return frames.dumps({"n": self.node_id, "t": kind, **fields})

    async def _publish_now(self, message: str) -> None:
        """Queue ``message`` with the next write to Redis and wait until Redis has accepted it."""
        done = asyncio.get_running_loop().create_future()
        self._outbox.append((message, done))
        self._schedule_flush()
        await done

    def _send_soon(self, message: str) -> None:
        self._outbox.append((message, None))
        self._schedule_flush()

    # -- local state -> Redis (coalesced per loop tick) -----------------------------------------
    def channel_changed(self, app_id: str, channel: str) -> None:
        self._dirty_channels.add((app_id, channel))
        self._schedule_flush()

    def connections_changed(self, app_id: str) -> None:
        self._dirty_apps.add(app_id)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_forward())

    async def _write_forward(self) -> None:
        """The one writer: each round sends everything queued since the last one in one pipeline.

        One round at a time keeps the publish order across rounds, and whatever arrives while a
        round is in flight goes together in the next one (one round trip for many publishes).
        """
        while self._outbox or self._dirty_channels or self._dirty_apps:
            await self._flush()

    async def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        channels, self._dirty_channels = self._dirty_channels, set()
        apps, self._dirty_apps = self._dirty_apps, set()
        if not (outbox or channels or apps):
            return
        registry = self.engine.registry
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for message, _done in outbox:
                    pipe.publish(self.topic, message)
                order = []
                for app_id, channel in channels:
                    subs = registry.subscribers(app_id, channel)
                    await self._count(
                        keys=[
                            self._k("subs", app_id, channel),
                            self._k("channels", app_id),
                            self._k("node", self.node_id, "keys"),
                        ],
                        args=[self.node_id, len(subs) if subs else 0, channel],
                        client=pipe,
                    )
                    order.append((app_id, channel))
                for app_id in apps:
                    await self._count(
                        keys=[
                            self._k("conns", app_id),
                            self._k("apps"),
                            self._k("node", self.node_id, "keys"),
                        ],
                        args=[self.node_id, registry.app_connection_count(app_id), app_id],
                        client=pipe,
                    )
                results = await pipe.execute()
        except Exception as exc:  # Redis is down (or a bug): never leave a publisher waiting
            if isinstance(exc, RedisError | OSError):
                self.healthy = False
                log.warning("Redis adapter write failed (%s); state is re-published on reconnect", exc)
            else:
                log.exception("Redis adapter write failed")
            _settle(outbox, AdapterUnavailable(str(exc)))
            return
        _settle(outbox, None)
        counts = results[len(outbox) : len(outbox) + len(order)]
        for (app_id, channel), (before, after) in zip(order, counts, strict=True):
            self.engine.cluster_count_changed(app_id, channel, int(before), int(after))

    async def _resync(self) -> None:
        """Publish this node's whole local state (after start or a Redis outage)."""
        registry = self.engine.registry
        for app_id, state in list(registry.apps.items()):
            self._dirty_apps.add(app_id)
            for channel in state.channels:
                self._dirty_channels.add((app_id, channel))
            for channel, members in state.presence.items():
                subs = state.channels.get(channel) or {}
                for conn in list(subs):
                    user_id = conn.channels.get(channel)
                    if user_id is not None:
                        member = members.get(user_id)
                        await self._presence_join(
                            app_id, channel, conn.socket_id, user_id, member.info if member else None, 0
                        )
        self._schedule_flush()

    # -- presence ------------------------------------------------------------------------------
    async def presence_join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, info: Any, max_members: int
    ) -> PresenceJoin:
        try:
            return await self._presence_join(app_id, channel, socket_id, user_id, info, max_members)
        except (RedisError, OSError) as exc:
            raise AdapterUnavailable(str(exc)) from exc

    async def _presence_join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, info: Any, max_members: int
    ) -> PresenceJoin:
        field = f"{self.node_id}:{socket_id}"
        status, flat = await self._join(
            keys=self._presence_keys(app_id, channel),
            args=[field, user_id, frames.dumps(info), max_members],
        )
        members = {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
        return PresenceJoin(int(status) == 1, int(status) == -1, members)

    async def presence_leave(self, app_id: str, channel: str, socket_id: str, user_id: str) -> str | None:
        """Returns the user id when its last connection in the channel left, else None."""
        field = f"{self.node_id}:{socket_id}"
        try:
            left, user_id = await self._leave(keys=self._presence_keys(app_id, channel), args=[field])
        except (RedisError, OSError):
            log.warning("presence leave of %s in %s not recorded in Redis", socket_id, channel)
            return None
        return user_id if int(left) == 1 else None

    async def presence_update(self, app_id: str, channel: str, user_id: str, info: Any) -> None:
        key = self._k("pinfo", app_id, channel)
        try:
            if await self.redis.hexists(key, user_id):
                await self.redis.hset(key, user_id, frames.dumps(info))
        except (RedisError, OSError) as exc:
            raise AdapterUnavailable(str(exc)) from exc

    # -- cluster-wide queries ------------------------------------------------------------------
    async def subscription_count(self, app_id: str, channel: str) -> int:
        values = await self._query(self.redis.hvals(self._k("subs", app_id, channel)))
        return sum(int(v) for v in values)

    async def channels(self, app_id: str) -> dict[str, int]:
        names = sorted(await self._query(self.redis.smembers(self._k("channels", app_id))))
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hvals(self._k("subs", app_id, name))
            rows = await self._query(pipe.execute())
        result = {}
        for name, values in zip(names, rows, strict=True):
            total = sum(int(v) for v in values)
            if total > 0:
                result[name] = total
        return result

    async def members(self, app_id: str, channel: str) -> dict[str, object]:
        raw = await self._query(self.redis.hgetall(self._k("pinfo", app_id, channel)))
        return {uid: json.loads(info) for uid, info in raw.items()}

    async def connection_count(self, app_id: str) -> int:
        cached = self._conn_cache.get(app_id)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0] + self.engine.registry.app_connection_count(app_id)
        values = await self._query(self.redis.hgetall(self._k("conns", app_id)))
        others = sum(int(v) for node, v in values.items() if node != self.node_id)
        self._conn_cache[app_id] = (others, now + 0.5)
        return others + self.engine.registry.app_connection_count(app_id)

    async def _query(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            self.healthy = False
            raise AdapterUnavailable(str(exc)) from exc

    async def check(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    # -- node liveness -------------------------------------------------------------------------
    async def _heartbeat_forever(self) -> None:
        last_cleanup = 0.0
        while True:
            try:
                now = time.time()
                await self.redis.zadd(self._k("nodes"), {self.node_id: now})
                if now - last_cleanup >= self.cleanup_interval:
                    last_cleanup = now
                    await self._reap_dead_nodes(now)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception:
                log.exception("dead-node cleanup failed")
            await asyncio.sleep(self.heartbeat_interval)

    async def _reap_dead_nodes(self, now: float) -> None:
        nodes = await self.redis.zrange(self._k("nodes"), 0, -1, withscores=True)
        live = sorted(n for n, seen in nodes if now - seen <= self.node_timeout)
        dead = [n for n, seen in nodes if now - seen > self.node_timeout]
        if not dead or not live or live[0] != self.node_id:
            return  # only the lowest live node cleans up, so it happens exactly once
        for node in dead:
            log.warning("node %s missed heartbeats for %.0fs: removing its sockets", node, self.node_timeout)
            await self._cleanup_node(node)
            await self.redis.zrem(self._k("nodes"), node)

    async def _cleanup_node(self, node: str) -> None:
        """Remove everything ``node`` contributed; announce members who left with it."""
        index = self._k("node", node, "keys")
        keys = await self.redis.smembers(index)
        for key in keys:
            kind, _, rest = key[len(self.prefix) :].partition(":")
            if kind in ("subs", "conns"):
                app_id, _, channel = rest.partition(":")
                if kind == "subs":
                    before, after = await self._count(
                        keys=[key, self._k("channels", app_id), index], args=[node, 0, channel]
                    )
                    self.engine.cluster_count_changed(app_id, channel, int(before), int(after))
                else:
                    await self.redis.hdel(key, node)
            elif kind == "pconn":
                app_id, _, channel = rest.partition(":")
                fields = [f for f in await self.redis.hkeys(key) if f.startswith(node + ":")]
                for field in fields:
                    left, user_id = await self._leave(
                        keys=[
                            key,
                            self._k("pinfo", app_id, channel),
                            self._k("pcount", app_id, channel),
                            index,
                        ],
                        args=[field],
                    )
                    if int(left) == 1 and node != self.node_id:
                        removed = OutFrame(frames.member_removed(channel, user_id))
                        self.broadcast(app_id, channel, removed)
                        self.engine.member_left_cluster(app_id, channel, user_id)
        await self.redis.delete(index)


def _settle(outbox: list[tuple[str, asyncio.Future | None]], error: Exception | None) -> None:
    """Wake the publishers waiting on ``outbox``: accepted by Redis, or failed with ``error``."""
    for _message, done in outbox:
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
