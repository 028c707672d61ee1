"""In-process tests of one node: no server process, no port, no database query.

Each test is a coroutine run on a fresh event loop (``asyncio.run``, bounded by ``TEST_TIMEOUT``) with
a ``node`` (``harness.Node``): an engine on the local adapter under the table's default settings,
plus those of the test's ``@pytest.mark.sockudo(NAME=value, ...)`` marker. The engine's timers and
background tasks are stopped before the loop closes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest

TEST_TIMEOUT = 5.0  # seconds; a test of one node takes milliseconds

# The node under test: the table's defaults (not the environment of whoever runs the tests), events
# recorded instead of sent as webhooks, history in memory.
BASE_SETTINGS = {
    "WEBHOOK_SINK": "tests.node.harness.RecordingSink",
    "HISTORY_STORE_DRIVER": "memory",
    "SEQUENCER_DRIVER": "local",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sockudo(**settings): server settings of the test's node")


@pytest.fixture(scope="session", autouse=True)
def _django(django_in_process: str) -> None:
    """Django set up in this process (``App`` models, settings, the setting_changed reload)."""


@pytest.fixture
def node(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    from django.test import override_settings

    import history.sequencer
    import history.store
    from realtime.conf import SETTINGS
    from realtime.node.outlet import register_outlet_factory, unregister_outlet_factory
    from tests.node.harness import Node, recording_outlet_factory

    marker = request.node.get_closest_marker("sockudo")
    values = {s.env: s.default for s in SETTINGS}
    values.update(BASE_SETTINGS)
    values.update(marker.kwargs if marker else {})
    # Process-wide singletons built from the settings: fresh ones for this test.
    singletons = (history.store._store, history.sequencer._sequencer)
    for driver in singletons:
        driver.set(None)
    register_outlet_factory(recording_outlet_factory)
    try:
        with override_settings(SOCKUDO=values):
            harness = Node()
            yield harness
            assert harness.closed, "the node was not stopped (is the test a coroutine?)"
    finally:
        unregister_outlet_factory(recording_outlet_factory)
        for driver in singletons:
            driver.set(None)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run coroutine tests on a fresh loop; stop their node on that loop before it closes."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    from tests.node.harness import Node

    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    nodes = [value for value in kwargs.values() if isinstance(value, Node)]

    async def main() -> None:
        try:
            await asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT)
        finally:
            for harness in nodes:
                await harness.aclose()

    asyncio.run(main())
    return True
