"""This process's graceful-shutdown state (operations.md §3.2).

Set once, from the SIGTERM/SIGINT handler (``realtime.server.node``). While it is set the node drains:
new WebSocket upgrades are answered ``503`` by the listener (``realtime.server.tuning``), ``/up``
answers ``503 DRAINING`` and the engine admits no new socket. A plain module attribute, because
the listener reads it on every accepted upgrade.
"""

from __future__ import annotations

draining = False

# What a WebSocket upgrade gets while the node drains: clients and load balancers retry elsewhere.
DRAINING_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 8\r\n"
    b"X-Health-Check: DRAINING\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"DRAINING"
)


def begin() -> None:
    """Mark the node as draining (idempotent; never cleared: the process is on its way out)."""
    global draining
    draining = True
