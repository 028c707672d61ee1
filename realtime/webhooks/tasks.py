"""The webhook tasks as Celery sees them (``sockudo_project/celery.py`` autodiscovers this module).
The code is ``delivery.deliver``, the same function the in-process runner calls."""

from __future__ import annotations

from realtime.taskrunner.celery import celery_task
from realtime.webhooks.delivery import deliver

deliver_task = celery_task(deliver)
