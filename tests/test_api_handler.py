"""The HTTP API handler lends each request a pooled single-thread executor: a request's sync code
runs on one thread of its own, concurrent requests never share one, and no thread is started per
request (checked in a fresh interpreter with Django set up, so this process stays Django-free)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, json, threading
import django
django.setup()
from asgiref.sync import sync_to_async
from realtime.api.handler import APIHandler

handler = APIHandler()
seen = []

async def handle(scope, receive, send):
    # Two thread-sensitive calls of one request, as Django makes for a view and response.close().
    first = await sync_to_async(threading.get_ident)()
    if scope.get("pause"):
        await asyncio.sleep(0.05)
    second = await sync_to_async(threading.get_ident)()
    seen.append((scope["n"], first, second))

handler.handle = handle

async def main():
    for n in range(20):
        await handler(dict(type="http", n=n), None, None)
    threads_after_sequential = threading.active_count()
    await asyncio.gather(*(handler(dict(type="http", n=100 + i, pause=True), None, None) for i in range(4)))
    return threads_after_sequential

after = asyncio.run(main())
print(json.dumps(dict(seen=seen, threads=after)))
"""


def probe() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={
            "DJANGO_SETTINGS_MODULE": "sockudo_project.settings",
            "PATH": "",
            "DATABASE_URL": "sqlite://:memory:",
        },
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_requests_reuse_threads_and_never_share_one_concurrently():
    result = probe()
    sequential = [entry for entry in result["seen"] if entry[0] < 100]
    concurrent = [entry for entry in result["seen"] if entry[0] >= 100]
    assert len(sequential) == 20 and len(concurrent) == 4
    # Each request's sync calls stay on one thread.
    assert all(first == second for _n, first, second in result["seen"])
    # Sequential requests reuse one thread: none started per request.
    assert len({first for _n, first, _second in sequential}) == 1
    assert result["threads"] <= 3  # main thread, the one lent thread, at most one helper
    # Concurrent requests each had a thread of their own.
    assert len({first for _n, first, _second in concurrent}) == 4
