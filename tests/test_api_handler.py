"""The HTTP API handler lends each request a pooled single-thread executor: a request's sync code
runs on one thread of its own, concurrent requests never share one, and no thread is started per
request; a publish runs on the event loop without handing anything to a thread (checked in a fresh
interpreter with Django set up, so this process stays Django-free)."""

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
from realtime.server.api_handler import APIHandler

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


PUBLISH_PROBE = """
import asyncio, concurrent.futures, json
import django
django.setup()
from realtime.testing import call_asgi, signed_query
from sockudo_project.asgi import application

submitted = []
original_submit = concurrent.futures.ThreadPoolExecutor.submit

def counting_submit(self, fn, *args, **kwargs):
    submitted.append(getattr(fn, "__qualname__", repr(fn)))
    return original_submit(self, fn, *args, **kwargs)

concurrent.futures.ThreadPoolExecutor.submit = counting_submit

async def request(path, body):
    query = signed_query("POST", path, "probe-key", "probe-secret", body)
    scope = dict(type="http", method="POST", path=path, raw_path=path.encode(), query_string=query.encode(),
                 headers=[(b"content-type", b"application/json")], client=("127.0.0.1", 5000),
                 server=("127.0.0.1", 80), scheme="http", http_version="1.1", root_path="")
    sent = await call_asgi(application, scope, [dict(type="http.request", body=body, more_body=False)])
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]).decode()

async def main():
    event = json.dumps(dict(name="e", channel="c", data="x")).encode()
    batch = json.dumps(dict(batch=[dict(name="e", channel="c", data="x")] * 2)).encode()
    await request("/apps/probe/events", event)  # warm-up: starts the engine
    submitted.clear()
    results = [await request("/apps/probe/events", event) for _ in range(3)]
    results.append(await request("/apps/probe/batch_events", batch))
    return results

print(json.dumps(dict(results=asyncio.run(main()), submitted=submitted)))
"""


def probe(code: str = PROBE, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={
            "DJANGO_SETTINGS_MODULE": "sockudo_project.settings",
            "PATH": "",
            "DATABASE_URL": "sqlite://:memory:",
            **(env or {}),
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


def test_a_publish_never_waits_for_a_thread():
    result = probe(
        PUBLISH_PROBE,
        {
            "APP_MANAGER_DRIVER": "static",
            "SOCKUDO_DEFAULT_APP_ID": "probe",
            "SOCKUDO_DEFAULT_APP_KEY": "probe-key",
            "SOCKUDO_DEFAULT_APP_SECRET": "probe-secret",
            "RATE_LIMITER_ENABLED": "true",
        },
    )
    assert result["results"] == [[200, '{"ok":true}']] * 3 + [[200, "{}"]]
    assert result["submitted"] == []
