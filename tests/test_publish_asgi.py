"""Publishes served straight from the ASGI scope answer exactly as Django's request cycle does.

Each request goes once through ``APIHandler`` (which serves publishes without Django's request and
response objects) and once through Django's own ``ASGIHandler`` cycle with the same middleware: the
status, headers and body must be equal, and so must what each adds to the django-prometheus and
per-app HTTP series. Checked in a fresh interpreter with Django set up, so this process stays
Django-free.
"""

from __future__ import annotations

import json

from tests.test_api_handler import probe

PARITY_PROBE = """
import asyncio, json
import django
django.setup()
from django.core.handlers.asgi import ASGIHandler
from prometheus_client import REGISTRY
from realtime.node import metrics
from realtime.testing import call_asgi, signed_query
from sockudo_project.asgi import api_asgi_app

def samples():
    metrics.flush(None)
    found = {}
    for family in REGISTRY.collect():
        if not family.name.startswith(("django_http", "sockudo_http")):
            continue
        for sample in family.samples:
            timed = "latency" in sample.name and not sample.name.endswith("_count")
            if timed or sample.name.endswith("_created"):
                continue
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found

def delta(before, after):
    keys = set(before) | set(after)
    return sorted(
        (name, labels, after.get((name, labels), 0) - before.get((name, labels), 0))
        for name, labels in keys
        if after.get((name, labels), 0) != before.get((name, labels), 0)
    )

async def request(call, path, body, headers=(), sign=True, chunks=1, secret="probe-secret"):
    query = signed_query("POST", path, "probe-key", secret, body) if sign else "auth_key=probe-key"
    scope = dict(type="http", method="POST", path=path, raw_path=path.encode(), query_string=query.encode(),
                 headers=[(b"content-length", str(len(body)).encode()), *headers],
                 client=("127.0.0.1", 5000), server=("127.0.0.1", 80), scheme="http",
                 http_version="1.1", root_path="")
    size = max(1, len(body) // chunks + 1)
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [dict(type="http.request", body=part, more_body=i < len(parts) - 1) for i, part in enumerate(parts)]
    before = samples()
    sent = await call_asgi(call, scope, messages)
    counted = delta(before, samples())
    start = sent[0]
    ignored = {b"x-ratelimit-remaining", b"x-ratelimit-reset", b"retry-after"}
    headers = sorted((k.decode().lower(), v.decode()) for k, v in start["headers"] if k.lower() not in ignored)
    limited = sorted(k.decode().lower() for k, v in start["headers"] if k.lower() in ignored)
    body = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    return dict(status=start["status"], headers=headers, limited=limited, body=body, counted=counted)

JSON = (b"content-type", b"application/json")
EVENT = json.dumps(dict(name="e", channel="c", data="x")).encode()
CASES = [
    ("published", "/apps/probe/events", EVENT, [JSON], {}),
    ("published in three chunks", "/apps/probe/events", EVENT, [JSON], dict(chunks=3)),
    ("batch", "/apps/probe/batch_events", json.dumps(dict(batch=[dict(name="e", channel="c", data="x")] * 3)).encode(), [JSON], {}),
    ("info", "/apps/probe/events", json.dumps(dict(name="e", channel="c", data="x", info="subscription_count")).encode(), [JSON], {}),
    ("bad signature", "/apps/probe/events", EVENT, [JSON], dict(secret="wrong")),
    ("unsigned", "/apps/probe/events", EVENT, [JSON], dict(sign=False)),
    ("other app in the path", "/apps/other/events", EVENT, [JSON], {}),
    ("not json", "/apps/probe/events", b"{nope", [JSON], {}),
    ("not declared json", "/apps/probe/events", EVENT, [(b"content-type", b"text/plain")], {}),
    ("invalid event", "/apps/probe/events", json.dumps(dict(name="e", data="x")).encode(), [JSON], {}),
    ("batch too large", "/apps/probe/batch_events", json.dumps(dict(batch=[dict(name="e", channel="c", data="x")] * 11)).encode(), [JSON], {}),
    ("idempotent", "/apps/probe/events", EVENT, [JSON, (b"x-idempotency-key", b"k-1")], {}),
    ("forwarded", "/apps/probe/events", EVENT, [JSON, (b"x-forwarded-for", b"10.9.9.9"), (b"x-requested-with", b"XMLHttpRequest")], {}),
]

async def main():
    django_cycle = lambda scope, receive, send: ASGIHandler.__call__(api_asgi_app, scope, receive, send)
    await request(api_asgi_app, *CASES[0][1:4])  # warm-up: starts the engine
    out = []
    for name, path, body, headers, options in CASES:
        fast = await request(api_asgi_app, path, body, headers, **options)
        if name == "idempotent":  # the replay of a stored answer, then a fresh key for Django's turn
            replay = await request(api_asgi_app, path, body, headers, **options)
            headers = [JSON, (b"x-idempotency-key", b"k-2")]
        else:
            replay = None
        slow = await request(django_cycle, path, body, headers, **options)
        out.append(dict(name=name, fast=fast, slow=slow, replay=replay))
    return out

print(json.dumps(asyncio.run(main())))
"""

ENV = {
    "APP_MANAGER_DRIVER": "static",
    "SOCKUDO_DEFAULT_APP_ID": "probe",
    "SOCKUDO_DEFAULT_APP_KEY": "probe-key",
    "SOCKUDO_DEFAULT_APP_SECRET": "probe-secret",
    "EVENT_LIMITS_MAX_BATCH_SIZE": "10",
}


def run_parity(env: dict[str, str]) -> list[dict]:
    return probe(PARITY_PROBE, {**ENV, **env})


def check_parity(results: list[dict]) -> None:
    statuses = {result["name"]: result["fast"]["status"] for result in results}
    assert statuses == {
        "published": 200,
        "published in three chunks": 200,
        "batch": 200,
        "info": 200,
        "bad signature": 401,
        "unsigned": 401,
        "other app in the path": 401,
        "not json": 400,
        "not declared json": 415,
        "invalid event": 400,
        "batch too large": 400,
        "idempotent": 200,
        "forwarded": 200,
    }, statuses
    for result in results:
        fast, slow = result["fast"], result["slow"]
        assert fast["status"] == slow["status"], result
        assert fast["body"] == slow["body"], result
        assert fast["headers"] == slow["headers"], result
        assert fast["limited"] == slow["limited"], result
        assert fast["counted"] == slow["counted"], result
        assert ["content-type", "application/json"] in fast["headers"], result
        assert ["content-length", str(len(fast["body"]))] in fast["headers"], result
    by_name = {result["name"]: result for result in results}
    # The series really moved: per view, per status, per app.
    counted = {name for name, _labels, _amount in by_name["published"]["fast"]["counted"]}
    assert "django_http_requests_total_by_view_transport_method_total" in counted, counted
    assert "django_http_responses_total_by_status_view_method_total" in counted, counted
    assert "sockudo_http_calls_received_total" in counted, counted
    unsigned = {name for name, _labels, _amount in by_name["unsigned"]["fast"]["counted"]}
    assert "sockudo_http_calls_received_total" not in unsigned, unsigned  # no app, not counted
    idempotent = by_name["idempotent"]
    assert idempotent["replay"]["status"] == 200
    assert idempotent["replay"]["body"] == idempotent["fast"]["body"]


def test_publishes_answer_and_count_as_the_django_cycle_does():
    results = run_parity({"RATE_LIMITER_ENABLED": "false"})
    check_parity(results)
    assert all(not result["fast"]["limited"] for result in results)


def test_the_per_ip_limit_applies_to_publishes_served_from_the_scope():
    """Requests that fail the signature check count against the per-IP budget (and carry its
    headers); correctly signed ones do not, whatever their answer."""
    results = run_parity({"RATE_LIMITER_ENABLED": "true", "RATE_LIMITER_API_MAX_REQUESTS": "1000"})
    check_parity(results)
    failed = {"bad signature", "unsigned", "other app in the path"}
    for result in results:
        expected = ["x-ratelimit-remaining", "x-ratelimit-reset"] if result["name"] in failed else []
        assert result["fast"]["limited"] == expected, result


REFUSAL_PROBE = """
import asyncio, json
import django
django.setup()
from realtime.testing import call_asgi, signed_query
from sockudo_project.asgi import api_asgi_app

EVENT = json.dumps(dict(name="e", channel="c", data="x")).encode()

async def post(messages, secret="probe-secret"):
    path = "/apps/probe/events"
    scope = dict(type="http", method="POST", path=path, raw_path=path.encode(),
                 query_string=signed_query("POST", path, "probe-key", secret, EVENT).encode(),
                 headers=[(b"content-type", b"application/json")], client=("127.0.0.1", 5000),
                 scheme="http", http_version="1.1", root_path="")
    sent = await asyncio.wait_for(call_asgi(api_asgi_app, scope, messages), 5)
    return [m.get("status") for m in sent if m["type"] == "http.response.start"], b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()

async def main():
    gone = await post([dict(type="http.request", body=EVENT[:5], more_body=True), dict(type="http.disconnect")])
    signed = [await post([dict(type="http.request", body=EVENT)]) for _ in range(3)]
    limited = [await post([dict(type="http.request", body=EVENT)], "wrong") for _ in range(3)]
    return dict(gone=gone, signed=signed, limited=limited)

print(json.dumps(asyncio.run(main())))
"""


def test_a_client_gone_mid_body_gets_nothing_and_the_limit_refuses_with_429():
    result = probe(
        REFUSAL_PROBE,
        {**ENV, "RATE_LIMITER_ENABLED": "true", "RATE_LIMITER_API_MAX_REQUESTS": "2"},
    )
    assert result["gone"] == [[], ""]
    assert [status for status, _body in result["signed"]] == [[200], [200], [200]], result  # not counted
    statuses = [status for status, _body in result["limited"]]
    assert statuses == [[401], [401], [429]], result  # two failures allowed, then refused
    assert json.loads(result["limited"][2][1])["error"] == "Too Many Requests"
