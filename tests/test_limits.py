"""Every limit at its boundary (the limit passes, limit + 1 fails with the specified error), over the
WebSocket and the HTTP API, plus the HTTP API's error envelope for each request error
(protocol-v1 §5.2, §6, §11; http-api §1.1, §2, §5, §13, §14)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from realtime.protocol.signatures import md5_hex, sign_api_request
from realtime.testing import LiveServer, signed_query

from ._live import (
    WAIT,
    assert_api_error,
    channel_auth,
    close_all,
    connect,
    creds_of,
    default_app,
    expect_error,
    expect_fatal,
    extra_app,
    publish,
    raw_connect,
    run,
    serving,
    still_open,
    subscribed,
    transport,
    uid,
)
from ._live import api as api_request

TIGHT = extra_app(
    "3001",
    enable_client_messages=True,
    max_channel_name_length=50,
    max_event_name_length=20,
    max_event_payload_in_kb=1,
    max_event_channels_at_once=3,
    max_event_batch_size=2,
    max_presence_members_per_channel=2,
    max_presence_member_size_in_kb=1,
    max_client_events_per_second=3,
)
QUOTA = extra_app("3002", max_connections=3)
DISABLED = extra_app("3003", enabled=False)


@pytest.fixture(scope="module")
def srv() -> Iterator[LiveServer]:
    """Default app with the server defaults (client events on) plus apps with tight limits."""
    env = {"SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true"}
    with serving(env, [TIGHT, QUOTA, DISABLED]) as live:
        yield live


def api(server, method, path, body=None, **kwargs):
    return run(api_request(server, method, path, body, **kwargs))


def events_path(app) -> str:
    return f"/apps/{app.id}/events"


def post_event(server, app, **body) -> httpx.Response:
    return api(server, "POST", events_path(app), body, app=app)


# -- channel name length ---------------------------------------------------------------------------
@pytest.mark.parametrize(("which", "limit"), [("default", 200), ("tight", 50)])
def test_channel_name_length(srv, which, limit):
    app = default_app(srv) if which == "default" else creds_of(TIGHT)
    n = uid()
    ok_public = (n + "a" * limit)[:limit]
    ok_private = (f"private-{n}" + "b" * limit)[:limit]

    # HTTP: limit passes, limit + 1 is 400 invalid_input.
    assert post_event(srv, app, name="e", channel=ok_public, data="x").status_code == 200
    assert_api_error(post_event(srv, app, name="e", channel=ok_public + "a", data="x"), 400, "invalid_input")
    assert_api_error(
        post_event(srv, app, name="e", channels=["ok", ok_public + "a"], data="x"), 400, "invalid_input"
    )

    async def body():
        client = await connect(srv, app)
        try:
            await subscribed(client, ok_public)
            await subscribed(client, ok_private, app)
            for too_long in (ok_public + "a", ok_private + "b"):
                await client.subscribe(too_long, app.key, app.secret)
                error = await expect_error(client, 4300)
                assert str(limit) in error["data"]["message"], error
            # Client events check the name length too (4300), before anything else about the channel.
            await client.send("client-x", {}, ok_private + "b")
            await expect_error(client, 4300)
            await publish(srv, ok_public, "evt", "ok", app=app)
            assert (await client.expect("evt", ok_public))["data"] == "ok"
        finally:
            await client.close()

    run(body())


# -- event name length ----------------------------------------------------------------------------
@pytest.mark.parametrize(("which", "limit"), [("default", 200), ("tight", 20)])
def test_event_name_length(srv, which, limit):
    app = default_app(srv) if which == "default" else creds_of(TIGHT)
    ok_name = ("client-" + "n" * limit)[:limit]
    assert post_event(srv, app, name=ok_name, channel="c", data="x").status_code == 200
    body = assert_api_error(
        post_event(srv, app, name=ok_name + "n", channel="c", data="x"), 400, "limit_exceeded"
    )
    assert str(limit) in body["error"]

    async def ws():
        sender, peer = await connect(srv, app), await connect(srv, app)
        try:
            channel = f"private-{uid()}"
            await subscribed(sender, channel, app)
            await subscribed(peer, channel, app)
            await sender.send(ok_name, {"n": 1}, channel)
            assert (await peer.expect(ok_name, channel))["data"] == {"n": 1}
            await sender.send(ok_name + "n", {"n": 2}, channel)
            error = await expect_error(sender, 4000)
            assert error["data"]["message"].startswith("Invalid event name: "), error
            assert await peer.nothing() == []
        finally:
            await close_all(sender, peer)

    run(ws())


def test_event_name_length_counts_bytes(srv):
    app = creds_of(TIGHT)  # 20 bytes
    name = "\u00e9" * 10  # 10 characters, 20 bytes
    assert post_event(srv, app, name=name, channel="c", data="x").status_code == 200
    assert_api_error(post_event(srv, app, name=name + "a", channel="c", data="x"), 400, "limit_exceeded")


# -- HTTP payload ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("which", "limit"), [("default", 100 * 1024), ("tight", 1024)])
def test_http_payload_size(srv, which, limit):
    app = default_app(srv) if which == "default" else creds_of(TIGHT)
    assert post_event(srv, app, name="e", channel="c", data="x" * limit).status_code == 200
    assert_api_error(
        post_event(srv, app, name="e", channel="c", data="x" * (limit + 1)), 413, "payload_too_large"
    )
    # Non-string data is measured as compact JSON.
    wrapper = len('{"p":""}')
    assert post_event(srv, app, name="e", channel="c", data={"p": "y" * (limit - wrapper)}).status_code == 200
    response = post_event(srv, app, name="e", channel="c", data={"p": "y" * (limit - wrapper + 1)})
    assert_api_error(response, 413, "payload_too_large")
    # Bytes, not characters.
    assert post_event(srv, app, name="e", channel="c", data="\u00e9" * (limit // 2)).status_code == 200
    assert_api_error(post_event(srv, app, name="e", channel="c", data="\u00e9" * (limit // 2) + "x"), 413)


def test_http_payload_at_the_limit_is_delivered_intact(srv):
    app = creds_of(TIGHT)
    data = "z" * 1024

    async def body():
        client = await connect(srv, app)
        try:
            channel = f"c-{uid()}"
            await subscribed(client, channel)
            await publish(srv, channel, "big", data, app=app)
            assert (await client.expect("big", channel))["data"] == data
        finally:
            await client.close()

    run(body())


# -- client event payload -------------------------------------------------------------------------
@pytest.mark.parametrize(("which", "limit"), [("default", 10 * 1024), ("tight", 1024)])
def test_client_event_payload_size(srv, which, limit):
    app = default_app(srv) if which == "default" else creds_of(TIGHT)
    wrapper = len('{"p":""}')

    async def body():
        sender, peer = await connect(srv, app), await connect(srv, app)
        try:
            channel = f"private-{uid()}"
            await subscribed(sender, channel, app)
            await subscribed(peer, channel, app)
            at_limit = {"p": "x" * (limit - wrapper)}
            assert len(json.dumps(at_limit, separators=(",", ":"))) == limit
            await sender.send("client-big", at_limit, channel)
            assert (await peer.expect("client-big", channel))["data"] == at_limit
            await sender.send("client-big", {"p": "x" * (limit - wrapper + 1)}, channel)
            await expect_error(sender, 4301)
            # A string payload is measured as its bytes (as on the HTTP API).
            await asyncio.sleep(1.05)  # stay clear of the tight app's 3/s client-event limit
            await sender.send("client-str", "s" * limit, channel)
            assert (await peer.expect("client-str", channel))["data"] == "s" * limit
            await sender.send("client-str", "s" * (limit + 1), channel)
            await expect_error(sender, 4301)
            assert await peer.nothing() == []
            await still_open(sender)
        finally:
            await close_all(sender, peer)

    run(body())


# -- channels per publish and batch size ---------------------------------------------------------
@pytest.mark.parametrize(("which", "limit"), [("default", 100), ("tight", 3)])
def test_channels_per_publish(srv, which, limit):
    app = default_app(srv) if which == "default" else creds_of(TIGHT)
    n = uid()
    channels = [f"c{i}-{n}" for i in range(limit + 1)]

    async def body():
        client = await connect(srv, app)
        try:
            await subscribed(client, channels[-2])
            response = await api_request(
                srv,
                "POST",
                events_path(app),
                {"name": "multi", "channels": channels[:limit], "data": "d"},
                app=app,
            )
            assert response.status_code == 200, response.text
            assert (await client.expect("multi", channels[-2]))["data"] == "d"
            response = await api_request(
                srv, "POST", events_path(app), {"name": "multi", "channels": channels, "data": "d"}, app=app
            )
            assert_api_error(response, 400, "limit_exceeded")
            assert await client.nothing() == []  # nothing of a rejected publish was delivered
        finally:
            await client.close()

    run(body())


@pytest.mark.parametrize(("which", "limit"), [("default", 10), ("tight", 2)])
def test_batch_size(srv, which, limit):
    app = default_app(srv) if which == "default" else creds_of(TIGHT)
    channel = f"batch-{uid()}"
    path = f"/apps/{app.id}/batch_events"

    async def body():
        client = await connect(srv, app)
        try:
            await subscribed(client, channel)
            batch = [{"name": "b", "channel": channel, "data": str(i)} for i in range(limit + 1)]
            response = await api_request(srv, "POST", path, {"batch": batch[:limit]}, app=app)
            assert response.status_code == 200, response.text
            for i in range(limit):
                assert (await client.expect("b", channel))["data"] == str(i)
            response = await api_request(srv, "POST", path, {"batch": batch}, app=app)
            error = assert_api_error(response, 400, "limit_exceeded")
            assert error["error"] == f"Batch size ({limit + 1}) exceeds limit ({limit})"
            assert await client.nothing() == []
        finally:
            await client.close()

    run(body())


# -- presence ---------------------------------------------------------------------------------------
def test_presence_members_per_channel(srv):
    app = creds_of(TIGHT)  # 2 members

    async def body():
        a1, b, c, a2 = [await connect(srv, app) for _ in range(4)]
        try:
            channel = f"presence-{uid()}"
            await subscribed(a1, channel, app, {"user_id": "a"})
            await subscribed(b, channel, app, {"user_id": "b"})
            await a1.expect("pusher_internal:member_added", channel)
            await c.subscribe(channel, app.key, app.secret, {"user_id": "c"})
            error = await expect_error(c, 4100)
            assert error["data"]["message"] == "Over capacity"
            failed = await c.expect("pusher:subscription_error", channel)
            assert failed["data"]["status"] == 403 and failed["data"]["type"] == "AuthError", failed
            await still_open(c)
            # A user already in the channel may add a socket: membership is per user.
            ok = await subscribed(a2, channel, app, {"user_id": "a"})
            assert json.loads(ok["data"])["presence"]["count"] == 2
            assert sorted(json.loads(ok["data"])["presence"]["ids"]) == ["a", "b"]
            assert [f for f in await a1.nothing() if f["event"] == "pusher_internal:member_added"] == []
            # When a member leaves there is room again.
            await b.send("pusher:unsubscribe", {"channel": channel})
            await a1.expect("pusher_internal:member_removed", channel)
            joined = await subscribed(c, channel, app, {"user_id": "c"})
            assert sorted(json.loads(joined["data"])["presence"]["ids"]) == ["a", "c"]
        finally:
            await close_all(a1, b, c, a2)

    run(body())


@pytest.mark.parametrize(("which", "limit"), [("default", 2048), ("tight", 1024)])
def test_presence_member_size(srv, which, limit):
    app = default_app(srv) if which == "default" else creds_of(TIGHT)
    wrapper = len('{"n":""}')

    async def body():
        client = await connect(srv, app)
        try:
            channel = f"presence-{uid()}"
            too_big = {"user_id": "u1", "user_info": {"n": "x" * (limit - wrapper + 1)}}
            await client.subscribe(channel, app.key, app.secret, too_big)
            error = await expect_error(client, 4300)
            assert error["data"]["message"].startswith("Channel error: "), error
            failed = await client.expect("pusher:subscription_error", channel)
            assert failed["data"]["status"] == 401, failed
            at_limit = {"user_id": "u1", "user_info": {"n": "x" * (limit - wrapper)}}
            ok = await subscribed(client, channel, app, at_limit)
            assert json.loads(ok["data"])["presence"]["hash"] == {"u1": at_limit["user_info"]}
        finally:
            await client.close()

    run(body())


# -- connections ------------------------------------------------------------------------------------
def test_app_max_connections(srv):
    app = creds_of(QUOTA)  # 3

    async def body():
        clients = [await connect(srv, app) for _ in range(3)]
        try:
            ws = await raw_connect(srv, key=app.key)
            await expect_fatal(srv, ws, 4004)
            for client in clients:
                await still_open(client)
        finally:
            await close_all(*clients)

    run(body())


# -- client event rate -------------------------------------------------------------------------------
def test_client_event_rate(srv):
    app = creds_of(TIGHT)  # 3 per second

    async def body():
        sender, peer = await connect(srv, app), await connect(srv, app)
        try:
            channel = f"private-{uid()}"
            await subscribed(sender, channel, app)
            await subscribed(peer, channel, app)
            for i in range(4):
                await sender.send("client-n", {"i": i}, channel)
            error = await expect_error(sender, 4301)
            assert error["data"]["message"] == "Client event rejected due to rate limit"
            got = [f["data"]["i"] for f in await peer.nothing(0.3) if f["event"] == "client-n"]
            assert got == [0, 1, 2], got
            await asyncio.sleep(1.1)  # next window
            for i in range(3):
                await sender.send("client-m", {"i": i}, channel)
            got = [f["data"]["i"] for f in await peer.nothing(0.3) if f["event"] == "client-m"]
            assert got == [0, 1, 2], got
            assert [f for f in await sender.nothing(0.1) if f["event"] == "pusher:error"] == []
        finally:
            await close_all(sender, peer)

    run(body())


# -- HTTP API request errors ---------------------------------------------------------------------------
def raw_request(server, method, path, body=b"", query="", content_type="application/json"):
    url = f"{server.http_url}{path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": content_type} if content_type else {}
    with httpx.Client(timeout=WAIT) as http:
        return http.request(method, url, content=body if method != "GET" else None, headers=headers)


def test_missing_auth_params(srv):
    app = default_app(srv)
    response = raw_request(srv, "POST", events_path(app), b'{"name":"e","channel":"c","data":"x"}')
    assert_api_error(response, 400, "invalid_input")
    assert_api_error(raw_request(srv, "GET", f"/apps/{app.id}/channels"), 400, "invalid_input")


def test_unknown_key_is_404(srv):
    app = default_app(srv)
    body = b'{"name":"e","channel":"c","data":"x"}'
    query = signed_query("POST", events_path(app), "no-such-key", "whatever", body)
    assert_api_error(raw_request(srv, "POST", events_path(app), body, query), 404, "app_not_found")


def test_wrong_app_id_is_401(srv):
    app = default_app(srv)
    response = api(srv, "POST", "/apps/9999/events", {"name": "e", "channel": "c", "data": "x"}, app=app)
    assert_api_error(response, 401, "auth_failed")
    # Another existing app's id with this app's key: still a mismatch.
    response = api(
        srv, "POST", f"/apps/{TIGHT['id']}/events", {"name": "e", "channel": "c", "data": "x"}, app=app
    )
    assert_api_error(response, 401, "auth_failed")


def test_timestamp_window_is_600_seconds_inclusive(srv):
    app = default_app(srv)
    payload = {"name": "e", "channel": "c", "data": "x"}
    for offset, status in ((-600, 200), (-601, 401), (600, 200), (601, 401)):
        # Sign at the start of a second so the request lands in the same whole second.
        while time.time() % 1 > 0.5:
            time.sleep(0.05)
        response = api(srv, "POST", events_path(app), payload, app=app, timestamp=int(time.time()) + offset)
        if status == 200:
            assert response.status_code == 200, (offset, response.text)
        else:
            assert_api_error(response, 401, "auth_failed")


def test_bad_or_non_integer_timestamp(srv):
    app = default_app(srv)
    body = b'{"name":"e","channel":"c","data":"x"}'
    for ts in ("abc", "", "1.5"):
        params = {"auth_key": app.key, "auth_timestamp": ts, "auth_version": "1.0", "body_md5": md5_hex(body)}
        params["auth_signature"] = sign_api_request(app.secret, "POST", events_path(app), params)
        query = str(httpx.QueryParams(params))
        assert_api_error(raw_request(srv, "POST", events_path(app), body, query), 401, "auth_failed")


def test_body_md5_rules(srv):
    app = default_app(srv)
    path = events_path(app)
    body = b'{"name":"e","channel":"c","data":"x"}'
    ts = str(int(time.time()))

    def signed(params):
        params = {"auth_key": app.key, "auth_timestamp": ts, "auth_version": "1.0", **params}
        params["auth_signature"] = sign_api_request(app.secret, "POST", path, params)
        return str(httpx.QueryParams(params))

    wrong_md5 = signed({"body_md5": md5_hex(b"other body")})
    assert_api_error(raw_request(srv, "POST", path, body, wrong_md5), 401, "auth_failed")
    no_md5 = signed({})
    assert_api_error(raw_request(srv, "POST", path, body, no_md5), 401, "auth_failed")
    # GET: body_md5 of the empty body is accepted (pusher Python SDK); any other value is not.
    get_path = f"/apps/{app.id}/channels"
    for md5, status in ((md5_hex(b""), 200), (md5_hex(b"x"), 401)):
        params = {"auth_key": app.key, "auth_timestamp": ts, "auth_version": "1.0", "body_md5": md5}
        params["auth_signature"] = sign_api_request(app.secret, "GET", get_path, params)
        response = raw_request(srv, "GET", get_path, query=str(httpx.QueryParams(params)))
        if status == 200:
            assert response.status_code == 200, response.text
        else:
            assert_api_error(response, 401, "auth_failed")


def test_bad_signature_is_401(srv):
    app = default_app(srv)
    path = events_path(app)
    body = b'{"name":"e","channel":"c","data":"x"}'
    query = signed_query("POST", path, app.key, "wrong-secret", body)
    error = assert_api_error(raw_request(srv, "POST", path, body, query), 401, "auth_failed")
    assert error["error"] == "Invalid API signature"
    # Signed over other parameters than those sent.
    good = signed_query("POST", path, app.key, app.secret, body)
    assert_api_error(raw_request(srv, "POST", path, body, good + "&info=user_count"), 401, "auth_failed")
    # Signed over another path.
    other = signed_query("POST", "/apps/1001/batch_events", app.key, app.secret, body)
    assert_api_error(raw_request(srv, "POST", path, body, other), 401, "auth_failed")


def test_trailing_slash_is_verified_without_it(srv):
    app = default_app(srv)
    body = b'{"name":"e","channel":"c","data":"x"}'
    query = signed_query("POST", events_path(app), app.key, app.secret, body)
    assert raw_request(srv, "POST", events_path(app) + "/", body, query).status_code == 200


def test_malformed_json_is_400_invalid_json(srv):
    app = default_app(srv)
    for raw in (b"{not json", b'{"name":', b"\xff\xfe", b'{"name":"e","channel":"c","data":"\\ud800"}'):
        response = api(srv, "POST", events_path(app), raw, app=app)
        assert_api_error(response, 400, "invalid_json")


def test_wrong_json_shape_is_422(srv):
    """Valid JSON that is not an event object (http-api §1.1: 422, in the JSON envelope)."""
    app = default_app(srv)
    for shape in ([1, 2], "string", 42, None):
        assert_api_error(api(srv, "POST", events_path(app), shape, app=app), 422)


def test_non_json_content_type_is_415(srv):
    app = default_app(srv)
    body = {"name": "e", "channel": "c", "data": "x"}
    form = b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\ne\r\n--b--\r\n'
    for content_type, sent in (
        ("text/plain", body),
        ("application/x-www-form-urlencoded", body),
        ("multipart/form-data; boundary=b", form),
        ("", body),
    ):
        response = api(srv, "POST", events_path(app), sent, app=app, content_type=content_type)
        assert_api_error(response, 415, "unsupported_media_type")
    # A JSON body labelled multipart/form-data is not valid multipart. The tuned transport never
    # parses forms: 415 like the rest. Stock daphne's request (Twisted's) parses every multipart
    # POST itself and answers a malformed one with a bare 400 before the application sees it.
    response = api(
        srv, "POST", events_path(app), body, app=app, content_type="multipart/form-data; boundary=b"
    )
    if transport(srv) == "tuned":
        assert_api_error(response, 415, "unsupported_media_type")
    else:
        assert (response.status_code, response.text) == (400, ""), response.text


def test_publish_routes_answer_other_methods_with_405(srv):
    """The publish routes take POST only; another method is still authenticated first."""
    app = default_app(srv)
    for route in ("events", "batch_events"):
        path = f"/apps/{app.id}/{route}"
        assert_api_error(api(srv, "GET", path, app=app), 405, "method_not_allowed")
        assert_api_error(api(srv, "PUT", path, {"name": "e"}, app=app), 405, "method_not_allowed")
        assert_api_error(raw_request(srv, "GET", path), 400, "invalid_input")


def test_missing_name_is_400(srv):
    app = default_app(srv)
    for body in (
        {"channel": "c", "data": "x"},
        {"name": "", "channel": "c", "data": "x"},
        {"name": 5, "channel": "c"},
    ):
        assert_api_error(api(srv, "POST", events_path(app), body, app=app), 400, "invalid_input")


def test_missing_channels_is_400_missing_channel_info(srv):
    app = default_app(srv)
    for body in (
        {"name": "e", "data": "x"},
        {"name": "e", "channels": [], "data": "x"},
        {"name": "e", "channel": ""},
    ):
        error = assert_api_error(
            api(srv, "POST", events_path(app), body, app=app), 400, "missing_channel_info"
        )
        assert error["error"] == "Request must contain 'channels' (list) or 'channel' (string)"


def test_bad_channel_name_is_400(srv):
    app = default_app(srv)
    for channel in ("bad name", "unknown:ns", "room#u1", "x*"):
        body = {"name": "e", "channel": channel, "data": "x"}
        assert_api_error(api(srv, "POST", events_path(app), body, app=app), 400, "invalid_input")


def test_bad_socket_id_is_400(srv):
    app = default_app(srv)
    for socket_id in ("abc", "1.2.3", "12", "1.x", ".1", 12):
        body = {"name": "e", "channel": "c", "data": "x", "socket_id": socket_id}
        assert_api_error(api(srv, "POST", events_path(app), body, app=app), 400, "invalid_input")
    assert post_event(srv, app, name="e", channel="c", data="x", socket_id="123.456").status_code == 200


def test_disabled_app_is_403(srv):
    app = creds_of(DISABLED)
    response = api(srv, "POST", events_path(app), {"name": "e", "channel": "c", "data": "x"}, app=app)
    assert_api_error(response, 403, "forbidden")
    assert_api_error(api(srv, "GET", f"/apps/{app.id}/channels", app=app), 403, "forbidden")


def test_batch_item_errors(srv):
    app = default_app(srv)
    path = f"/apps/{app.id}/batch_events"
    assert_api_error(api(srv, "POST", path, {"batch": [{"channel": "c", "data": "x"}]}), 400, "invalid_input")
    assert_api_error(
        api(srv, "POST", path, {"batch": [{"name": "e", "data": "x"}]}), 400, "missing_channel_info"
    )
    assert_api_error(api(srv, "POST", path, {"nope": []}), 400, "invalid_input")


def test_user_count_needs_presence(srv):
    app = default_app(srv)
    response = api(srv, "GET", f"/apps/{app.id}/channels/plain-{uid()}", params={"info": "user_count"})
    assert_api_error(response, 400, "invalid_input")
    response = api(srv, "GET", f"/apps/{app.id}/channels/plain-{uid()}/users")
    assert_api_error(response, 400, "invalid_input")


def test_presence_auth_signed_with_channel_data_round_trip(srv):
    """The default member-size limit is about user_info, not the whole channel_data string."""
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            channel = f"presence-{uid()}"
            channel_data = json.dumps({"user_id": "u" * 500, "user_info": {}})
            await client.send(
                "pusher:subscribe",
                {
                    "channel": channel,
                    "auth": channel_auth(app, client.socket_id, channel, channel_data),
                    "channel_data": channel_data,
                },
            )
            ok = await client.expect("pusher_internal:subscription_succeeded", channel)
            assert json.loads(ok["data"])["presence"]["ids"] == ["u" * 500]
        finally:
            await client.close()

    run(body())


def test_api_responses_carry_their_length_rather_than_chunks(srv):
    """Every HTTP API answer, success or error, has a Content-Length and no chunked framing."""
    app = default_app(srv)
    responses = [
        api(srv, "POST", events_path(app), {"name": "e", "channel": "c", "data": "x"}, app=app),
        api(
            srv,
            "POST",
            f"/apps/{app.id}/batch_events",
            {"batch": [{"name": "e", "channel": "c", "data": "x"}]},
            app=app,
        ),
        api(srv, "GET", f"/apps/{app.id}/channels", app=app),
        api(srv, "POST", "/apps/9999/events", {"name": "e", "channel": "c", "data": "x"}, app=app),
        raw_request(srv, "POST", events_path(app), b"{}"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 401, 400]
    for response in responses:
        assert "transfer-encoding" not in response.headers
        assert int(response.headers["content-length"]) == len(response.content) > 0
