"""Durable history over HTTP (http-api.md §7) against a real server process.

The server runs with ``HISTORY_ENABLED=true``; its database is seeded through the history store in a
``manage.py shell`` subprocess (the wire path that writes history is not involved). Requests are
signed like any backend's. Every wait is bounded.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from realtime.testing import LiveServer, signed_query

from ._live import extra_app, serving

T0 = 1_700_000_000_000
MAX_PAGE = 20
QUIET_APP = extra_app("2002", history={"enabled": False})

_SEED = """
import json
from history.records import HistoryRecord
from history.store import get_store
spec = json.loads({spec!r})
records = []
for serial in range(spec["first"], spec["first"] + spec["count"]):
    message = {{"event": "order.created", "channel": spec["channel"], "data": json.dumps({{"n": serial}}),
               "message_id": "m-%d" % serial, "stream_id": spec["stream_id"], "serial": serial}}
    records.append(HistoryRecord(spec["app_id"], spec["channel"], spec["stream_id"], serial, "m-%d" % serial,
                                 "order.created", spec["t0"] + (serial - 1) * 1000,
                                 json.dumps(message, separators=(",", ":"))))
get_store().append(records)
"""


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    env = {
        "HISTORY_ENABLED": "true",
        "HISTORY_MAX_PAGE_SIZE": str(MAX_PAGE),
        "SOCKUDO_DEFAULT_APP_CHANNEL_NAMESPACES": json.dumps(
            [{"name": "quiet", "history": {"enabled": False}}]
        ),
    }
    with serving(env, apps=[QUIET_APP]) as server:
        yield server


def seed(live: LiveServer, channel: str, count: int, stream_id: str | None = None, first: int = 1) -> str:
    stream_id = stream_id or str(uuid.uuid4())
    spec = {
        "app_id": live.app_id,
        "channel": channel,
        "stream_id": stream_id,
        "count": count,
        "first": first,
        "t0": T0,
    }
    live.manage("shell", "-c", _SEED.format(spec=json.dumps(spec)))
    return stream_id


def channel_name() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


def get(
    live: LiveServer, path: str, key: str | None = None, secret: str | None = None, **params: Any
) -> httpx.Response:
    params = {k: str(v) for k, v in params.items()}
    query = signed_query("GET", path, key or live.key, secret or live.secret, params=params)
    return httpx.get(f"{live.http_url}{path}?{query}", timeout=10)


def post(
    live: LiveServer, path: str, body: Any, key: str | None = None, secret: str | None = None
) -> httpx.Response:
    raw = json.dumps(body).encode()
    query = signed_query("POST", path, key or live.key, secret or live.secret, raw)
    return httpx.post(
        f"{live.http_url}{path}?{query}",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


def history_path(live: LiveServer, channel: str, suffix: str = "", app_id: str | None = None) -> str:
    return f"/apps/{app_id or live.app_id}/channels/{channel}/history{suffix}"


def page(live: LiveServer, channel: str, **params: Any) -> dict:
    response = get(live, history_path(live, channel), **params)
    assert response.status_code == 200, response.text
    return response.json()


def walk(live: LiveServer, channel: str, **params: Any) -> list[list[int]]:
    pages, cursor = [], None
    for _ in range(100):
        data = page(live, channel, **params, **({"cursor": cursor} if cursor else {}))
        pages.append([item["serial"] for item in data["items"]])
        if not data["has_more"]:
            assert data["next_cursor"] is None
            return pages
        cursor = data["next_cursor"]
    raise AssertionError("cursor never ended")


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["status"] == status and isinstance(body["error"], str), body
    return body


# --------------------------------------------------------------------------- pages


def test_page_shape(live):
    channel = channel_name()
    stream_id = seed(live, channel, 3)
    data = page(live, channel)
    assert data["direction"] == "newest_first" and data["limit"] == MAX_PAGE and data["has_more"] is False
    assert [i["serial"] for i in data["items"]] == [3, 2, 1]
    item = data["items"][0]
    assert (
        item["stream_id"] == stream_id
        and item["message_id"] == "m-3"
        and item["event_name"] == "order.created"
    )
    assert item["published_at_ms"] == T0 + 2000 and item["operation_kind"] == "append"
    assert item["message"] == {
        "event": "order.created",
        "channel": channel,
        "data": json.dumps({"n": 3}),
        "message_id": "m-3",
        "stream_id": stream_id,
        "serial": 3,
    }
    assert item["payload_size_bytes"] == len(json.dumps(item["message"], separators=(",", ":")).encode())
    continuity = data["continuity"]
    assert continuity["stream_id"] == stream_id and continuity["retained_messages"] == 3
    assert (continuity["oldest_available_serial"], continuity["newest_available_serial"]) == (1, 3)
    assert continuity["complete"] is True and continuity["truncated_by_retention"] is False
    state = data["stream_state"]
    assert state["durable_state"] == "healthy" and state["recovery_allowed"] is True
    assert state["authoritative_source"] == "database"
    assert data["bounds"]["start_serial"] is None and data["bounds"]["attach_serial"] is None


def test_cursor_paging_both_directions(live):
    channel = channel_name()
    seed(live, channel, 30)
    newest = walk(live, channel, limit=7)
    assert [len(p) for p in newest] == [7, 7, 7, 7, 2]
    assert sum(newest, []) == list(range(30, 0, -1))
    oldest = walk(live, channel, limit=8, direction="oldest_first")
    assert sum(oldest, []) == list(range(1, 31))
    assert sum(walk(live, channel, limit=11, direction="Forwards"), []) == list(range(1, 31))
    assert sum(walk(live, channel, direction="backwards"), []) == list(range(30, 0, -1))


def test_limits(live):
    channel = channel_name()
    seed(live, channel, 30)
    assert len(page(live, channel)["items"]) == MAX_PAGE  # default = max_page_size
    data = page(live, channel, limit=500)
    assert data["limit"] == MAX_PAGE and len(data["items"]) == MAX_PAGE and data["has_more"] is True
    assert len(page(live, channel, limit=3)["items"]) == 3
    for bad in ("0", "-2", "many"):
        assert_error(get(live, history_path(live, channel), limit=bad), 400, "invalid_input")
    assert_error(get(live, history_path(live, channel), direction="up"), 400, "invalid_input")


def test_serial_and_time_bounds(live):
    channel = channel_name()
    seed(live, channel, 25)
    data = page(live, channel, start_serial=5, end_serial=9)
    assert [i["serial"] for i in data["items"]] == [9, 8, 7, 6, 5]
    assert data["bounds"]["start_serial"] == 5 and data["bounds"]["end_serial"] == 9
    timed = page(live, channel, start_time_ms=T0 + 10_000, end_time_ms=T0 + 12_000, direction="oldest_first")
    assert [i["serial"] for i in timed["items"]] == [11, 12, 13]
    aliased = page(live, channel, start=T0 + 22_000)  # start/end are times over HTTP
    assert [i["serial"] for i in aliased["items"]] == [25, 24, 23]
    assert sum(walk(live, channel, start_serial=3, end_serial=17, limit=4), []) == list(range(17, 2, -1))
    assert_error(get(live, history_path(live, channel), start_serial=9, end_serial=2), 400, "invalid_input")


def test_until_attach(live):
    channel = channel_name()
    seed(live, channel, 15)
    data = page(live, channel, until_attach="true", attach_serial=11)
    assert data["items"][0]["serial"] == 11
    assert data["bounds"]["until_attach"] is True and data["bounds"]["attach_serial"] == 11
    assert data["bounds"]["end_serial"] == 11
    assert sum(walk(live, channel, until_attach="true", attach_serial=11, limit=5), []) == list(
        range(11, 0, -1)
    )
    assert_error(get(live, history_path(live, channel), until_attach="true"), 400, "invalid_input")


def test_cursors_are_bound_to_the_query(live):
    channel, other = channel_name(), channel_name()
    seed(live, channel, 10)
    seed(live, other, 10)
    cursor = page(live, channel, limit=3)["next_cursor"]
    assert [i["serial"] for i in page(live, channel, limit=3, cursor=cursor)["items"]] == [7, 6, 5]
    path = history_path(live, channel)
    assert_error(get(live, history_path(live, other), limit=3, cursor=cursor), 400, "invalid_input")
    assert_error(get(live, path, limit=3, cursor=cursor, direction="oldest_first"), 400, "invalid_input")
    assert_error(get(live, path, limit=3, cursor=cursor[:-3] + "abc"), 400, "invalid_input")
    # (Longer than 16 KiB is refused by the query parser, tested in test_history_store.py; daphne drops
    # request lines that long before any view runs.)
    assert_error(get(live, path, cursor="x" * (12 * 1024)), 400, "invalid_input")


def test_unknown_channel_is_empty(live):
    data = page(live, channel_name())
    assert data["items"] == [] and data["continuity"]["stream_id"] is None
    state = get(live, history_path(live, channel_name(), "/state")).json()
    assert state["stream"]["stream_id"] is None and state["stream"]["next_serial"] == 1


# --------------------------------------------------------------------------- state, purge, reset


def test_state(live):
    channel = channel_name()
    stream_id = seed(live, channel, 6)
    response = get(live, history_path(live, channel, "/state"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["channel"] == channel
    stream = body["stream"]
    assert stream["stream_id"] == stream_id and stream["next_serial"] == 7
    assert stream["retained"]["stream_id"] == stream_id and stream["retained"]["retained_messages"] == 6
    assert (
        stream["retained"]["oldest_available_serial"] == 1
        and stream["retained"]["newest_available_serial"] == 6
    )
    assert stream["retained"]["newest_available_published_at_ms"] == T0 + 5000
    assert stream["state"]["durable_state"] == "healthy" and stream["state"]["reset_required"] is False


def purge_body(channel: str, **extra: Any) -> dict:
    return {"confirm_channel": channel, "confirm_operation": "purge", "reason": "cleanup", **extra}


def test_purge(live):
    channel = channel_name()
    stream_id = seed(live, channel, 12)
    path = history_path(live, channel, "/purge")
    response = post(
        live, path, purge_body(channel, mode="before_serial", before_serial=5, requested_by="ops")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["operation"] == "purge" and body["channel"] == channel
    assert (body["mode"], body["before_serial"], body["before_time_ms"]) == ("before_serial", 5, None)
    assert (body["reason"], body["requested_by"], body["purged_messages"]) == ("cleanup", "ops", 4)
    assert body["purged_bytes"] > 0
    assert (
        body["stream"]["stream_id"] == stream_id
        and body["stream"]["retained"]["oldest_available_serial"] == 5
    )
    data = page(live, channel)
    assert data["items"][-1]["serial"] == 5 and data["continuity"]["truncated_by_retention"] is True

    response = post(live, path, purge_body(channel, mode="before_time_ms", before_time_ms=T0 + 7000))
    assert response.status_code == 200 and response.json()["purged_messages"] == 3  # serials 5, 6, 7
    response = post(live, path, purge_body(channel, mode="all"))
    assert response.status_code == 200 and response.json()["purged_messages"] == 5
    stream = response.json()["stream"]
    assert stream["stream_id"] == stream_id and stream["next_serial"] == 13  # the stream and its serials stay
    assert stream["retained"]["retained_messages"] == 0

    for bad in (
        purge_body(channel + "x", mode="all"),
        {**purge_body(channel, mode="all"), "confirm_operation": "reset"},
        {**purge_body(channel, mode="all"), "reason": "  "},
        purge_body(channel, mode="everything"),
        purge_body(channel, mode="before_serial"),
        purge_body(channel, mode="before_time_ms", before_time_ms="yesterday"),
        purge_body(channel, mode="all", requested_by=7),
        ["not", "an", "object"],
    ):
        assert_error(post(live, path, bad), 400, "invalid_input")


def test_reset(live):
    channel = channel_name()
    old = seed(live, channel, 8)
    cursor = page(live, channel, limit=3)["next_cursor"]
    body = {
        "confirm_channel": channel,
        "confirm_operation": "reset",
        "reason": "corrupted",
        "requested_by": "ops",
    }
    response = post(live, history_path(live, channel, "/reset"), body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ok"] is True and result["operation"] == "reset" and result["channel"] == channel
    assert result["reason"] == "corrupted" and result["requested_by"] == "ops"
    assert result["previous_stream_id"] == old and result["new_stream_id"] not in (None, old)
    assert result["purged_messages"] == 8 and result["purged_bytes"] > 0
    new = result["new_stream_id"]
    assert result["stream"]["stream_id"] == new and result["stream"]["next_serial"] == 1
    assert result["stream"]["state"]["durable_state"] == "healthy"
    data = page(live, channel)
    assert data["items"] == [] and data["continuity"]["stream_id"] == new
    assert_error(get(live, history_path(live, channel), limit=3, cursor=cursor), 400, "invalid_input")
    seed(live, channel, 2, stream_id=new)
    assert [i["serial"] for i in page(live, channel)["items"]] == [2, 1]
    for bad in (
        {**body, "confirm_channel": "other"},
        {**body, "confirm_operation": "purge"},
        {k: v for k, v in body.items() if k != "reason"},
    ):
        assert_error(post(live, history_path(live, channel, "/reset"), bad), 400, "invalid_input")


# --------------------------------------------------------------------------- policy and errors


def _all_four(
    live: LiveServer, channel: str, app_id: str | None = None, key=None, secret=None
) -> list[httpx.Response]:
    def path(suffix: str = "") -> str:
        return history_path(live, channel, suffix, app_id)

    confirm = {"confirm_channel": channel, "reason": "x"}
    return [
        get(live, path(), key, secret),
        get(live, path("/state"), key, secret),
        post(live, path("/reset"), {**confirm, "confirm_operation": "reset"}, key, secret),
        post(live, path("/purge"), {**confirm, "confirm_operation": "purge", "mode": "all"}, key, secret),
    ]


def test_disabled_by_namespace_and_by_app(live):
    for response in _all_four(live, "quiet:room-1"):
        body = assert_error(response, 422, "feature_disabled")
        assert body["error"] == "Durable history is disabled by policy for channel 'quiet:room-1'"
    for response in _all_four(live, "orders", QUIET_APP["id"], QUIET_APP["key"], QUIET_APP["secret"]):
        assert_error(response, 422, "feature_disabled")


def test_disabled_by_default(server):
    """The shared server keeps the default: history off."""
    for response in _all_four(server, "orders"):
        assert_error(response, 422, "feature_disabled")


def test_signature_and_channel_checks(live):
    path = history_path(live, "orders")
    unsigned = httpx.get(f"{live.http_url}{path}?auth_key={live.key}", timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "auth_failed"
    wrong = get(live, path, secret="not-the-secret")
    assert_error(wrong, 401, "auth_failed")
    assert_error(get(live, history_path(live, "nope:room")), 400, "invalid_input")  # unknown namespace
    assert_error(
        get(live, history_path(live, "orders"), attach_serial="x", until_attach="true"), 400, "invalid_input"
    )
    assert httpx.get(f"{live.http_url}{history_path(live, 'orders', '/reset')}", timeout=10).status_code in (
        400,
        405,
    )
