"""This process's graceful-shutdown state (operations.md §3.2).

Set once, from the SIGTERM/SIGINT handler (``realtime.server.node``). While it is set the node drains:
new WebSocket upgrades are answered ``503`` by the listener (``realtime.server.tuning``), ``/up``
answers ``503 DRAINING`` and the engine admits no new socket. A plain module attribute, because
the listener reads it on every accepted upgrade.
"""

from __future__ import annotations

draining = False


def begin() -> None:
    """Mark the node as draining (idempotent; never cleared: the process is on its way out)."""
    global draining
    draining = True
