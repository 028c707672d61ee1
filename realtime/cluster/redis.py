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
from realtime.protocol.channels import META_PREFIX
from realtime.protocol.outframe import OutFrame

log = logging.getLogger(__name__)
SEP = "\x1f"

# KEYS[1] = presence connections hash (node:sid -> uid), KEYS[2] = member info hash (uid -> info),
# KEYS[3] = per-user connection counts (uid -> n), KEYS[4] = the node's key index set.
# ARGV = field, uid, info json, max members, topic, member_added message ('' = none): published
# here, atomically with the decision, so every node sees a user's member events in decision order.
# Returns {is_new (1/0/-1 full), members json pairs...}.
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
  if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
end
return {is_new, redis.call('HGETALL', KEYS[2])}
"""

# KEYS as for _JOIN; ARGV = field, topic, member_removed message ('' = none), published when the
# user's last connection left. Returns {left_entirely (1/0), uid or ''}.
_LEAVE = """
local uid = redis.call('HGET', KEYS[1], ARGV[1])
if not uid then return {0, ''} end
redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('HINCRBY', KEYS[3], uid, -1)
if left <= 0 then
  redis.call('HDEL', KEYS[3], uid)
  redis.call('HDEL', KEYS[2], uid)
  if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return {1, uid}
end
return {0, uid}
"""

# KEYS[1] = per-node count hash, KEYS[2] = app channel set (or app set), KEYS[3] = node key index,
# KEYS[4] = the count hash of the channel's [meta] channel (read only; channel counts only).
# ARGV = node, local count, member name for KEYS[2]; for channel counts also the count message head
# ('' = none), '1' when the channel's subscribers want its count, and the topic.
# Returns {sum before, sum after}: atomic, so exactly one node sees a channel go from 0 to occupied
# or back. When the sum moved and someone wants it (the channel's subscribers, or [meta] watchers
# on any node) the new count is published here, one message per change, so the other nodes hear a
# channel's counts in the order Redis decided them.
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
if ARGV[4] and ARGV[4] ~= '' and total ~= before and (ARGV[5] == '1' or redis.call('EXISTS', KEYS[4]) == 1) then
  redis.call('PUBLISH', ARGV[6], ARGV[4] .. string.format('%d,"s":%d}', before, total))
end
return {before, total}
"""


RETRY_MIN = 0.05  # seconds between listener reconnect attempts, doubling up to RETRY_MAX
RETRY_MAX = 0.5  # short: a node must hear broadcasts again as soon as Redis answers


class RedisAdapter(Adapter):
    announces_presence = True  # member events are published by the presence scripts

    def __init__(self, engine: Node) -> None:
        super().__init__(engine)
        s = server_settings()
        self.url = s.REDIS_URL
        self.prefix = s.REDIS_PREFIX
        self.node_id = s.INSTANCE_PROCESS_ID or uuid.uuid4().hex[:16]
        self.heartbeat_interval = s.CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS / 1000
        self.node_timeout = s.CLUSTER_HEALTH_NODE_TIMEOUT_MS / 1000
        self.cleanup_interval = s.CLUSTER_HEALTH_CLEANUP_INTERVAL_MS / 1000
        self.redis = async_client(
            self.url, decode_responses=True, health_check_interval=10, socket_connect_timeout=2
        )
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
        self._write_failures = 0
        self._tasks: list[asyncio.Task] = []
        self.healthy = False
        self._conn_cache: dict[str, tuple[int, float]] = {}
        # Outage state: the reason and start while Redis is away (None when up).
        self._outage: str | None = None
        self._outage_since = 0.0
        self._up_since = time.time()
        self._listening = False  # the listener is subscribed to the broadcast topic
        self._recovering = asyncio.Lock()
        self._recovery_task: asyncio.Task | None = None
        self._peers: set[str] = set()  # live nodes at the last heartbeat check (self included)
        self._expected_peers: set[str] = set()  # live nodes when the last outage began
        # Presence leaves Redis did not take (field -> (app, channel, user)), replayed on recovery.
        self._lost_leaves: dict[str, tuple[str, str, str]] = {}
        # One presence operation at a time per socket (field), in arrival order.
        self._field_locks: dict[str, list] = {}

    # -- keys ----------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _presence_keys(self, app_id: str, channel: str, node: str | None = None) -> list[str]:
        return [
            self._k("pconn", app_id, channel),
            self._k("pinfo", app_id, channel),
            self._k("pcount", app_id, channel),
            self._k("node", node or self.node_id, "keys"),
        ]

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen_forever()), loop.create_task(self._heartbeat_forever())]

    async def stop(self) -> None:
        """Leave the cluster cleanly: peers see our members leave now, not after a timeout."""
        for task in [*self._tasks, self._recovery_task]:
            if task is not None:
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
        """Receive broadcasts; on any Redis failure reconnect at once (short back-off while Redis
        refuses), resubscribe and re-publish our state."""
        delay = RETRY_MIN
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.topic)
                self._listening = True
                await self._recover()
                delay = RETRY_MIN
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._listening = False
                self._went_down(f"pub/sub listener: {exc}")
            finally:
                self._listening = False
                with contextlib.suppress(Exception):  # the connection is already broken
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    # -- outage and recovery -------------------------------------------------------------------
    def _went_down(self, reason: str) -> None:
        """Redis failed us: one log line and one count per outage; publishes answer 503 until
        ``_recover`` has resubscribed and re-published this node's state."""
        self.healthy = False
        # Idle pooled connections may be dead too: drop them so the next command connects anew.
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().create_task(
                self.redis.connection_pool.disconnect(inuse_connections=False)
            )
        if self._outage is not None:
            return
        self._outage = reason
        self._outage_since = time.monotonic()
        self._expected_peers = set(self._peers)
        log.warning("Redis adapter outage: %s; publishes answer 503 until it is back", reason)
        self.engine.adapter_outage(reason)
        if self._listening:  # the listener did not notice: recover without it
            self._recover_soon()

    def _recover_soon(self) -> None:
        if self._recovery_task is None or self._recovery_task.done():
            self._recovery_task = asyncio.get_running_loop().create_task(self._recover_forever())

    async def _recover_forever(self) -> None:
        delay = RETRY_MIN
        while self._outage is not None and self._listening:
            try:
                await self._recover()
                return
            except (RedisError, OSError) as exc:
                log.debug("recovery attempt failed: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _recover(self) -> None:
        """Re-publish this node's counts; after an outage, wait until the peers that were live
        listen again and only then answer publishes and take presence changes again, replaying
        the leaves Redis missed (their member_removed reach every node) and re-joining members."""
        async with self._recovering:
            outage = self._outage
            await self._resync_counts()
            waited = 0.0
            if outage is not None:
                await self.redis.zadd(self._k("nodes"), {self.node_id: time.time()})
                waited = await self._settle()
                self._up_since = time.time()
                self._outage = None
            replayed = await self._replay_lost_leaves()
            await self._resync_presence()
            self.healthy = True
            if outage is None:
                return
            log.warning(
                "Redis adapter recovered after %.1fs (outage: %s); state re-published, %d presence "
                "leave(s) replayed, peers listening after %.2fs",
                time.monotonic() - self._outage_since,
                outage,
                replayed,
                waited,
            )
            self.engine.adapter_recovered(outage)

    async def _settle(self) -> float:
        """Wait (at most the node timeout) until as many nodes listen as were live before the
        outage, so no peer accepts a publish that a still-deaf node would miss."""
        started = time.monotonic()
        expected = max(1, len(self._expected_peers | {self.node_id}))
        while time.monotonic() - started < self.node_timeout:
            (_, listening), *_ = await self.redis.pubsub_numsub(self.topic)
            if int(listening) >= expected:
                break
            await asyncio.sleep(0.02)
        return time.monotonic() - started

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
            elif kind == "m":  # a member event, published by a presence script: every node, ours too
                self.engine.deliver_local(msg["a"], msg["c"], OutFrame(msg["f"]), msg.get("x"))
            elif kind == "u":
                self.engine.deliver_to_user(msg["a"], msg["u"], OutFrame(msg["f"]))
            elif kind == "k":
                self.engine.close_user(msg["a"], msg["u"], msg["code"], msg["reason"])
            elif kind == "s":  # another node's write moved a channel's count (see _COUNT)
                self.engine.count_seen(msg["a"], msg["c"], int(msg["b"]), int(msg["s"]))
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
        if self._outage is not None:  # until recovered, a peer (or we) may not hear it: refuse
            raise AdapterUnavailable(self._outage)
        # Redis first: a publish answered 503 reached nobody, so the caller can retry it safely.
        await self._publish_now(self._broadcast_envelope(app_id, channel, frame, except_socket_id))
        self.engine.deliver_local(app_id, channel, frame, except_socket_id)

    def send_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        self.engine.deliver_to_user(app_id, user_id, frame)
        self._send_soon(self._envelope("u", a=app_id, u=user_id, f=frame.text))

    async def publish_to_user(self, app_id: str, user_id: str, frame: OutFrame) -> None:
        if self._outage is not None:
            raise AdapterUnavailable(self._outage)
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
                    count = len(subs) if subs else 0
                    await self._count(
                        keys=self._channel_count_keys(app_id, channel, self.node_id),
                        args=self._channel_count_args(app_id, channel, self.node_id, count),
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
            self._write_failures += 1
            if isinstance(exc, RedisError | OSError):
                self._went_down(f"write failed: {exc}")
            else:
                log.exception("Redis adapter write failed")
            _settle(outbox, AdapterUnavailable(str(exc)))
            return
        _settle(outbox, None)
        counts = results[len(outbox) : len(outbox) + len(order)]
        for (app_id, channel), (before, after) in zip(order, counts, strict=True):
            self.engine.cluster_count_changed(app_id, channel, int(before), int(after))

    def _channel_count_keys(self, app_id: str, channel: str, node: str) -> list[str]:
        return [
            self._k("subs", app_id, channel),
            self._k("channels", app_id),
            self._k("node", node, "keys"),
            self._k("subs", app_id, META_PREFIX + channel),
        ]

    def _channel_count_args(self, app_id: str, channel: str, node: str, count: int) -> list[Any]:
        """``_COUNT`` arguments for a channel: the count message goes out for channels whose
        subscribers get count events or that have [meta] watchers (never for a [meta] channel)."""
        if channel.startswith(META_PREFIX):
            return [node, count, channel, "", "0", self.topic]
        # The script appends the sums: ...,"b":<before>,"s":<after>}. Our node id leads, so the
        # listener here skips it (this node already told its own subscribers).
        head = self._envelope("s", a=app_id, c=channel)[:-1] + ',"b":'
        wanted = "1" if self.engine.counts_wanted(app_id, channel) else "0"
        return [node, count, channel, head, wanted, self.topic]

    async def _resync_counts(self) -> None:
        """Rewrite every count this node ever wrote (0 for channels it left meanwhile) from its
        local state (after start or a Redis outage). Raises if Redis did not take them."""
        registry = self.engine.registry
        for key in await self.redis.smembers(self._k("node", self.node_id, "keys")):
            kind, _, rest = key[len(self.prefix) :].partition(":")
            if kind == "subs":
                app_id, _, channel = rest.partition(":")
                self._dirty_channels.add((app_id, channel))
            elif kind == "conns":
                self._dirty_apps.add(rest)
        for app_id, state in list(registry.apps.items()):
            self._dirty_apps.add(app_id)
            for channel in state.channels:
                self._dirty_channels.add((app_id, channel))
        failures = self._write_failures
        self._schedule_flush()
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})
        if self._write_failures != failures:
            raise RedisError("re-publishing this node's counts failed")

    async def _resync_presence(self) -> None:
        """Re-join this node's presence members (Redis may have lost them)."""
        for app_id, state in list(self.engine.registry.apps.items()):
            for channel, members in list(state.presence.items()):
                for conn in list(state.channels.get(channel) or {}):
                    user_id = conn.channels.get(channel)
                    if user_id is not None:
                        member = members.get(user_id)
                        await self._rejoin(app_id, channel, conn, user_id, member.info if member else None)

    async def _rejoin(self, app_id: str, channel: str, conn: Any, user_id: str, info: Any) -> None:
        field = f"{self.node_id}:{conn.socket_id}"
        async with self._field_turn(field):
            if conn.closed or conn.channels.get(channel) != user_id:
                return  # left meanwhile (its leave ran or is queued behind us)
            await self._presence_join(app_id, channel, conn.socket_id, user_id, info, 0)

    async def _replay_lost_leaves(self) -> int:
        replayed = 0
        for field, (app_id, channel, user_id) in list(self._lost_leaves.items()):
            async with self._field_turn(field):
                if self._lost_leaves.get(field) != (app_id, channel, user_id):
                    continue  # the socket joined again: its membership stands
                left = await self._run_leave(app_id, channel, field, user_id)
                del self._lost_leaves[field]
                replayed += 1
            if left is not None:
                self.engine.member_left_cluster(app_id, channel, left)
        return replayed

    # -- presence ------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _field_turn(self, field: str):
        """One presence operation at a time for one socket, first come first served."""
        entry = self._field_locks.get(field)
        if entry is None:
            entry = self._field_locks[field] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._field_locks[field]

    def _member_message(self, app_id: str, channel: str, text: str, except_socket_id: str | None) -> str:
        # "t" first: unlike our other messages this one is delivered on this node too.
        return frames.dumps(
            {"t": "m", "n": self.node_id, "a": app_id, "c": channel, "f": text, "x": except_socket_id}
        )

    async def presence_join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, info: Any, max_members: int
    ) -> PresenceJoin:
        if self._outage is not None:  # peers may not hear its member_added yet
            raise AdapterUnavailable(self._outage)
        field = f"{self.node_id}:{socket_id}"
        async with self._field_turn(field):
            try:
                joined = await self._retry_once(
                    lambda: self._presence_join(app_id, channel, socket_id, user_id, info, max_members)
                )
            except (RedisError, OSError) as exc:
                self._went_down(f"presence join failed: {exc}")
                raise AdapterUnavailable(str(exc)) from exc
            self._lost_leaves.pop(field, None)  # joined again: an unrecorded earlier leave is moot
            return joined

    async def _presence_join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, info: Any, max_members: int
    ) -> PresenceJoin:
        field = f"{self.node_id}:{socket_id}"
        added = self._member_message(app_id, channel, frames.member_added(channel, user_id, info), socket_id)
        status, flat = await self._join(
            keys=self._presence_keys(app_id, channel),
            args=[field, user_id, frames.dumps(info), max_members, self.topic, added],
        )
        members = {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
        return PresenceJoin(int(status) == 1, int(status) == -1, members)

    async def presence_leave(self, app_id: str, channel: str, socket_id: str, user_id: str) -> str | None:
        """Returns the user id when its last connection in the channel left, else None. A leave
        Redis does not take is kept and replayed when it answers again (no ghost member)."""
        field = f"{self.node_id}:{socket_id}"
        if self._outage is not None:  # replayed once every peer listens again (see _recover)
            self._lost_leaves[field] = (app_id, channel, user_id)
            return None
        async with self._field_turn(field):
            try:
                return await self._retry_once(lambda: self._run_leave(app_id, channel, field, user_id))
            except (RedisError, OSError) as exc:
                self._lost_leaves[field] = (app_id, channel, user_id)
                log.warning("presence leave of %s in %s kept for replay: %s", socket_id, channel, exc)
                self._went_down(f"presence leave failed: {exc}")
                return None

    async def _run_leave(
        self, app_id: str, channel: str, field: str, user_id: str, node: str | None = None
    ) -> str | None:
        removed = self._member_message(app_id, channel, frames.member_removed(channel, user_id), None)
        left, uid = await self._leave(
            keys=self._presence_keys(app_id, channel, node), args=[field, self.topic, removed]
        )
        return uid if int(left) == 1 else None

    async def _retry_once(self, operation: Any) -> Any:
        """Run ``operation``; after a connection error, once more on a fresh connection."""
        try:
            return await operation()
        except (RedisError, OSError):
            await self.redis.connection_pool.disconnect(inuse_connections=False)
            return await operation()

    async def presence_update(self, app_id: str, channel: str, user_id: str, info: Any) -> None:
        key = self._k("pinfo", app_id, channel)
        try:
            if await self.redis.hexists(key, user_id):
                await self.redis.hset(key, user_id, frames.dumps(info))
        except (RedisError, OSError) as exc:
            self._went_down(f"presence update failed: {exc}")
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
            self._went_down(f"query failed: {exc}")
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
                self._went_down(f"heartbeat failed: {exc}")  # logged once per outage
            except Exception:
                log.exception("dead-node cleanup failed")
            await asyncio.sleep(self.heartbeat_interval)

    async def _reap_dead_nodes(self, now: float) -> None:
        nodes = await self.redis.zrange(self._k("nodes"), 0, -1, withscores=True)
        live = sorted(n for n, seen in nodes if now - seen <= self.node_timeout)
        dead = [n for n, seen in nodes if now - seen > self.node_timeout]
        self._peers = set(live)
        if self._outage is not None or now - self._up_since < self.node_timeout:
            return  # just back from an outage: peers had no chance to heartbeat yet
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
                        keys=self._channel_count_keys(app_id, channel, node),
                        args=self._channel_count_args(app_id, channel, node, 0),
                    )
                    self.engine.cluster_count_changed(app_id, channel, int(before), int(after))
                else:
                    await self.redis.hdel(key, node)
            elif kind == "pconn":
                app_id, _, channel = rest.partition(":")
                owned = {f: u for f, u in (await self.redis.hgetall(key)).items() if f.startswith(node + ":")}
                for field, user_id in owned.items():
                    # Our own members' events at shutdown go out too: peers see them leave now.
                    left = await self._run_leave(app_id, channel, field, user_id, node)
                    if left is not None and node != self.node_id:
                        self.engine.member_left_cluster(app_id, channel, left)
        await self.redis.delete(index)


def _settle(outbox: list[tuple[str, asyncio.Future | None]], error: Exception | None) -> None:
    """Wake the publishers waiting on ``outbox``: accepted by Redis, or failed with ``error``."""
    for _message, done in outbox:
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
