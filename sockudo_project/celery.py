"""The Celery app: webhook deliveries (and later push) run in ``celery -A sockudo_project worker``.

The broker is ``CELERY_BROKER_URL`` (``redis://...`` or ``amqp://...``); without it the server runs
the same tasks in its in-process runner and no worker is needed (``realtime/taskrunner/``). Workers
read the same environment as the server: they reload apps (key, secret, current webhook config) by
id through the app manager, so secrets never travel through the broker.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sockudo_project.settings")

from realtime.conf import server_settings  # noqa: E402 - needs DJANGO_SETTINGS_MODULE

app = Celery("sockudo_project")

_settings = server_settings()
app.conf.update(
    broker_url=_settings.CELERY_BROKER_URL or None,
    broker_connection_retry_on_startup=True,
    # Webhook tasks go to their own queue, so workers can be dedicated to it (``-Q webhooks``).
    task_routes={"sockudo.webhooks.*": {"queue": _settings.WEBHOOK_QUEUE}},
    task_ignore_result=True,
    # At least once: a task is acknowledged after it ran, so a worker killed mid-delivery leaves
    # it to another worker (receivers are idempotent by contract, webhooks.md §1).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # One message at a time per worker process: deliveries are slow network calls, prefetching
    # many would park them behind one slow receiver.
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
)
app.autodiscover_tasks(["realtime.webhooks"])
