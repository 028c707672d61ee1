"""The delivery task: one job's events to one webhook target (spec/webhooks.md §4 and §6).

Runs in a Celery worker or the in-process runner (``realtime.taskrunner``), never on the event loop.
A job carries ``app_id`` and the payload only: the app (key, secret and its CURRENT webhook config)
is reloaded here, so secrets stay out of the broker and an edited filter applies to queued jobs.
A retry rebuilds the identical body (same ``time_ms``, same events, deterministic JSON), so the
receiver sees the same body and signature on every attempt.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from apps_admin.managers import get_app_manager
from realtime.conf import server_settings
from realtime.protocol.signatures import webhook_signature
from realtime.taskrunner import Retry, task
from realtime.webhooks import metrics
from realtime.webhooks.config import Webhook, webhooks_of
from realtime.webhooks.retry import FAILED, RETRY, SUCCESS, RetryPolicy, classify

log = logging.getLogger(__name__)

STANDARD_HEADERS = frozenset({"content-type", "x-pusher-key", "x-pusher-signature"})


def encode_body(time_ms: int, events: list[dict[str, Any]]) -> bytes:
    """Compact JSON, ``time_ms`` first then ``events`` (the exact bytes that are signed)."""
    return json.dumps(
        {"time_ms": time_ms, "events": events}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def build_request(
    app: Any, hook: Webhook, time_ms: int, events: list[dict[str, Any]]
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one POST: the standard Pusher headers, then the webhook's own (which
    cannot replace the standard ones)."""
    body = encode_body(time_ms, events)
    headers = {
        "Content-Type": "application/json",
        "X-Pusher-Key": app.key,
        "X-Pusher-Signature": webhook_signature(app.secret, body),
    }
    for name, value in hook.headers:
        if name.lower() not in STANDARD_HEADERS:
            headers[name] = value
    return body, headers


@task("sockudo.webhooks.deliver")
def deliver(
    job: dict[str, Any], webhook: int, target: str, attempt: int = 0, first_attempt_ms: int | None = None
) -> None:
    """POST ``job``'s events that webhook ``webhook`` (at ``target``) still wants.

    ``job`` is ``{"job_id", "app_id", "payload": {"time_ms", "events"}}``; ``attempt`` counts the
    attempts already made and ``first_attempt_ms`` is when the first one started (both carried by
    retries). Raises ``Retry`` while the policy allows another attempt.
    """

    app_id = str(job["app_id"])
    now_ms = int(time.time() * 1000)
    first_attempt_ms = first_attempt_ms or now_ms
    settings = server_settings()
    try:
        app = get_app_manager().load_by_id(app_id)
    except Exception as exc:  # the app store is down: the job itself failed, try it again later
        delay = RetryPolicy.from_settings(settings).next_delay_ms(attempt + 1, now_ms - first_attempt_ms)
        if delay is None:
            log.exception("webhook job %s: could not load app %s; dropped", job.get("job_id"), app_id)
            metrics.DELIVERIES.labels(app_id, FAILED).inc()
            return
        log.warning("webhook job %s: could not load app %s (%s); retrying", job.get("job_id"), app_id, exc)
        raise Retry(delay / 1000, attempt=attempt + 1, first_attempt_ms=first_attempt_ms) from None
    if app is None:
        log.warning("webhook job %s: app %s no longer exists; dropped", job.get("job_id"), app_id)
        metrics.DELIVERIES.labels(app_id, FAILED).inc()
        return
    hook = webhooks_of(app).find(webhook, target)
    if hook is None:
        log.info(
            "webhook job %s: app %s no longer has a webhook for %s; dropped",
            job.get("job_id"),
            app_id,
            target,
        )
        return
    payload = job["payload"]
    events = [e for e in payload["events"] if hook.accepts(e)]
    if not events:
        return
    if hook.url is None:
        # Lambda targets need an AWS SDK this build does not ship (see README, Webhooks).
        log.error(
            "app %s: webhook #%d targets Lambda %s, which is not supported; dropped",
            app_id,
            hook.index,
            target,
        )
        metrics.DELIVERIES.labels(app_id, FAILED).inc()
        return
    body, headers = build_request(app, hook, int(payload["time_ms"]), events)
    timeout = (hook.request_timeout_ms or int(settings.WEBHOOK_REQUEST_TIMEOUT_MS)) / 1000
    outcome, detail = _post(hook.url, body, headers, timeout)
    attempts = attempt + 1
    if outcome == SUCCESS:
        metrics.DELIVERIES.labels(app_id, SUCCESS).inc()
        log.debug(
            "webhook %s for app %s delivered (%d events, attempt %d)", target, app_id, len(events), attempts
        )
        return
    if outcome == RETRY:
        policy = RetryPolicy.from_settings(settings, hook.retry)
        delay = policy.next_delay_ms(attempts, int(time.time() * 1000) - first_attempt_ms)
        if delay is not None:
            metrics.DELIVERIES.labels(app_id, RETRY).inc()
            log.warning(
                "webhook %s for app %s: %s (attempt %d); retrying in %.1fs",
                target,
                app_id,
                detail,
                attempts,
                delay / 1000,
            )
            raise Retry(delay / 1000, attempt=attempts, first_attempt_ms=first_attempt_ms)
        detail += f"; retry policy exhausted after {attempts} attempts"
    metrics.DELIVERIES.labels(app_id, FAILED).inc()
    log.error(
        "webhook delivery failed: app %s, target %s, job %s, %d events: %s",
        app_id,
        target,
        job.get("job_id"),
        len(events),
        detail,
    )


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[str, str]:
    """(outcome, description) of one attempt."""
    import httpx

    started = time.perf_counter()
    try:
        response = _client().post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return RETRY, f"timed out after {timeout:.1f}s"
    except httpx.HTTPError as exc:  # connection refused, DNS, TLS, protocol errors
        return RETRY, f"{type(exc).__name__}: {exc}"
    finally:
        metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)
    return classify(response.status_code), f"HTTP {response.status_code}"


_client_lock = threading.Lock()
_clients: dict[int, Any] = {}


def _client() -> Any:
    """One pooled HTTP client per process (Celery's prefork children each build their own)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        import httpx

        with _client_lock:
            client = _clients.get(pid)
            if client is None:
                # 20 connections: upstream's concurrent deliveries per process. No redirects: a
                # webhook answer is its status code.
                client = httpx.Client(limits=httpx.Limits(max_connections=20), follow_redirects=False)
                _clients.clear()
                _clients[pid] = client
    return client
