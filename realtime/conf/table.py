"""The table of server settings: environment variable, default, type and meaning.

One row per setting; the README's settings table is checked against it by a test, so docs and code
agree. Add a setting here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: Any
    kind: type
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ACTIVITY_TIMEOUT",
        120,
        int,
        "Seconds of client silence before the server pings (sent in the handshake).",
    ),
    Setting(
        "PONG_TIMEOUT", 30, int, "Seconds to wait for any frame after a server ping before closing with 4201."
    ),
    Setting(
        "WEBSOCKET_MAX_PAYLOAD_KB",
        64,
        int,
        "Largest inbound WebSocket message; bigger ones are closed with 1009.",
    ),
    Setting(
        "WEBSOCKET_MAX_BUFFER_KB",
        1024,
        int,
        "Unsent outbound data per connection before it is closed as a slow consumer (4100).",
    ),
    Setting(
        "WEBSOCKET_FLUSH_MAX_DELAY_MS",
        100,
        int,
        "Longest a frame waits for a busy event loop before it is written (0 = every loop turn).",
    ),
    Setting(
        "WEBSOCKET_MAX_MESSAGES",
        1000,
        int,
        "Queued outbound frames per connection on servers without a transport buffer probe.",
    ),
    Setting(
        "SOCKUDO_MAX_CONNECTIONS",
        0,
        int,
        "Connections this node accepts (0 = unlimited); over it new sockets get 4100.",
    ),
    Setting(
        "USER_AUTHENTICATION_TIMEOUT",
        3600,
        int,
        "Seconds an app with enforce_user_authentication gives a socket to sign in.",
    ),
    Setting("CACHE_CHANNEL_TTL", 3600, int, "Seconds a cache channel keeps its last event."),
    Setting(
        "PRESENCE_MAX_MEMBERS_PER_CHANNEL", 100, int, "Presence members per channel when the app sets none."
    ),
    Setting(
        "PRESENCE_MAX_MEMBER_SIZE_IN_KB", 2, int, "Presence user_info size (KiB) when the app sets none."
    ),
    Setting(
        "EVENT_LIMITS_MAX_CHANNELS_AT_ONCE", 100, int, "Channels per HTTP publish when the app sets none."
    ),
    Setting("EVENT_LIMITS_MAX_NAME_LENGTH", 200, int, "Event name length (bytes) when the app sets none."),
    Setting("EVENT_LIMITS_MAX_PAYLOAD_IN_KB", 100, int, "HTTP event payload (KiB) when the app sets none."),
    Setting("EVENT_LIMITS_MAX_BATCH_SIZE", 10, int, "Events per /batch_events when the app sets none."),
    Setting("CLIENT_EVENT_MAX_PAYLOAD_IN_KB", 10, int, "Client event payload (KiB) when the app sets none."),
    Setting(
        "CLIENT_EVENT_MAX_PER_SECOND", 10, int, "Client events per socket per window when the app sets none."
    ),
    Setting(
        "CHANNEL_LIMITS_MAX_NAME_LENGTH", 200, int, "Channel name length (bytes) when the app sets none."
    ),
    Setting("WATCHLIST_MAX_SIZE", 100, int, "Users one signed-in socket may watch."),
    Setting("HTTP_API_REQUEST_LIMIT_IN_MB", 10, int, "Largest HTTP API request body (413 above)."),
    Setting("HTTP_API_TIMESTAMP_SKEW", 600, int, "Allowed auth_timestamp skew in seconds."),
    Setting(
        "REDIS_URL", "redis://127.0.0.1:6379/0", str, "Redis for the redis adapter (and shared counters)."
    ),
    Setting(
        "REDIS_PREFIX",
        "sockudo_adapter:",
        str,
        "Key and channel prefix, so several deployments can share one Redis.",
    ),
    Setting("INSTANCE_PROCESS_ID", "", str, "This node's id in the cluster (empty = random per process)."),
    Setting("CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS", 5000, int, "How often a node announces it is alive."),
    Setting(
        "CLUSTER_HEALTH_NODE_TIMEOUT_MS",
        15000,
        int,
        "Silence after which a node is dead and its sockets and members are removed.",
    ),
    Setting(
        "CLUSTER_HEALTH_CLEANUP_INTERVAL_MS",
        5000,
        int,
        "How often the lowest live node looks for dead nodes.",
    ),
    Setting(
        "ADAPTER_DRIVER", "local", str, "Fan-out adapter: local (one process) or redis (a cluster of nodes)."
    ),
    Setting(
        "APP_MANAGER_DRIVER",
        "database",
        str,
        "Where apps live: database (the App model) or static (environment).",
    ),
    Setting(
        "APP_MANAGER_CACHE_TTL",
        300,
        int,
        "Seconds an app lookup is cached in-process (saves invalidate at once).",
    ),
    Setting(
        "HEARTBEAT_SWEEP_INTERVAL",
        1,
        int,
        "Seconds between activity/timeout sweeps over this node's sockets.",
    ),
    Setting(
        "SUBSCRIPTION_COUNT_INTERVAL", 1, int, "Seconds over which subscription_count events are coalesced."
    ),
    Setting(
        "SOCKUDO_WORKERS",
        1,
        int,
        "Worker processes of manage.py serve on one port (each a node; more than 1 needs ADAPTER_DRIVER=redis).",
    ),
    Setting(
        "GC_GEN0_THRESHOLD",
        50000,
        int,
        "Allocations between young garbage collections in serve; 0 keeps Python's 700 (see Performance).",
    ),
    Setting(
        "SHUTDOWN_GRACE_PERIOD",
        10,
        int,
        "Seconds a SIGTERM/SIGINT drain may take (sockets closed with 4200, cluster cleanup) before exit.",
    ),
    Setting(
        "HEALTH_CHECK_TIMEOUT_MS", 2000, int, "Budget of each /up dependency check (app store, adapter)."
    ),
    Setting(
        "HTTP_API_USAGE_ENABLED", True, bool, "Serve /usage, /stats and /operator/stats (unauthenticated)."
    ),
    Setting("METRICS_ENABLED", True, bool, "Serve Prometheus metrics on /metrics."),
    Setting(
        "PRESENCE_V2_UNGRACEFUL_TIMEOUT_SECONDS",
        15,
        int,
        "Seconds a V2 socket that dropped stays a presence member (a quick reconnect shows no leave).",
    ),
    Setting("EVENT_NAME_FILTERING_ENABLED", True, bool, "V2 subscriptions may filter by event names."),
    Setting(
        "TAG_FILTERING_ENABLED", False, bool, "V2 subscriptions may filter by tags and JMESPath expressions."
    ),
    Setting(
        "CONNECTION_RECOVERY_ENABLED",
        False,
        bool,
        "Protocol V2 recovery: message identity and sockudo:resume.",
    ),
    Setting("CONNECTION_RECOVERY_BUFFER_TTL", 120, int, "Seconds a message stays in the hot replay buffer."),
    Setting(
        "CONNECTION_RECOVERY_MAX_BUFFER_SIZE",
        100,
        int,
        "Messages per channel in the hot replay buffer (and per resume).",
    ),
    Setting(
        "IDEMPOTENCY_ENABLED",
        True,
        bool,
        "Replay the first response to an HTTP publish retried with the same key.",
    ),
    Setting("IDEMPOTENCY_TTL_SECONDS", 120, int, "How long a publish idempotency key is remembered."),
    # Durable history (Protocol V2); app and namespace ``history`` overrides win (history/policy.py).
    Setting(
        "HISTORY_ENABLED",
        False,
        bool,
        "Keep durable channel history (V2 channel_history, rewind, cold recovery).",
    ),
    Setting("HISTORY_REWIND_ENABLED", True, bool, "Allow rewind on subscribe where history is on."),
    Setting(
        "HISTORY_RETENTION_WINDOW_SECONDS", 86400, int, "Age after which history rows are purged (0 = keep)."
    ),
    Setting("HISTORY_MAX_MESSAGES_PER_CHANNEL", 0, int, "Newest messages kept per channel (0 = no cap)."),
    Setting("HISTORY_MAX_PAGE_SIZE", 100, int, "Default and largest history page (also caps rewind)."),
    Setting("HISTORY_PURGE_INTERVAL_SECONDS", 300, int, "Seconds between retention passes."),
    Setting(
        "HISTORY_STORE_DRIVER", "orm", str, "History store: orm (the database), memory or a dotted path."
    ),
    Setting("HISTORY_WRITER_MAX_BATCH", 256, int, "Records per group-commit batch of history writes."),
    Setting("HISTORY_WRITER_MAX_DELAY_MS", 5, int, "Longest a history write waits for its batch to fill."),
    Setting(
        "HISTORY_WRITER_QUEUE_CAPACITY",
        4096,
        int,
        "History writes waiting for the database before publishes are refused.",
    ),
    Setting(
        "SEQUENCER_DRIVER",
        "",
        str,
        "Serial sequencer: local, redis or a dotted path (empty = follow ADAPTER_DRIVER).",
    ),
    Setting(
        "RATE_LIMITER_ENABLED",
        True,
        bool,
        "Per-IP limits (failed API requests, WebSocket upgrades) and the per-app defaults below.",
    ),
    Setting(
        "RATE_LIMITER_DRIVER",
        "",
        str,
        "Counter store: memory, redis or a dotted path (empty = redis with the redis adapter, else memory).",
    ),
    Setting("RATE_LIMITER_PREFIX", "sockudo_rl:", str, "Key prefix of the redis rate-limit counters."),
    Setting(
        "RATE_LIMITER_API_MAX_REQUESTS",
        20,
        int,
        "API requests per client IP per window that fail the signature check; past it the IP is refused until the window ends.",
    ),
    Setting("RATE_LIMITER_API_WINDOW_SECONDS", 60, int, "Window of the failed API request budget (seconds)."),
    Setting(
        "RATE_LIMITER_WS_MAX_REQUESTS",
        1000,
        int,
        "WebSocket upgrades per client IP at once (token bucket size), refilled at that many per RATE_LIMITER_WS_WINDOW_SECONDS.",
    ),
    Setting(
        "RATE_LIMITER_WS_WINDOW_SECONDS",
        60,
        int,
        "Seconds in which the WebSocket upgrade bucket refills from empty to full.",
    ),
    Setting(
        "RATE_LIMITER_APP_EVENTS_PER_SECOND",
        10000,
        int,
        "Backend events per second of an app without max_backend_events_per_second (0 = no limit).",
    ),
    Setting(
        "RATE_LIMITER_APP_READS_PER_SECOND",
        1000,
        int,
        "Read requests per second of an app without max_read_requests_per_second (0 = no limit).",
    ),
    Setting(
        "RATE_LIMITER_TRUST_HOPS",
        0,
        int,
        "Trusted proxies in front of the server; the client IP is that many entries from the right of X-Forwarded-For.",
    ),
    # Webhooks (spec/webhooks.md; realtime/webhooks/) and the task runner that delivers them.
    Setting(
        "WEBHOOK_SINK",
        "realtime.webhooks.sink.WebhookSink",
        str,
        "Where channel/member/client events go: a dotted path to an EventSink (empty = nowhere, webhooks off).",
    ),
    Setting(
        "WEBHOOK_BATCHING_ENABLED",
        True,
        bool,
        "Merge webhook events into jobs of up to WEBHOOK_BATCHING_SIZE.",
    ),
    Setting("WEBHOOK_BATCHING_DURATION", 50, int, "Milliseconds webhook events wait in the batch buffer."),
    Setting("WEBHOOK_BATCHING_SIZE", 100, int, "Most events in one webhook request."),
    Setting(
        "WEBHOOK_LEAVE_DELAY_MS",
        3000,
        int,
        "Delay before channel_vacated / member_removed are re-checked cluster-wide and sent.",
    ),
    Setting(
        "WEBHOOK_REQUEST_TIMEOUT_MS", 10000, int, "Per-attempt webhook HTTP timeout (a webhook's own wins)."
    ),
    Setting(
        "WEBHOOK_RETRY_ENABLED", True, bool, "Retry webhook deliveries that failed with a retryable error."
    ),
    Setting(
        "WEBHOOK_RETRY_MAX_ATTEMPTS", 0, int, "Most attempts per webhook delivery (0 = only the time budget)."
    ),
    Setting(
        "WEBHOOK_RETRY_MAX_ELAPSED_MS",
        300000,
        int,
        "Retry budget: no attempt starts later than this after the first.",
    ),
    Setting(
        "WEBHOOK_RETRY_INITIAL_BACKOFF_MS",
        1000,
        int,
        "First wait before a webhook retry (doubles each time).",
    ),
    Setting("WEBHOOK_RETRY_MAX_BACKOFF_MS", 60000, int, "Longest wait between webhook retries."),
    Setting("WEBHOOK_QUEUE", "webhooks", str, "Celery queue of webhook deliveries (celery worker -Q ...)."),
    Setting(
        "CELERY_BROKER_URL",
        "",
        str,
        "Celery broker (redis://... or amqp://...) for webhook deliveries; empty = the in-process task runner.",
    ),
    Setting(
        "TASK_RUNNER_DRIVER",
        "",
        str,
        "Task runner: celery, inprocess or a dotted path (empty = celery when CELERY_BROKER_URL is set).",
    ),
    Setting("TASK_RUNNER_WORKERS", 20, int, "Threads of the in-process task runner (concurrent deliveries)."),
    Setting(
        "SERVER_FAST_PATHS",
        True,
        bool,
        "Serve through the tuned daphne transport (lean upgrades, corked writes, the keep-alive publish channel); false = stock daphne (refused upgrades get 403, close frames carry no reason text).",
    ),
    Setting(
        "LISTEN_BACKLOG",
        4096,
        int,
        "TCP listen backlog of manage.py serve (daphne's own default of 50 refuses connect bursts).",
    ),
    Setting(
        "WEBSOCKET_PING_INTERVAL",
        60,
        int,
        "Seconds between WebSocket-level keepalive pings that detect dead TCP peers.",
    ),
    Setting(
        "WEBSOCKET_PING_TIMEOUT",
        30,
        int,
        "Seconds a WebSocket-level ping may go unanswered before the socket is dropped.",
    ),
    Setting(
        "SOCKUDO_WORKER_CPU_AFFINITY",
        True,
        bool,
        "With --workers N, pin worker i to CPU i (round robin); avoids costly cross-core GIL hand-offs.",
    ),
)
