"""Asyncio Redis clients with a bounded pool that waits for a free connection.

redis-py's default asyncio pool refuses a command outright (``MaxConnectionsError``) once 100 are in
flight, which a burst of concurrent publishes or subscribes reaches easily. A blocking pool queues
the command instead and only fails after ``timeout`` seconds, like any other Redis outage.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

MAX_CONNECTIONS = 32  # per client (one per process and event loop)
WAIT_TIMEOUT = 5.0  # seconds a command may wait for a free connection


def async_client(url: str, **options: Any) -> aioredis.Redis:
    """A client for the running event loop (redis.asyncio connections belong to one loop)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=WAIT_TIMEOUT, **options
    )
    return aioredis.Redis(connection_pool=pool)
