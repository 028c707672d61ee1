"""The webhook sink: the engine's lifecycle events become delivery tasks (spec/webhooks.md §1, §7).

Runs on the event loop, so everything here is in-memory work:

* cheap check first: the app (from the app manager's in-process cache) must have a webhook listing
  the event name whose channel filter passes; otherwise nothing else happens. ``wants`` lets callers
  skip even building an event (client events).
* ``channel_vacated`` and ``member_removed`` wait ``WEBHOOK_LEAVE_DELAY_MS`` (3 s) and are sent only
  if the channel is still empty / the user still absent, cluster-wide (the adapter answers), so a page
  reload does not tell the backend a user left and came back.
* batching: events wait up to ``WEBHOOK_BATCHING_DURATION`` ms (50) in one node-wide buffer; a flush
  groups them by app into jobs of at most ``WEBHOOK_BATCHING_SIZE`` (100) events. ``ai_*`` lifecycle
  events skip the buffer. Events still buffered when the process dies are lost (a 50 ms window);
  a graceful shutdown flushes them and sends due leave events at once.
* each job becomes one task per webhook target that wants some of its events (the task filters
  again with the then-current config) handed to the task runner, which never blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from apps_admin.managers import get_app_manager
from realtime.conf import server_settings
from realtime.node.events import EventSink
from realtime.node.health import register_check
from realtime.taskrunner import TaskRunner, get_task_runner
from realtime.webhooks.config import webhooks_of
from realtime.webhooks.delivery import deliver

if TYPE_CHECKING:
    from apps_admin.models import App
    from realtime.node.engine import Engine

log = logging.getLogger(__name__)

# Count events never fire for internal ``[meta]`` channels (spec/webhooks.md §3).
COUNT_EVENTS = frozenset({"channel_occupied", "channel_vacated", "subscription_count"})
LEAVE_EVENTS = frozenset({"channel_vacated", "member_removed"})
# More buffered events than this are flushed at once instead of waiting for the timer.
MAX_BUFFERED = 10_000
DRAIN_ON_CLOSE = 5.0  # seconds graceful shutdown lets queued deliveries leave the process


class WebhookSink(EventSink):
    def __init__(self, engine: Engine) -> None:

        s = server_settings()
        self.engine = engine
        self.apps = get_app_manager()
        self.batching = bool(s.WEBHOOK_BATCHING_ENABLED)
        self.flush_interval = max(0, int(s.WEBHOOK_BATCHING_DURATION)) / 1000
        self.batch_size = max(1, int(s.WEBHOOK_BATCHING_SIZE))
        self.leave_delay = max(0, int(s.WEBHOOK_LEAVE_DELAY_MS)) / 1000
        self._buffer: list[tuple[App, int, dict[str, Any]]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._leaving: dict[tuple[str, str, str, str], tuple[asyncio.TimerHandle, App, dict[str, Any]]] = {}
        self._tasks: set[asyncio.Future] = set()
        self._runner: TaskRunner | None = None
        if type(self.runner).check is not TaskRunner.check:  # a broker that can be down: /up says so
            register_check("webhook_queue", self._queue_ready, critical=False)

    @property
    def runner(self) -> TaskRunner:
        if self._runner is None:
            self._runner = get_task_runner()
        return self._runner

    # -- EventSink -----------------------------------------------------------------------------
    def wants(self, app_id: str, name: str) -> bool:
        hit, app = self.apps.cached_by_id(app_id)
        if not hit:
            return True  # not cached right now: ``emit`` loads it off the loop and decides
        return app is not None and name in webhooks_of(app).names

    def emit(self, app_id: str, event: dict[str, Any]) -> None:
        hit, app = self.apps.cached_by_id(app_id)
        if hit:
            if app is not None:
                self._accept(app, event)
            return
        self._track(self._load_then_accept(app_id, event))

    async def close(self) -> None:
        """Graceful shutdown: leave events that were waiting are checked and sent now, the buffer
        is flushed, and queued deliveries get a few seconds to leave the process."""
        leaving = list(self._leaving.values())
        self._leaving.clear()
        for handle, _app, _event in leaving:
            handle.cancel()
        if leaving:
            await asyncio.gather(
                *(self._recheck(app, event) for _h, app, event in leaving), return_exceptions=True
            )
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=DRAIN_ON_CLOSE)
        self.flush()
        if self._runner is not None and not await asyncio.to_thread(self._runner.drain, DRAIN_ON_CLOSE):
            log.warning("webhook deliveries still queued at shutdown are dropped")

    async def _queue_ready(self, engine: Engine) -> bool:
        return await asyncio.to_thread(self.runner.check)

    # -- the pipeline --------------------------------------------------------------------------
    async def _load_then_accept(self, app_id: str, event: dict[str, Any]) -> None:
        app = await sync_to_async(self.apps.load_by_id, thread_sensitive=False)(app_id)
        if app is not None:
            self._accept(app, event)

    def _accept(self, app: App, event: dict[str, Any]) -> None:
        name = event["name"]
        channel = event.get("channel")
        if name in COUNT_EVENTS and isinstance(channel, str) and channel.startswith("[meta]"):
            return
        hooks = webhooks_of(app)
        if not hooks.wanted(event):
            return
        if name in LEAVE_EVENTS and self.leave_delay:
            self._debounce(app, event)
            return
        self.enqueue(app, event)

    def _debounce(self, app: App, event: dict[str, Any]) -> None:
        key = (app.id, event["name"], event["channel"], str(event.get("user_id", "")))
        if key in self._leaving:
            return  # the pending check looks at the cluster state when it fires: one event at most
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self.leave_delay, self._leave_due, key)
        self._leaving[key] = (handle, app, event)

    def _leave_due(self, key: tuple[str, str, str, str]) -> None:
        entry = self._leaving.pop(key, None)
        if entry is not None:
            self._track(self._recheck(entry[1], entry[2]))

    async def _recheck(self, app: App, event: dict[str, Any]) -> None:
        """Send a delayed leave event only if it is still true for the whole cluster."""
        adapter = self.engine.adapter
        channel = event["channel"]
        try:
            if event["name"] == "channel_vacated":
                still = await adapter.subscription_count(app.id, channel) == 0
            else:
                still = event["user_id"] not in await adapter.members(app.id, channel)
        except Exception as exc:  # the cluster cannot tell: the leave did happen, so report it
            log.warning("could not re-check %s on %s (%s); sending it", event["name"], channel, exc)
            still = True
        if still:
            self.enqueue(app, event)

    def enqueue(self, app: App, event: dict[str, Any]) -> None:
        """Into the batch buffer, or straight to the runner (batching off, AI lifecycle events)."""
        now_ms = int(time.time() * 1000)
        if not self.batching or event["name"].startswith("ai_"):
            self._dispatch(app, now_ms, [event])
            return
        self._buffer.append((app, now_ms, event))
        if len(self._buffer) >= MAX_BUFFERED:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.flush_interval, self.flush)

    def flush(self) -> None:
        """Turn the buffer into jobs: grouped by app, in order, at most ``batch_size`` events each."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        buffer, self._buffer = self._buffer, []
        groups: dict[str, tuple[App, list[tuple[int, dict[str, Any]]]]] = {}
        for app, time_ms, event in buffer:
            groups.setdefault(app.id, (app, []))[1].append((time_ms, event))
        for app, items in groups.values():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                self._dispatch(app, min(t for t, _ in chunk), [e for _, e in chunk])

    def _dispatch(self, app: App, time_ms: int, events: list[dict[str, Any]]) -> None:
        job_id = uuid.uuid4().hex
        for hook in webhooks_of(app).hooks:
            mine = [e for e in events if hook.accepts(e)]
            if mine:
                job = {"job_id": job_id, "app_id": app.id, "payload": {"time_ms": time_ms, "events": mine}}
                self.runner.submit(deliver, {"job": job, "webhook": hook.index, "target": hook.target})

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook event handling failed", exc_info=task.exception())
