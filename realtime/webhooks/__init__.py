"""Webhooks: channel, presence and client-event lifecycle events POSTed to an app's backend in
Pusher's format (spec/webhooks.md).

``sink`` turns the engine's events into delivery tasks on the event loop (cheap check, debounced
leaves, 50 ms batches); ``delivery`` is the task (runs in a Celery worker or the in-process runner:
reload the app, filter per webhook, sign, POST, retry); ``config`` reads an app's ``webhooks`` list;
``retry`` is the backoff policy; ``metrics`` the Prometheus series.
"""
