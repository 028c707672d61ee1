"""The in-process task runner: the embedded default when no broker is configured.

A fixed set of daemon threads takes tasks from one bounded queue; retries wait on a timer heap in
one more thread, then re-enter the queue. Nothing here touches the event loop, so a slow webhook
receiver costs a worker thread, never the sockets. Bounds: ``TASK_RUNNER_WORKERS`` tasks run at once
(20, upstream's concurrent deliveries per process); at most ``MAX_PENDING`` are queued or waiting to
retry, beyond which new tasks are refused and logged (memory stays bounded when a receiver is down
for a long time). Daemon threads never hold the process up at exit; graceful shutdown calls
``drain`` to let queued work finish within its budget.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Any

from realtime.taskrunner.base import Retry, TaskRunner, TaskSpec

log = logging.getLogger(__name__)

# 10,000 pending tasks of at most 100 events each: a few tens of MB in the worst case.
MAX_PENDING = 10_000


class InProcessRunner(TaskRunner):
    def __init__(self, workers: int = 20, max_pending: int = MAX_PENDING) -> None:
        self.workers = max(1, workers)
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[tuple[TaskSpec, dict[str, Any]]] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, TaskSpec, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._pending = 0  # queued + running + waiting to retry
        self._busy = 0  # queued + running (what ``drain`` waits for)
        self._started = False

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> InProcessRunner:
        return cls(workers=int(settings["TASK_RUNNER_WORKERS"]))

    def submit(self, spec: TaskSpec, kwargs: dict[str, Any], countdown: float = 0.0) -> bool:
        with self._cond:
            if self._pending >= self.max_pending:
                log.error("in-process task queue full (%d): %s dropped", self.max_pending, spec.name)
                return False
            self._pending += 1
            self._start()
            if countdown > 0:
                heapq.heappush(self._timers, (time.monotonic() + countdown, next(self._seq), spec, kwargs))
                self._cond.notify_all()
                return True
            self._busy += 1
        self._queue.put((spec, kwargs))
        return True

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        for n in range(self.workers):
            threading.Thread(target=self._work, name=f"sockudo-task-{n}", daemon=True).start()
        threading.Thread(target=self._tick, name="sockudo-task-timer", daemon=True).start()

    def _work(self) -> None:
        while True:
            spec, kwargs = self._queue.get()
            again: Retry | None = None
            try:
                spec(**kwargs)
            except Retry as retry:
                again = retry
            except Exception:  # a task bug must not kill the worker thread
                log.exception("task %s failed", spec.name)
            with self._cond:
                self._busy -= 1
                if again is None:
                    self._pending -= 1
                else:  # stays pending: back on the timer heap
                    due = time.monotonic() + again.countdown
                    heapq.heappush(self._timers, (due, next(self._seq), spec, {**kwargs, **again.changes}))
                self._cond.notify_all()

    def _tick(self) -> None:
        while True:
            with self._cond:
                while not self._timers or self._timers[0][0] > time.monotonic():
                    self._cond.wait(self._timers[0][0] - time.monotonic() if self._timers else None)
                _due, _seq, spec, kwargs = heapq.heappop(self._timers)
                self._busy += 1
            self._queue.put((spec, kwargs))
