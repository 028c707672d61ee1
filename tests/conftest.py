"""Fixtures: real server processes on free ports, and Django in this process.

``server`` is shared by the session (default app 1001 / app-key / app-secret, client events on,
sign-in allowed); ``server_factory(env)`` starts a dedicated one with other settings.
``django_in_process`` sets Django up in the test process itself (once per session, on a throwaway
database) for the modules that drive the code directly (tests/node, tests/test_history_store.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from realtime.testing import LIVE_SECRET_KEY, LiveServer

DEFAULT_ENV = {"SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true"}

# ``manage.py`` subprocesses inherit this environment; with DEBUG off they refuse the public
# development key (realtime.E002), so the suite runs with a random one, like a configured server.
os.environ.setdefault("DJANGO_SECRET_KEY", LIVE_SECRET_KEY)


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


@pytest.fixture(scope="session")
def django_in_process(tmp_path_factory) -> Iterator[str]:
    """Django set up in this test process, once per session; returns its database URL.

    The database is a temporary SQLite file, or a fresh PostgreSQL database when
    ``TEST_DATABASE_URL`` names one (dropped at the end of the session). ``DATABASE_URL`` and
    ``DJANGO_SETTINGS_MODULE`` are set only while Django reads its settings, then restored, so server
    processes started later still choose their own. Nothing is migrated here: a module that queries
    the database runs ``migrate`` itself."""
    base = os.environ.get("TEST_DATABASE_URL", "")
    pg_name = None
    if base.startswith(("postgres://", "postgresql://")):
        import psycopg

        pg_name = f"sockudo_inproc_{os.getpid()}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        url = base.rsplit("/", 1)[0] + "/" + pg_name
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('django')}/db.sqlite3"
    import django
    from django.conf import settings

    if settings.configured:
        pytest.fail("Django was already set up in this test process (outside django_in_process)")
    saved = {name: os.environ.get(name) for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "sockudo_project.settings"
    try:
        django.setup()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield url
    finally:
        from django.db import connections

        connections.close_all()
        if pg_name:
            import psycopg

            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
