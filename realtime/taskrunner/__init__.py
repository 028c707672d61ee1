"""Task runners: where slow side effects run (ARCHITECTURE rule 5).

``TASK_RUNNER_DRIVER`` picks the driver: ``celery`` (a broker and ``celery -A sockudo_project worker``
processes), ``inprocess`` (a bounded thread pool inside this process, the embedded default) or a
dotted path to a ``TaskRunner`` subclass. Unset, it is ``celery`` when ``CELERY_BROKER_URL`` is set,
else ``inprocess``. Tasks are the same functions under every driver (see ``base``).
"""

from __future__ import annotations

from typing import Any

from realtime.conf import server_settings
from realtime.conf.drivers import Driver, resolve
from realtime.taskrunner.base import Retry, TaskRunner, TaskSpec, task

__all__ = ["Retry", "TaskRunner", "TaskSpec", "driver_path", "get_task_runner", "set_task_runner", "task"]

DRIVERS = {
    "celery": "realtime.taskrunner.celery.CeleryRunner",
    "inprocess": "realtime.taskrunner.inprocess.InProcessRunner",
}


def driver_path(settings: Any) -> str:
    driver = settings.TASK_RUNNER_DRIVER or ("celery" if settings.CELERY_BROKER_URL else "inprocess")
    return resolve(DRIVERS, driver)


_runner: Driver[TaskRunner] = Driver(
    DRIVERS,
    choose=lambda: driver_path(server_settings()),
    build=lambda cls: cls.from_settings(server_settings()),
)
get_task_runner = _runner.get  # this process's runner (cheap to build: drivers start lazily)
set_task_runner = _runner.set  # for tests
