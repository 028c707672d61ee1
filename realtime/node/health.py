"""The node's readiness checks: what ``/up`` asks before it answers.

Parts of the node register their own dependency here (the adapter always; a webhook queue that can
be down), so the HTTP layer serves the list without knowing who needs what.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realtime.node.engine import Engine


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One dependency of ``/up``. A failing critical check makes ``/up`` answer 503 ``ERROR``; a
    failing non-critical one (e.g. the webhook queue) only ``DEGRADED`` with 200."""

    name: str
    run: Callable[[Engine], Awaitable[bool]]
    critical: bool = True


CHECKS: list[HealthCheck] = [HealthCheck("adapter", lambda engine: engine.adapter.check())]


def register_check(name: str, run: Callable[[Engine], Awaitable[bool]], critical: bool = False) -> None:
    """Add a dependency to ``/up`` (replacing one of the same name); ``run`` returns True when healthy."""
    CHECKS[:] = [check for check in CHECKS if check.name != name]
    CHECKS.append(HealthCheck(name, run, critical))


__all__ = ["CHECKS", "HealthCheck", "register_check"]
