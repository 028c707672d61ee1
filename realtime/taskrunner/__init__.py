"""Task runners: where slow side effects run (ARCHITECTURE rule 5).

``TASK_RUNNER_DRIVER`` picks the driver: ``celery`` (a broker and ``celery -A sockudo_project worker``
processes), ``inprocess`` (a bounded thread pool inside this process, the embedded default) or a
dotted path to a ``TaskRunner`` subclass. Unset, it is ``celery`` when ``CELERY_BROKER_URL`` is set,
else ``inprocess``. Tasks are the same functions under every driver (see ``base``).
"""

from __future__ import annotations

import threading
from typing import Any

from django.utils.module_loading import import_string

from realtime.conf import server_settings
from realtime.taskrunner.base import Retry, TaskRunner, TaskSpec, task

__all__ = ["Retry", "TaskRunner", "TaskSpec", "driver_path", "get_task_runner", "set_task_runner", "task"]

DRIVERS = {
    "celery": "realtime.taskrunner.celery.CeleryRunner",
    "inprocess": "realtime.taskrunner.inprocess.InProcessRunner",
}

_lock = threading.Lock()
_runner: TaskRunner | None = None


def driver_path(settings: dict[str, Any]) -> str:
    driver = settings.TASK_RUNNER_DRIVER or ("celery" if settings.CELERY_BROKER_URL else "inprocess")
    return DRIVERS.get(driver, driver)


def get_task_runner() -> TaskRunner:
    """This process's runner, built once (thread-safe; cheap to build: drivers start lazily)."""
    global _runner
    if _runner is None:
        with _lock:
            if _runner is None:
                settings = server_settings()
                _runner = import_string(driver_path(settings)).from_settings(settings)
    return _runner


def set_task_runner(runner: TaskRunner | None) -> None:
    """Replace (or with ``None`` forget) the process's runner; for tests."""
    global _runner
    with _lock:
        _runner = runner
