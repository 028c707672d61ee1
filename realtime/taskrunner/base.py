"""The task-runner contract: how slow side effects (webhook deliveries, later push) leave the hot path.

A task is a plain function registered under a stable name with ``@task("sockudo.<area>.<name>")``;
it takes JSON-serialisable keyword arguments and either returns (done, success or a recorded final
failure) or raises ``Retry(countdown, **changes)`` to run again later with some arguments changed.
The same function runs under every driver:

* ``submit`` never blocks the caller (it runs on the event loop): drivers hand the work to their own
  threads. It returns False when the task was refused (a full in-process queue).
* A ``Retry`` runs the task again no sooner than ``countdown`` seconds later, with the keyword
  arguments updated by ``changes``. A task owns its retry policy; drivers add no retries of their own.
* Delivery is at least once for the Celery driver (late acknowledgement) and at most once for the
  in-process driver (its queue lives in this process's memory: a crash loses what is queued).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Retry(Exception):  # noqa: N818 - a control-flow signal, named like Celery's own
    """Run the task again after ``countdown`` seconds, with ``changes`` applied to its kwargs."""

    def __init__(self, countdown: float, **changes: Any) -> None:
        super().__init__(f"retry in {countdown:.3f}s")
        self.countdown = max(0.0, float(countdown))
        self.changes = changes


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A registered task: its queue-wide name and the function that does the work."""

    name: str
    fn: Callable[..., None]

    def __call__(self, **kwargs: Any) -> None:
        self.fn(**kwargs)


def task(name: str) -> Callable[[Callable[..., None]], TaskSpec]:
    """Register ``fn`` as the task ``name`` (the name is what travels through a broker)."""

    def register(fn: Callable[..., None]) -> TaskSpec:
        return TaskSpec(name, fn)

    return register


class TaskRunner:
    """Runs ``TaskSpec``s away from the caller's thread."""

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> TaskRunner:
        return cls()

    def submit(self, spec: TaskSpec, kwargs: dict[str, Any], countdown: float = 0.0) -> bool:
        raise NotImplementedError

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until work handed over so far has left this process
        (sent to the broker, or run); True when nothing is left. Used by graceful shutdown."""
        return True

    def check(self) -> bool:
        """Readiness: can tasks be handed over right now? (Blocking; call it off the event loop.)"""
        return True
