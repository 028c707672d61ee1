"""One process-wide instance of a pluggable subsystem, picked by name in the settings.

Every pluggable part (app manager, adapter-side stores, rate limiter, task runner, history store,
sequencer, idempotency cache) is a small interface plus one module per driver; a setting names the
driver (a short name from the subsystem's ``DRIVERS`` table, or a dotted path to a class of one's
own). ``Driver`` builds it once, thread-safe, on first use: the event loop and Django's view threads
share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from django.utils.module_loading import import_string

T = TypeVar("T")


def resolve(drivers: Mapping[str, str], name: str) -> str:
    """The dotted path of a driver: a name from ``drivers``, or a dotted path itself."""
    return drivers.get(name, name)


class Driver(Generic[T]):
    """``get()`` the instance (built by ``build(cls)`` from the class ``choose()`` names)."""

    def __init__(
        self,
        drivers: Mapping[str, str],
        choose: Callable[[], str],
        build: Callable[[Any], T] = lambda cls: cls(),
    ) -> None:
        self.drivers = drivers
        self.choose = choose
        self.build = build
        self._lock = threading.Lock()
        self._instance: T | None = None

    def path(self) -> str:
        return resolve(self.drivers, self.choose())

    def get(self) -> T:
        instance = self._instance
        if instance is None:
            with self._lock:
                if self._instance is None:
                    self._instance = self.build(import_string(self.path()))
                instance = self._instance
        return instance

    def set(self, instance: T | None) -> None:
        """Replace (or with ``None`` forget) the instance: for tests and reconfiguration."""
        with self._lock:
            self._instance = instance
