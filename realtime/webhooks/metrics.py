"""Prometheus series of webhook deliveries (spec/webhooks.md §9); ``/metrics`` exports the default
registry. In a Celery worker they count in that worker's process (scrape it with prometheus_client's
multiprocess mode or a worker exporter); with the in-process runner they appear on the server's own
``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "sockudo_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: success, retry (a retryable failure that will be tried "
    "again) or failed (permanent failure, or the retry policy was exhausted).",
    ["app_id", "result"],
)
DELIVERY_SECONDS = Histogram(
    "sockudo_webhook_delivery_seconds",
    "Duration of one webhook HTTP attempt (request sent to response or error).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
