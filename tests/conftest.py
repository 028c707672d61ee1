"""Fixtures: real server processes on free ports.

``server`` is shared by the session (default app 1001 / app-key / app-secret, client events on,
sign-in allowed); ``server_factory(env)`` starts a dedicated one with other settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from realtime.testing import LiveServer

DEFAULT_ENV = {"SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true"}


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    with LiveServer(env=DEFAULT_ENV) as live:
        yield live
        if os.environ.get("SHOW_SERVER_LOG"):
            print(live.log())


@pytest.fixture
def server_factory() -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, **kwargs) -> LiveServer:
        live = LiveServer(env={**DEFAULT_ENV, **(env or {})}, **kwargs).start()
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()
