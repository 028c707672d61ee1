"""Prometheus metrics of the realtime server: the core series of operations.md §4.1 a V1 node has.

The socket path never touches prometheus_client. It bumps plain integers on a per-app ``AppStats``
(one dict lookup and a few additions per frame, or per broadcast for a fan-out, never anything per
subscriber). ``flush`` moves the pending amounts into prometheus_client on the event loop: before
every scrape of ``/metrics`` and, when several worker processes share prometheus_client's
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, set by ``serve --workers``), once a second,
so a scrape of any worker reports every worker (values of the other workers lag by up to 1 s).

Names follow upstream with the ``sockudo_`` prefix, labelled by ``app_id``. prometheus_client
always appends ``_total`` to a counter, so the four byte counters whose upstream names have no
``_total`` are exported as gauges that only grow (``rate()`` works the same on them).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
import threading
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from history import db as history_db
from realtime.protocol.channels import kind_of
from realtime.ratelimit import refusals as ratelimit_refusals

if TYPE_CHECKING:
    from realtime.node.engine import Engine

log = logging.getLogger(__name__)

# Upstream has no ``*_created`` series; they would double the number of series for nothing.
prometheus_client.disable_created_metrics()

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
FLUSH_INTERVAL = 1.0  # seconds; only matters with several processes (see the module docstring)
DISABLED_BODY = "# Metrics collection is not enabled.\n"

# Upstream's default buckets, in milliseconds (operations.md §4).
LATENCY_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
_BOUNDS = (*LATENCY_BUCKETS_MS, math.inf)

CONNECTED = Gauge("sockudo_connected", "Open WebSocket connections.", ["app_id"], multiprocess_mode="livesum")
NEW_CONNECTIONS = Counter("sockudo_new_connections_total", "WebSocket connections opened.", ["app_id"])
DISCONNECTIONS = Counter("sockudo_new_disconnections_total", "WebSocket connections closed.", ["app_id"])
CONNECTION_ERRORS = Counter(
    "sockudo_connection_errors_total",
    "Protocol errors sent to sockets (pusher:error frames and error closes), by Pusher error code.",
    ["app_id", "error_type"],
)
WS_MESSAGES_RECEIVED = Counter(
    "sockudo_ws_messages_received_total", "WebSocket messages received.", ["app_id"]
)
WS_MESSAGES_SENT = Counter("sockudo_ws_messages_sent_total", "WebSocket messages sent.", ["app_id"])
WS_RECEIVED_BYTES = Gauge(
    "sockudo_socket_received_bytes",
    "WebSocket message bytes received (a counter; only grows).",
    ["app_id"],
    multiprocess_mode="sum",
)
WS_TRANSMITTED_BYTES = Gauge(
    "sockudo_socket_transmitted_bytes",
    "WebSocket bytes sent, frame headers included (a counter; only grows).",
    ["app_id"],
    multiprocess_mode="sum",
)
HTTP_CALLS = Counter("sockudo_http_calls_received_total", "Signed HTTP API calls.", ["app_id"])
HTTP_RECEIVED_BYTES = Gauge(
    "sockudo_http_received_bytes",
    "HTTP API request body bytes (a counter; only grows).",
    ["app_id"],
    multiprocess_mode="sum",
)
HTTP_TRANSMITTED_BYTES = Gauge(
    "sockudo_http_transmitted_bytes",
    "HTTP API response body bytes (a counter; only grows).",
    ["app_id"],
    multiprocess_mode="sum",
)
BROADCAST_LATENCY = Histogram(
    "sockudo_broadcast_latency_ms",
    "Time from the start of a broadcast's fan-out on this node to its last socket write (ms); "
    "not recorded for broadcasts without recipients.",
    ["app_id", "channel_type", "recipient_count_bucket"],
    buckets=LATENCY_BUCKETS_MS,
)
HISTORY_READ_FAILURES = Counter(
    "sockudo_history_read_failures_total",
    "Durable-history reads of the WebSocket side that failed (answered 4303 or resume_failed), by operation.",
    ["app_id", "operation"],
)
HISTORY_READ_RECOVERIES = Counter(
    "sockudo_history_read_recoveries_total",
    "Durable-history reads of an app that worked again after failures.",
    ["app_id"],
)
HISTORY_DISCARDED_CONNECTIONS = Counter(
    "sockudo_history_db_discarded_connections_total",
    "Broken database connections closed by history work outside requests (reads, writer, retention).",
)
HISTORY_RETENTION_PASSES = Counter(
    "sockudo_history_retention_passes_total",
    "History retention passes, by outcome (ok, failed).",
    ["outcome"],
)
# history.db counter -> (metric, labels)
_HISTORY_COUNTS: tuple[tuple[str, Any], ...] = (
    ("discarded_connections", HISTORY_DISCARDED_CONNECTIONS),
    ("retention_ok", HISTORY_RETENTION_PASSES.labels("ok")),
    ("retention_failed", HISTORY_RETENTION_PASSES.labels("failed")),
)

ADAPTER_OUTAGES = Counter(
    "sockudo_adapter_outages_total",
    "Times the cluster adapter lost its backend (Redis): publishes answer 503 until it recovers.",
)
ADAPTER_RECOVERIES = Counter(
    "sockudo_adapter_recoveries_total",
    "Times the cluster adapter came back after an outage (resubscribed, state re-published).",
)
RATE_LIMIT_REFUSALS = Counter(
    "sockudo_rate_limit_refusals_total",
    "Requests refused by a rate limit, by limit (auth_failures, upgrade_ip, app_publish, app_read, "
    "store_down); app_id unknown when the request named no known app.",
    ["app_id", "limit"],
)


def channel_type(channel: str) -> str:
    kind = kind_of(channel)
    if kind.presence:
        return "presence"
    if kind.encrypted:
        return "private-encrypted"
    if kind.requires_auth:
        return "private"
    return "cache" if kind.cache else "public"


def recipient_bucket(count: int) -> str:
    if count <= 10:
        return "xs"
    if count <= 100:
        return "sm"
    if count <= 1000:
        return "md"
    return "lg" if count <= 10000 else "xl"


class AppStats:
    """Amounts not yet flushed to prometheus_client, for one app (event loop thread only)."""

    __slots__ = (
        "opened",
        "closed",
        "ws_in",
        "ws_in_bytes",
        "ws_out",
        "ws_out_bytes",
        "http_calls",
        "http_in_bytes",
        "http_out_bytes",
    )

    def __init__(self) -> None:
        self.opened = self.closed = 0
        self.ws_in = self.ws_in_bytes = self.ws_out = self.ws_out_bytes = 0
        self.http_calls = self.http_in_bytes = self.http_out_bytes = 0


# AppStats field -> the metric it feeds.
_FIELDS: tuple[tuple[str, Counter | Gauge], ...] = (
    ("opened", NEW_CONNECTIONS),
    ("closed", DISCONNECTIONS),
    ("ws_in", WS_MESSAGES_RECEIVED),
    ("ws_in_bytes", WS_RECEIVED_BYTES),
    ("ws_out", WS_MESSAGES_SENT),
    ("ws_out_bytes", WS_TRANSMITTED_BYTES),
    ("http_calls", HTTP_CALLS),
    ("http_in_bytes", HTTP_RECEIVED_BYTES),
    ("http_out_bytes", HTTP_TRANSMITTED_BYTES),
)


class NodeStats:
    """This process's pending amounts. Touched only on the event loop thread (so no locks)."""

    def __init__(self) -> None:
        self.apps: dict[str, AppStats] = {}
        self.errors: dict[tuple[str, str], int] = {}
        # (app_id, channel_type, recipient bucket) -> counts per bucket bound, then the sum (ms).
        self.latency: dict[tuple[str, str, str], list[float]] = {}
        self.history_failures: dict[tuple[str, str], int] = {}  # (app_id, operation)
        self.history_recoveries: dict[str, int] = {}
        self.history_counts: dict[str, int] = {}  # history.db counters already exported
        self.refusal_counts: dict[tuple[str, str], int] = {}  # rate-limit refusals already exported

    def app(self, app_id: str) -> AppStats:
        stats = self.apps.get(app_id)
        if stats is None:
            stats = self.apps[app_id] = AppStats()
        return stats

    # -- the socket path -----------------------------------------------------------------------
    def opened(self, app_id: str) -> None:
        self.app(app_id).opened += 1

    def closed(self, app_id: str) -> None:
        self.app(app_id).closed += 1

    def received(self, app_id: str, size: int) -> None:
        stats = self.app(app_id)
        stats.ws_in += 1
        stats.ws_in_bytes += size

    def sent(self, app_id: str, size: int) -> None:
        stats = self.app(app_id)
        stats.ws_out += 1
        stats.ws_out_bytes += size

    def broadcast(self, app_id: str, channel: str, recipients: int, size: int, seconds: float) -> None:
        """One fan-out reached ``recipients`` sockets with frames of ``size`` bytes."""
        stats = self.app(app_id)
        stats.ws_out += recipients
        stats.ws_out_bytes += recipients * size
        ms = seconds * 1000.0
        key = (app_id, channel_type(channel), recipient_bucket(recipients))
        row = self.latency.get(key)
        if row is None:
            row = self.latency[key] = [0] * (len(_BOUNDS) + 1)
        row[bisect.bisect_left(_BOUNDS, ms)] += 1
        row[-1] += ms

    def error(self, app_id: str, code: int) -> None:
        key = (app_id, str(code))
        self.errors[key] = self.errors.get(key, 0) + 1

    def history_read_failed(self, app_id: str, operation: str) -> None:
        key = (app_id, operation)
        self.history_failures[key] = self.history_failures.get(key, 0) + 1

    def history_read_recovered(self, app_id: str) -> None:
        self.history_recoveries[app_id] = self.history_recoveries.get(app_id, 0) + 1


STATS = NodeStats()

_children: dict[str, tuple[Any, ...]] = {}


def _app_children(app_id: str) -> tuple[Any, ...]:
    children = _children.get(app_id)
    if children is None:
        children = _children[app_id] = tuple(metric.labels(app_id) for _, metric in _FIELDS)
    return children


def flush(engine: Engine | None, stats: NodeStats = STATS) -> None:
    """Move pending amounts into prometheus_client; set the connection gauges. Event loop only."""
    registry = engine.registry if engine is not None else None
    for app_id, app_stats in stats.apps.items():
        children = _app_children(app_id)
        for (field, _), child in zip(_FIELDS, children, strict=True):
            amount = getattr(app_stats, field)
            if amount:
                child.inc(amount)
                setattr(app_stats, field, 0)
        CONNECTED.labels(app_id).set(registry.app_connection_count(app_id) if registry else 0)
    if stats.errors:
        errors, stats.errors = stats.errors, {}
        for (app_id, code), amount in errors.items():
            CONNECTION_ERRORS.labels(app_id, code).inc(amount)
    for key, row in stats.latency.items():
        if row[-1] or any(row[:-1]):
            _add_observations(BROADCAST_LATENCY.labels(*key), row)
    _flush_history(stats)
    _flush_refusals(stats)
    for metric in _pending:
        metric.flush()


def _flush_history(stats: NodeStats) -> None:
    if stats.history_failures:
        failures, stats.history_failures = stats.history_failures, {}
        for (app_id, operation), amount in failures.items():
            HISTORY_READ_FAILURES.labels(app_id, operation).inc(amount)
    if stats.history_recoveries:
        recoveries, stats.history_recoveries = stats.history_recoveries, {}
        for app_id, amount in recoveries.items():
            HISTORY_READ_RECOVERIES.labels(app_id).inc(amount)
    counts = history_db.snapshot()  # counted in worker threads as plain numbers
    for name, child in _HISTORY_COUNTS:
        amount = counts.get(name, 0) - stats.history_counts.get(name, 0)
        if amount > 0:
            child.inc(amount)
            stats.history_counts[name] = counts[name]


def _flush_refusals(stats: NodeStats) -> None:
    counts = ratelimit_refusals.snapshot()  # counted by whichever thread refused, as plain numbers
    for key, total in counts.items():
        amount = total - stats.refusal_counts.get(key, 0)
        if amount > 0:
            RATE_LIMIT_REFUSALS.labels(*key).inc(amount)
            stats.refusal_counts[key] = total


def _add_observations(child: Any, row: list[float]) -> None:
    """Bulk-add ``row`` (a count per bucket bound, then the sum) to a histogram child and zero it.

    Histogram.observe takes one value at a time. ``_buckets`` holds per-bucket (not cumulative)
    counts in bound order, in every prometheus_client since 0.4.
    """
    for index, count in enumerate(row[:-1]):
        if count:
            child._buckets[index].inc(count)
            row[index] = 0
    child._sum.inc(row[-1])
    row[-1] = 0


# -- metrics whose updates wait for ``flush`` ---------------------------------------------------------
_pending: list[PendingMetric] = []
_pending_lock = threading.Lock()


class _PendingCounter:
    __slots__ = ("child", "amount")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.amount = 0.0

    def inc(self, amount: float = 1) -> None:
        with _pending_lock:
            self.amount += amount

    def flush(self) -> None:
        with _pending_lock:
            amount, self.amount = self.amount, 0.0
        if amount:
            self.child.inc(amount)


class _PendingHistogram:
    __slots__ = ("child", "bounds", "row")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds = child._upper_bounds
        self.row = [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        with _pending_lock:
            row = self.row
            row[bisect.bisect_left(self.bounds, value)] += 1
            row[-1] += value

    def flush(self) -> None:
        with _pending_lock:
            row, self.row = self.row, [0.0] * len(self.row)
        if row[-1] or any(row[:-1]):
            _add_observations(self.child, row)


class PendingMetric:
    """A prometheus_client Counter or Histogram whose ``inc``/``observe`` add to plain numbers
    that ``flush`` hands over (before every scrape, and once a second with several workers).

    prometheus_client does a label lookup and, in multiprocess mode, a locked write to a memory-
    mapped file for every update; an HTTP request made about a dozen of them through
    django-prometheus, a tenth of a publish's CPU. Same series, same values once flushed.
    """

    def __init__(self, metric: Counter | Histogram) -> None:
        self.metric = metric
        self.names: tuple[str, ...] = tuple(metric._labelnames)
        self.kind = _PendingHistogram if isinstance(metric, Histogram) else _PendingCounter
        self.children: dict[tuple[str, ...], Any] = {}
        self.by_given: dict[tuple, Any] = {}  # label values or items exactly as passed -> child
        self.own = None if self.names else self.kind(metric)
        with _pending_lock:
            _pending.append(self)

    def labels(self, *values: Any, **labels: Any) -> Any:
        # Callers repeat the same few label sets: look them up as given before normalising.
        given = values or tuple(labels.items())
        child = self.by_given.get(given)
        if child is None:
            key = tuple(map(str, values or [labels[name] for name in self.names]))
            with _pending_lock:
                child = self.children.get(key)
                if child is None:
                    child = self.children[key] = self.kind(self.metric.labels(*key))
                self.by_given[given] = child
        return child

    def inc(self, amount: float = 1) -> None:
        self.own.inc(amount)

    def observe(self, value: float) -> None:
        self.own.observe(value)

    def flush(self) -> None:
        if self.own is not None:
            self.own.flush()
        for child in list(self.children.values()):
            child.flush()


async def flush_forever(engine: Engine) -> None:
    """Keep the shared multiprocess files fresh for scrapes served by the other workers."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            flush(engine)
        except Exception:  # a failed flush must not end the loop; the next one retries
            log.exception("metrics flush failed")


def render() -> bytes:
    """The Prometheus text of this process, or of every worker in multiprocess mode (blocking)."""
    if MULTIPROCESS:
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return prometheus_client.generate_latest(registry)


# The classic text format (operations.md §4), which ``generate_latest`` writes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
