"""The Celery task runner: tasks travel through a broker (Redis or RabbitMQ, ``CELERY_BROKER_URL``) to
``celery -A sockudo_project worker`` processes on any machine.

Publishing to the broker is network I/O, so ``submit`` only puts the task on a bounded in-memory
queue; one sender thread publishes it (kombu producers are not shared across threads). The broker's
queue is the durable part: workers acknowledge late (``sockudo_project/celery.py``), so a worker that
dies mid-task leaves it to another. ``Retry`` becomes ``Task.retry(countdown=...)``: the retry is a new
broker message, no worker sleeps while it waits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from realtime.taskrunner.base import Retry, TaskRunner, TaskSpec

log = logging.getLogger(__name__)

# Tasks waiting for the sender thread; beyond it (a broker that stopped answering) new ones are
# refused and logged instead of growing memory without bound.
MAX_WAITING = 10_000


class CeleryRunner(TaskRunner):
    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self._queue: queue.Queue[tuple[TaskSpec, dict[str, Any], float]] = queue.Queue(max_waiting)
        self._lock = threading.Lock()
        self._sender: threading.Thread | None = None

    @property
    def app(self) -> Any:
        # The project names its Celery app in settings (``CELERY_APP``), as it names its URLconf;
        # imported on first use, off the event loop.
        from django.conf import settings
        from django.utils.module_loading import import_string

        return import_string(settings.CELERY_APP)

    def submit(self, spec: TaskSpec, kwargs: dict[str, Any], countdown: float = 0.0) -> bool:
        if self._sender is None:
            with self._lock:
                if self._sender is None:
                    self._sender = threading.Thread(
                        target=self._send_forever, name="sockudo-celery", daemon=True
                    )
                    self._sender.start()
        try:
            self._queue.put_nowait((spec, kwargs, countdown))
        except queue.Full:
            log.error("Celery send queue full (%d): %s dropped", self._queue.maxsize, spec.name)
            return False
        return True

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def check(self) -> bool:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
        return True

    def _send_forever(self) -> None:
        app = self.app
        while True:
            spec, kwargs, countdown = self._queue.get()
            try:
                app.send_task(spec.name, kwargs=kwargs, countdown=countdown or None)
            except Exception:  # the broker is down: kombu already retried the publish
                log.exception("could not hand task %s to the Celery broker", spec.name)
            finally:
                self._queue.task_done()


def celery_task(spec: TaskSpec) -> Any:
    """The Celery task that runs ``spec`` in a worker (declared in a ``tasks`` module Celery
    autodiscovers). ``Retry`` maps to ``Task.retry``; the task's own policy bounds the retries."""
    from celery import shared_task

    @shared_task(name=spec.name, bind=True, max_retries=None, ignore_result=True)
    def run(self: Any, **kwargs: Any) -> None:
        try:
            spec(**kwargs)
        except Retry as again:
            raise self.retry(kwargs={**kwargs, **again.changes}, countdown=again.countdown) from None

    return run
