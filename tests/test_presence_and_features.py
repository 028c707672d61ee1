"""Presence semantics, client events, users (sign-in, server-to-user, termination), watchlist,
subscription_count, cache channels and the publish/query HTTP API, against a live server
(protocol-v1 §5-§10, http-api §5)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from realtime.testing import LiveServer

from ._live import (
    SUCCEEDED,
    api,
    close_all,
    close_reason,
    connect,
    creds_of,
    default_app,
    expect_error,
    extra_app,
    publish,
    read_until_closed,
    run,
    serving,
    signed_in,
    still_open,
    subscribed,
    uid,
)

COUNTING = extra_app("4001", enable_subscription_count=True, enable_client_messages=True)
MEMBER_ADDED = "pusher_internal:member_added"
MEMBER_REMOVED = "pusher_internal:member_removed"
WATCHLIST = "pusher_internal:watchlist_events"
COUNT = "pusher_internal:subscription_count"


@pytest.fixture(scope="module")
def srv() -> Iterator[LiveServer]:
    env = {
        "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        "SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS": "true",
    }
    with serving(env, [COUNTING]) as live:
        yield live


def presence_of(frame: dict) -> dict:
    assert frame["event"] == SUCCEEDED, frame
    assert isinstance(frame["data"], str), frame
    return json.loads(frame["data"])["presence"]


def events(frames: list[dict], name: str) -> list[dict]:
    return [f for f in frames if f.get("event") == name]


# -- presence -----------------------------------------------------------------------------------------
def test_member_added_once_per_user_and_before_the_joiners_success(srv):
    app = default_app(srv)

    async def body():
        observer, u1, u2 = await connect(srv), await connect(srv), await connect(srv)
        try:
            channel = f"presence-{uid()}"
            first = presence_of(
                await subscribed(observer, channel, app, {"user_id": "o", "user_info": {"name": "Obs"}})
            )
            assert first == {"ids": ["o"], "hash": {"o": {"name": "Obs"}}, "count": 1}

            joined = presence_of(
                await subscribed(u1, channel, app, {"user_id": "u", "user_info": {"name": "U"}})
            )
            assert sorted(joined["ids"]) == ["o", "u"] and joined["count"] == 2
            assert joined["hash"] == {"o": {"name": "Obs"}, "u": {"name": "U"}}
            # The joiner acts right after its success; the observer must see member_added first.
            await u1.send("client-hello", {"x": 1}, channel)
            added = await observer.recv()
            assert added == {
                "event": MEMBER_ADDED,
                "channel": channel,
                "data": json.dumps({"user_id": "u", "user_info": {"name": "U"}}, separators=(",", ":")),
            }
            assert (await observer.recv())["event"] == "client-hello"
            # The joiner never sees its own member_added.
            assert events(await u1.nothing(), MEMBER_ADDED) == []

            # Same user, second socket: no member_added, same member count.
            again = presence_of(
                await subscribed(u2, channel, app, {"user_id": "u", "user_info": {"name": "U"}})
            )
            assert again["count"] == 2 and sorted(again["ids"]) == ["o", "u"]
            assert await observer.nothing() == []
        finally:
            await close_all(observer, u1, u2)

    run(body())


def test_member_removed_only_when_the_last_connection_leaves(srv):
    app = default_app(srv)

    async def body():
        observer, u1, u2 = await connect(srv), await connect(srv), await connect(srv)
        try:
            channel = f"presence-{uid()}"
            await subscribed(observer, channel, app, {"user_id": "o"})
            await subscribed(u1, channel, app, {"user_id": "u"})
            await subscribed(u2, channel, app, {"user_id": "u"})
            await observer.expect(MEMBER_ADDED, channel)
            # First connection unsubscribes: the user is still present.
            await u1.send("pusher:unsubscribe", {"channel": channel})
            assert await u1.nothing() == []  # unsubscribe has no reply
            assert await observer.nothing() == []
            # Last connection disconnects: member_removed at once.
            await u2.close()
            removed = await observer.expect(MEMBER_REMOVED, channel)
            assert removed == {"event": MEMBER_REMOVED, "channel": channel, "data": '{"user_id":"u"}'}
            users = await api(srv, "GET", f"/apps/{app.id}/channels/{channel}/users")
            assert users.json() == {"users": [{"id": "o"}]}

            # Reverse order: disconnect one socket, then unsubscribe the other.
            v1, v2 = await connect(srv), await connect(srv)
            try:
                await subscribed(v1, channel, app, {"user_id": "v"})
                await subscribed(v2, channel, app, {"user_id": "v"})
                await observer.expect(MEMBER_ADDED, channel)
                await v1.close()
                assert await observer.nothing() == []
                await v2.send("pusher:unsubscribe", json.dumps({"channel": channel}))  # data as a JSON string
                assert json.loads((await observer.expect(MEMBER_REMOVED, channel))["data"]) == {
                    "user_id": "v"
                }
            finally:
                await close_all(v1, v2)
        finally:
            await close_all(observer, u1, u2)

    run(body())


def test_integer_user_id_is_stringified(srv):
    app = default_app(srv)

    async def body():
        observer, joiner = await connect(srv), await connect(srv)
        try:
            channel = f"presence-{uid()}"
            await subscribed(observer, channel, app, {"user_id": "o"})
            joined = presence_of(await subscribed(joiner, channel, app, {"user_id": 42}))
            assert sorted(joined["ids"]) == ["42", "o"] and joined["hash"]["42"] == {}
            added = await observer.expect(MEMBER_ADDED, channel)
            assert json.loads(added["data"]) == {"user_id": "42", "user_info": {}}
            users = await api(srv, "GET", f"/apps/{app.id}/channels/{channel}/users")
            assert sorted(u["id"] for u in users.json()["users"]) == ["42", "o"]
            await joiner.send("client-x", {}, channel)
            assert (await observer.expect("client-x", channel))["user_id"] == "42"
        finally:
            await close_all(observer, joiner)

    run(body())


def test_resubscribe_is_idempotent(srv):
    app = default_app(srv)

    async def body():
        observer, joiner = await connect(srv), await connect(srv)
        try:
            channel = f"presence-{uid()}"
            await subscribed(observer, channel, app, {"user_id": "o"})
            await subscribed(joiner, channel, app, {"user_id": "j", "user_info": {"k": 1}})
            await observer.expect(MEMBER_ADDED, channel)
            again = presence_of(
                await subscribed(joiner, channel, app, {"user_id": "j", "user_info": {"k": 1}})
            )
            assert again == {"ids": again["ids"], "hash": {"o": {}, "j": {"k": 1}}, "count": 2}
            assert sorted(again["ids"]) == ["j", "o"]
            assert await observer.nothing() == []  # no second member_added
            # Joined once: one unsubscribe removes the member.
            await joiner.send("pusher:unsubscribe", {"channel": channel})
            await observer.expect(MEMBER_REMOVED, channel)
            # Public and private channels re-confirm too, and still deliver once.
            public, private = f"pub-{uid()}", f"private-{uid()}"
            for name in (public, private):
                await subscribed(joiner, name, app)
                await subscribed(joiner, name, app)
                await publish(srv, name, "once", "1")
                await joiner.expect("once", name)
                assert events(await joiner.nothing(), "once") == []
        finally:
            await close_all(observer, joiner)

    run(body())


def test_unsubscribe_unknown_channel_is_a_no_op(srv):
    async def body():
        client = await connect(srv)
        try:
            for data in ({"channel": f"never-{uid()}"}, "bare-channel-name", {}, None, 42):
                await client.send("pusher:unsubscribe", data)
            assert await client.nothing() == []
            await still_open(client)
        finally:
            await client.close()

    run(body())


# -- client events ------------------------------------------------------------------------------------
def test_client_events_relay(srv):
    app = default_app(srv)

    async def body():
        sender, peer = await connect(srv), await connect(srv)
        try:
            private, presence = f"private-{uid()}", f"presence-{uid()}"
            for client, user in ((sender, "s"), (peer, "p")):
                await subscribed(client, private, app)
                await subscribed(client, presence, app, {"user_id": user})
            await sender.expect(MEMBER_ADDED, presence)
            payloads = [
                {"a": [1, {"b": None}]},
                '{"already":"a string"}',
                "plain text",
                7,
                [1, 2],
                None,
                True,
            ]
            for data in payloads:
                await sender.ws.send(json.dumps({"event": "client-data", "channel": private, "data": data}))
                frame = await peer.expect("client-data", private)
                assert frame.get("data") == data and type(frame.get("data")) is type(data), (frame, data)
                assert set(frame) <= {"event", "channel", "data"} and frame["channel"] == private
            await sender.send("client-typing", {"t": 1}, presence)
            frame = await peer.expect("client-typing", presence)
            assert frame == {"event": "client-typing", "channel": presence, "data": {"t": 1}, "user_id": "s"}
            assert list(frame) == ["event", "channel", "data", "user_id"]
            # Never echoed to the sender.
            assert events(await sender.nothing(), "client-data") == []
            assert events(await sender.nothing(), "client-typing") == []
        finally:
            await close_all(sender, peer)

    run(body())


def test_client_event_from_a_signed_in_user_on_presence(srv):
    app = default_app(srv)

    async def body():
        sender, peer = await connect(srv), await connect(srv)
        try:
            channel = f"presence-{uid()}"
            await signed_in(sender, app, {"id": "signed-user"})
            await subscribed(sender, channel, app, {"user_id": "presence-id"})
            await subscribed(peer, channel, app, {"user_id": "peer"})
            await sender.send("client-x", "hi", channel)
            frame = await peer.expect("client-x", channel)
            assert frame["data"] == "hi" and isinstance(frame.get("user_id"), str) and frame["user_id"]
        finally:
            await close_all(sender, peer)

    run(body())


# -- users: sign-in, server-to-user, termination ----------------------------------------------------
def test_signin_and_server_to_user_delivery(srv):
    app = default_app(srv)

    async def body():
        n = uid()
        user, other = f"user-{n}", f"other-{n}"
        a, b, c, stranger = [await connect(srv) for _ in range(4)]
        try:
            user_data = await signed_in(a, app, {"id": user, "user_info": {"name": "Ada"}})
            assert json.loads(user_data)["id"] == user
            await signed_in(b, app, {"id": user})
            await signed_in(c, app, {"id": other})
            # pusher-js subscribes to its own server-to-user channel with auth "".
            ok = await subscribed(a, f"#server-to-user-{user}")
            assert ok["data"] == "{}"
            await publish(srv, f"#server-to-user-{user}", "direct", {"hello": user})
            for client in (a, b):  # subscribed or not: every connection signed in as the user
                frame = await client.expect("direct")
                assert frame == {
                    "event": "direct",
                    "channel": f"#server-to-user-{user}",
                    "data": json.dumps({"hello": user}, separators=(",", ":")),
                }
            assert events(await c.nothing(), "direct") == []
            assert events(await stranger.nothing(), "direct") == []
        finally:
            await close_all(a, b, c, stranger)

    run(body())


@pytest.mark.parametrize(
    ("route", "code", "reason"),
    [
        ("/apps/{app}/users/{user}/terminate_connections", 4009, "You got disconnected by the app."),
        ("/users/{user}/terminate_connections", 4009, "You got disconnected by the app."),
        ("/apps/{app}/users/{user}/force_reconnect", 4200, "Force reconnect requested by the app."),
    ],
)
def test_terminate_and_force_reconnect(srv, route, code, reason):
    app = default_app(srv)

    async def body():
        user = f"t-{uid()}"
        a, b, other, anonymous = [await connect(srv) for _ in range(4)]
        try:
            await signed_in(a, app, {"id": user})
            await signed_in(b, app, {"id": user})
            await signed_in(other, app, {"id": f"not-{user}"})
            presence = f"presence-{uid()}"
            await subscribed(anonymous, presence, app, {"user_id": "watcher"})
            await subscribed(a, presence, app, {"user_id": user})
            await anonymous.expect(MEMBER_ADDED, presence)
            response = await api(srv, "POST", route.format(app=app.id, user=user), {})
            assert response.status_code == 200 and response.json() == {"ok": True}, response.text
            for client in (a, b):
                closed = await read_until_closed(client.ws)
                assert (closed.code, closed.reason) == (code, close_reason(srv, reason)), closed
            # Disconnect cleanup ran for the terminated sockets.
            removed = await anonymous.expect(MEMBER_REMOVED, presence)
            assert json.loads(removed["data"]) == {"user_id": user}
            await still_open(other)
            await still_open(anonymous)
            # A user without sockets is fine too.
            response = await api(srv, "POST", route.format(app=app.id, user=f"nobody-{uid()}"), {})
            assert response.status_code == 200 and response.json() == {"ok": True}
        finally:
            await close_all(a, b, other, anonymous)

    run(body())


# -- watchlist --------------------------------------------------------------------------------------------
def test_watchlist_online_and_offline(srv):
    app = default_app(srv)  # enable_watchlist_events on this server

    async def body():
        n = uid()
        online, later = f"on-{n}", f"later-{n}"
        present, watcher, later1, later2 = [await connect(srv) for _ in range(4)]
        try:
            await signed_in(present, app, {"id": online})
            await signed_in(watcher, app, {"id": f"w-{n}", "watchlist": [online, later]})
            frame = await watcher.expect(WATCHLIST)
            assert frame == {
                "event": WATCHLIST,
                "data": {
                    "events": [
                        {"name": "online", "user_ids": [online]},
                        {"name": "offline", "user_ids": [later]},
                    ]
                },
            }
            await signed_in(later1, app, {"id": later})
            frame = await watcher.expect(WATCHLIST)
            assert frame["data"] == {"events": [{"name": "online", "user_ids": [later]}]}
            await signed_in(later2, app, {"id": later})  # second connection: no new event
            assert events(await watcher.nothing(), WATCHLIST) == []
            await later1.close()
            assert events(await watcher.nothing(), WATCHLIST) == []  # still one connection left
            await later2.close()
            frame = await watcher.expect(WATCHLIST)
            assert frame["data"] == {"events": [{"name": "offline", "user_ids": [later]}]}
            await present.close()
            frame = await watcher.expect(WATCHLIST)
            assert frame["data"] == {"events": [{"name": "offline", "user_ids": [online]}]}
        finally:
            await close_all(present, watcher, later1, later2)

    run(body())


def test_watchlist_with_nobody_online_and_empty_list(srv):
    app = default_app(srv)

    async def body():
        n = uid()
        a, b = await connect(srv), await connect(srv)
        try:
            await signed_in(a, app, {"id": f"x-{n}", "watchlist": [f"gone-{n}"]})
            frame = await a.expect(WATCHLIST)
            assert frame["data"] == {"events": [{"name": "offline", "user_ids": [f"gone-{n}"]}]}
            await signed_in(b, app, {"id": f"y-{n}"})  # no watchlist: no watchlist frame at all
            assert events(await b.nothing(), WATCHLIST) == []
        finally:
            await close_all(a, b)

    run(body())


# -- subscription_count ----------------------------------------------------------------------------------
def test_subscription_count(srv):
    app = creds_of(COUNTING)

    async def body():
        a, b, c = await connect(srv, app), await connect(srv, app), await connect(srv, app)
        try:
            channel = f"counted-{uid()}"
            await subscribed(a, channel)
            frame = await a.expect(COUNT, channel, timeout=3)
            assert frame == {"event": COUNT, "channel": channel, "data": '{"subscription_count":1}'}
            await subscribed(b, channel)
            for client in (a, b):  # the joiner gets it too, after its subscription_succeeded
                frame = await client.expect(COUNT, channel, timeout=3)
                assert json.loads(frame["data"]) == {"subscription_count": 2}
            await a.send("pusher:unsubscribe", {"channel": channel})
            frame = await b.expect(COUNT, channel, timeout=3)
            assert json.loads(frame["data"]) == {"subscription_count": 1}
            assert events(await a.nothing(), COUNT) == []
            # Presence channels have member events instead.
            presence = f"presence-{uid()}"
            await subscribed(c, presence, app, {"user_id": "c"})
            assert events(await c.nothing(1.2), COUNT) == []
        finally:
            await close_all(a, b, c)

    run(body())


def test_subscription_count_off_by_default(srv):
    async def body():
        client = await connect(srv)
        try:
            await subscribed(client, f"uncounted-{uid()}")
            assert events(await client.nothing(1.2), COUNT) == []
        finally:
            await client.close()

    run(body())


# -- cache channels -------------------------------------------------------------------------------------
def test_cache_channels(srv):
    app = default_app(srv)

    async def body():
        n = uid()
        channel = f"cache-{n}"
        first, second = await connect(srv), await connect(srv)
        try:
            await subscribed(first, channel)
            miss = await first.recv()
            assert miss == {"event": "pusher:cache_miss", "channel": channel, "data": "{}"}
            info = await api(srv, "GET", f"/apps/{app.id}/channels/{channel}", params={"info": "cache"})
            assert info.json() == {"occupied": True}
            await publish(srv, channel, "price", {"btc": 1})
            await first.expect("price", channel)
            # A new subscriber gets the last event right after its subscription_succeeded.
            await second.subscribe(channel)
            assert (await second.recv())["event"] == SUCCEEDED
            cached = await second.recv()
            assert cached == {"event": "price", "channel": channel, "data": '{"btc":1}'}
            info = (
                await api(srv, "GET", f"/apps/{app.id}/channels/{channel}", params={"info": "cache"})
            ).json()
            assert info["occupied"] is True
            assert json.loads(info["cache"]["data"]) == cached
            assert 3500 < info["cache"]["ttl"] <= 3600
        finally:
            await close_all(first, second)

    run(body())


def test_client_events_are_not_cached(srv):
    app = default_app(srv)

    async def body():
        channel = f"private-cache-{uid()}"
        sender, late = await connect(srv), await connect(srv)
        try:
            await subscribed(sender, channel, app)
            assert (await sender.recv())["event"] == "pusher:cache_miss"
            await sender.send("client-x", {"v": 1}, channel)
            await subscribed(late, channel, app)
            assert (await late.recv()) == {"event": "pusher:cache_miss", "channel": channel, "data": "{}"}
        finally:
            await close_all(sender, late)

    run(body())


# -- HTTP publish and queries -----------------------------------------------------------------------------
def test_socket_id_exclusion(srv):
    async def body():
        a, b = await connect(srv), await connect(srv)
        try:
            channel = f"ex-{uid()}"
            await subscribed(a, channel)
            await subscribed(b, channel)
            await publish(srv, channel, "to-others", "x", socket_id=a.socket_id)
            assert (await b.expect("to-others", channel))["data"] == "x"
            assert events(await a.nothing(), "to-others") == []
        finally:
            await close_all(a, b)

    run(body())


def test_publish_data_is_always_a_string(srv):
    async def body():
        client = await connect(srv)
        try:
            channel = f"data-{uid()}"
            await subscribed(client, channel)
            for data, wire in (
                ("text", "text"),
                ({"a": [1, 2]}, '{"a":[1,2]}'),
                (5, "5"),
                ("", ""),
                ([], "[]"),
            ):
                await publish(srv, channel, "d", data)
                assert (await client.expect("d", channel))["data"] == wire
            response = await api(srv, "POST", f"/apps/{srv.app_id}/events", {"name": "d", "channel": channel})
            assert response.status_code == 200
            assert (await client.expect("d", channel))["data"] == "null"
        finally:
            await client.close()

    run(body())


def test_batch_publish(srv):
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            n = uid()
            one, two, presence = f"b1-{n}", f"b2-{n}", f"presence-b-{n}"
            await subscribed(client, one)
            await subscribed(client, two)
            await subscribed(client, presence, app, {"user_id": "bu"})
            batch = [
                {"name": "e1", "channel": one, "data": "first"},
                {"name": "e2", "channel": two, "data": {"second": True}},
                {"name": "e3", "channel": one, "data": "third"},
            ]
            response = await api(srv, "POST", f"/apps/{app.id}/batch_events", {"batch": batch})
            assert response.status_code == 200 and response.json() == {}, response.text
            got = [(f["event"], f["channel"], f["data"]) for f in [await client.recv() for _ in range(3)]]
            assert got == [("e1", one, "first"), ("e2", two, '{"second":true}'), ("e3", one, "third")]
            batch = [
                {"name": "i1", "channel": presence, "data": "x", "info": "user_count,subscription_count"},
                {"name": "i2", "channel": one, "data": "y"},
            ]
            response = await api(srv, "POST", f"/apps/{app.id}/batch_events", {"batch": batch})
            assert response.json() == {"batch": [{"user_count": 1, "subscription_count": 1}, {}]}, (
                response.text
            )
        finally:
            await client.close()

    run(body())


def test_publish_info(srv):
    app = default_app(srv)

    async def body():
        a, b = await connect(srv), await connect(srv)
        try:
            presence, plain = f"presence-i-{uid()}", f"plain-{uid()}"
            await subscribed(a, presence, app, {"user_id": "same"})
            await subscribed(b, presence, app, {"user_id": "same"})
            await subscribed(a, plain)
            body = {
                "name": "e",
                "channels": [presence, plain],
                "data": "x",
                "info": "user_count,subscription_count",
            }
            response = await api(srv, "POST", f"/apps/{app.id}/events", body)
            assert response.json() == {
                "channels": {
                    presence: {"user_count": 1, "subscription_count": 2},
                    plain: {"subscription_count": 1},
                }
            }, response.text
            response = await api(
                srv, "POST", f"/apps/{app.id}/events", {"name": "e", "channel": plain, "data": "x"}
            )
            assert response.json() == {"ok": True}
        finally:
            await close_all(a, b)

    run(body())


def test_channels_listing_with_prefix_and_info(srv):
    app = default_app(srv)

    async def body():
        n = uid()
        presence, private, public = f"presence-ls{n}", f"private-ls{n}", f"ls{n}-public"
        a, b, c = await connect(srv), await connect(srv), await connect(srv)
        try:
            await subscribed(a, presence, app, {"user_id": "u1"})
            await subscribed(b, presence, app, {"user_id": "u1"})
            await subscribed(c, presence, app, {"user_id": "u2"})
            await subscribed(a, private, app)
            await subscribed(b, public)
            path = f"/apps/{app.id}/channels"
            listing = await api(
                srv,
                "GET",
                path,
                params={"filter_by_prefix": f"presence-ls{n}", "info": "user_count,subscription_count"},
            )
            assert listing.json() == {"channels": {presence: {"user_count": 2, "subscription_count": 3}}}, (
                listing.text
            )
            listing = await api(srv, "GET", path, params={"filter_by_prefix": f"private-ls{n}"})
            assert listing.json() == {"channels": {private: {}}}
            listing = await api(
                srv, "GET", path, params={"filter_by_prefix": f"ls{n}", "info": "subscription_count"}
            )
            assert listing.json() == {"channels": {public: {"subscription_count": 1}}}
            everything = (await api(srv, "GET", path)).json()["channels"]
            assert {presence, private, public} <= set(everything)
            assert all(v == {} for v in everything.values())
            # user_count needs a presence- prefix when non-presence channels exist.
            response = await api(srv, "GET", path, params={"info": "user_count"})
            assert response.status_code == 400 and response.json()["code"] == "invalid_input"
            # One channel.
            one = await api(
                srv, "GET", f"{path}/{presence}", params={"info": "user_count,subscription_count"}
            )
            assert one.json() == {"occupied": True, "user_count": 2, "subscription_count": 3}
            one = await api(srv, "GET", f"{path}/{public}")
            assert one.json() == {"occupied": True}
            empty = await api(srv, "GET", f"{path}/nobody-{n}", params={"info": "subscription_count"})
            assert empty.json() == {"occupied": False, "subscription_count": 0}
            # Unsubscribed channels disappear from the listing.
            await b.send("pusher:unsubscribe", {"channel": public})
            await still_open(b)
            listing = await api(srv, "GET", path, params={"filter_by_prefix": f"ls{n}"})
            assert listing.json() == {"channels": {}}
        finally:
            await close_all(a, b, c)

    run(body())


def test_channel_users(srv):
    app = default_app(srv)

    async def body():
        channel = f"presence-users-{uid()}"
        a, b, c = await connect(srv), await connect(srv), await connect(srv)
        try:
            await subscribed(a, channel, app, {"user_id": "user-1"})
            await subscribed(b, channel, app, {"user_id": "user-2"})
            await subscribed(c, channel, app, {"user_id": "user-1"})
            users = await api(srv, "GET", f"/apps/{app.id}/channels/{channel}/users")
            assert users.status_code == 200
            assert sorted(users.json()["users"], key=lambda u: u["id"]) == [
                {"id": "user-1"},
                {"id": "user-2"},
            ]
            empty = await api(srv, "GET", f"/apps/{app.id}/channels/presence-empty-{uid()}/users")
            assert empty.json() == {"users": []}
        finally:
            await close_all(a, b, c)

    run(body())


def test_server_to_user_channel_of_another_user(srv):
    """Not signed in as that user: the subscribe is refused without closing the socket."""
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            await signed_in(client, app, {"id": f"me-{uid()}"})
            await client.subscribe(f"#server-to-user-someone-else-{uid()}")
            error = await client.expect("pusher:error")
            assert error["data"]["code"] == 4009
            await still_open(client)
        finally:
            await client.close()

    run(body())


def test_encrypted_channel_payload_is_relayed_untouched(srv):
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            channel = f"private-encrypted-{uid()}"
            await subscribed(client, channel, app)
            sealed = json.dumps({"nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"})
            await publish(srv, channel, "secret", sealed)
            assert (await client.expect("secret", channel))["data"] == sealed
            await expect_no_error(client)
        finally:
            await client.close()

    run(body())


async def expect_no_error(client) -> None:
    assert events(await client.nothing(0.2), "pusher:error") == []


def test_presence_with_a_forged_signature_is_refused(srv):
    app = default_app(srv)

    async def body():
        client = await connect(srv)
        try:
            channel = f"presence-{uid()}"
            await client.send(
                "pusher:subscribe",
                {"channel": channel, "auth": f"{app.key}:{'0' * 64}", "channel_data": '{"user_id":"x"}'},
            )
            await expect_error(client, 4009)
        finally:
            await client.close()

    run(body())
