"""Interoperability tests: the official ``pusher`` Python server SDK (3.3.4) against our server.

The SDK drives the signed HTTP API (publish, channel queries, user termination) and produces the
channel / user auth signatures; a raw ``websockets`` client speaking Pusher protocol 7 observes what
the server delivers.

Fixture contract (tests/conftest.py): ``server`` with ``host``, ``port`` (WebSocket and HTTP API on
one port), ``app_id``, ``key``, ``secret``; the default app allows client events and sign-in.

All tests are synchronous and run their async body with ``asyncio.run``; blocking SDK calls go
through ``asyncio.to_thread``. Every individual wait is bounded (<= 5 s). Channel names and user ids
are unique per test because the server may be shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pusher
import pytest
import websockets
from pusher.errors import PusherBadAuth, PusherBadStatus, PusherError

pytestmark = pytest.mark.interop

WAIT = 5.0  # upper bound for any single wait
QUIET = 1.0  # how long "receives nothing" is observed
TEST_BUDGET = 40.0  # hard cap for one test body

SUCCEEDED = "pusher_internal:subscription_succeeded"
AUTH_RE = re.compile(r"^app-key:[0-9a-f]{64}$")


# --------------------------------------------------------------------------- helpers


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _run(coro) -> Any:
    async def guarded():
        return await asyncio.wait_for(coro, TEST_BUDGET)

    return asyncio.run(guarded())


def _sdk(server, **overrides) -> pusher.Pusher:
    kwargs = dict(
        app_id=server.app_id,
        key=server.key,
        secret=server.secret,
        host=server.host,
        port=server.port,
        ssl=False,
        timeout=WAIT,
    )
    kwargs.update(overrides)
    return pusher.Pusher(**kwargs)


async def _call(fn: Callable, *args, **kwargs) -> Any:
    """Run a blocking SDK call in a worker thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def _poll(
    fn: Callable[[], Any], until: Callable[[Any], bool], timeout: float = WAIT, interval: float = 0.4
) -> Any:
    """Call ``fn`` until ``until(result)`` holds or ``timeout`` passes; return the last result.

    Used for the channel listing, which the server may cache for up to 2 s (http-api.md §5.3).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await _call(fn)
        if until(result) or loop.time() >= deadline:
            return result
        await asyncio.sleep(interval)


def _data_obj(frame: dict) -> Any:
    """``data`` of a frame, decoded if it is a JSON string."""
    data = frame.get("data")
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


def _is(event: str, channel: str | None = None) -> Callable[[dict], bool]:
    return lambda f: f.get("event") == event and (channel is None or f.get("channel") == channel)


def _is_error(code: int | None = None) -> Callable[[dict], bool]:
    def pred(f: dict) -> bool:
        if f.get("event") != "pusher:error":
            return False
        data = _data_obj(f)
        return code is None or (isinstance(data, dict) and data.get("code") == code)

    return pred


class RawClient:
    """Minimal protocol-7 client on top of ``websockets``."""

    def __init__(self, ws, socket_id: str, activity_timeout: Any):
        self.ws = ws
        self.socket_id = socket_id
        self.activity_timeout = activity_timeout
        self.frames: list[dict] = []  # every frame received, for diagnostics

    @classmethod
    async def connect(cls, server) -> RawClient:
        url = f"ws://{server.host}:{server.port}/app/{server.key}?protocol=7&client=py&version=1&flash=false"
        ws = await websockets.connect(url, open_timeout=WAIT, close_timeout=2, ping_interval=None)
        try:
            raw = await asyncio.wait_for(ws.recv(), WAIT)
            frame = json.loads(raw)
            assert frame.get("event") == "pusher:connection_established", frame
            assert isinstance(frame.get("data"), str), "connection_established data must be a JSON string"
            data = json.loads(frame["data"])
            socket_id = data["socket_id"]
            assert re.fullmatch(r"\d+\.\d+", socket_id), socket_id
        except BaseException:
            await ws.close()
            raise
        client = cls(ws, socket_id, data.get("activity_timeout"))
        client.frames.append(frame)
        return client

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event}
        if channel is not None:
            frame["channel"] = channel
        if data is not None:
            frame["data"] = data
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = WAIT) -> dict:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def wait_for(
        self, pred: Callable[[dict], bool], timeout: float = WAIT, what: str = "frame"
    ) -> dict:
        """Read frames until one matches ``pred``; non-matching frames are skipped (kept in .frames)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(
                    f"{what} not received within {timeout}s on {self.socket_id}; "
                    f"frames so far: {self.frames[-10:]}"
                )
            try:
                frame = await self.recv(left)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed as exc:
                raise AssertionError(
                    f"socket {self.socket_id} closed while waiting for {what}: "
                    f"code={self.ws.close_code} reason={self.ws.close_reason!r}; "
                    f"frames: {self.frames[-10:]}"
                ) from exc
            if pred(frame):
                return frame

    async def collect(self, duration: float = QUIET) -> list[dict]:
        """Every frame that arrives within ``duration`` seconds (socket must stay open)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        got: list[dict] = []
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return got
            try:
                got.append(await self.recv(left))
            except TimeoutError:
                return got
            except websockets.ConnectionClosed as exc:
                raise AssertionError(
                    f"socket {self.socket_id} closed unexpectedly: "
                    f"code={self.ws.close_code} reason={self.ws.close_reason!r}"
                ) from exc

    async def subscribe(self, channel: str, auth: str | None = None, channel_data: str | None = None) -> dict:
        """Subscribe and require ``subscription_succeeded``; returns that frame."""
        data: dict[str, Any] = {"channel": channel, "auth": auth or ""}
        if channel_data is not None:
            data["channel_data"] = channel_data
        await self.send("pusher:subscribe", data)
        frame = await self.wait_for(
            lambda f: (
                _is(SUCCEEDED, channel)(f) or f.get("event") in ("pusher:error", "pusher:subscription_error")
            ),
            what=f"subscription_succeeded for {channel}",
        )
        assert frame.get("event") == SUCCEEDED, f"subscribe to {channel} failed: {frame}"
        return frame

    async def subscribe_presence(
        self, sdk: pusher.Pusher, channel: str, user_id: str, user_info: Any = None
    ) -> dict:
        custom = {"user_id": user_id}
        if user_info is not None:
            custom["user_info"] = user_info
        auth = await _call(sdk.authenticate, channel, self.socket_id, custom)
        return await self.subscribe(channel, auth["auth"], auth["channel_data"])

    async def unsubscribe(self, channel: str) -> None:
        await self.send("pusher:unsubscribe", {"channel": channel})
        await self.ping()  # no reply to unsubscribe: the pong proves it was processed

    async def ping(self) -> None:
        await self.send("pusher:ping", {})
        await self.wait_for(_is("pusher:pong"), what="pusher:pong")

    async def signin(self, auth: dict) -> dict:
        await self.send("pusher:signin", {"auth": auth["auth"], "user_data": auth["user_data"]})
        frame = await self.wait_for(
            lambda f: f.get("event") in ("pusher:signin_success", "pusher:error"), what="signin reply"
        )
        assert frame.get("event") == "pusher:signin_success", f"signin failed: {frame}"
        return frame

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


class Clients:
    """Opens raw clients and closes them all on exit."""

    def __init__(self, server):
        self.server = server
        self.all: list[RawClient] = []

    async def new(self) -> RawClient:
        c = await RawClient.connect(self.server)
        self.all.append(c)
        return c

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.gather(*(c.close() for c in self.all), return_exceptions=True)


def _events(frames: list[dict], name: str) -> list[dict]:
    return [f for f in frames if f.get("event") == name]


# --------------------------------------------------------------------------- trigger


def test_trigger_single_channel_dict_and_string_data(server):
    async def body():
        sdk = _sdk(server)
        ch = f"interop-py-pub-{_uid()}"
        async with Clients(server) as cs:
            c = await cs.new()
            await c.subscribe(ch)

            data = {"message": "héllo ✓", "n": 1, "nested": {"a": [1, 2, None], "ok": True}}
            resp = await _call(sdk.trigger, ch, "order.created", data)
            assert isinstance(resp, dict), resp
            frame = await c.wait_for(_is("order.created", ch), what="order.created")
            assert isinstance(frame["data"], str), f"data must be delivered as a string: {frame}"
            # The SDK serialises the dict itself (json.dumps(..., ensure_ascii=False)) and posts a
            # string; the server must relay that string byte for byte.
            assert frame["data"] == json.dumps(data, ensure_ascii=False)
            assert json.loads(frame["data"]) == data
            assert "user_id" not in frame and "socket_id" not in frame

            # A pre-serialised compact dump is relayed unchanged as well.
            compact = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            await _call(sdk.trigger, ch, "order.compact", compact)
            frame = await c.wait_for(_is("order.compact", ch), what="order.compact")
            assert frame["data"] == compact

            # Only those two events were delivered (no duplicates).
            extra = await c.collect(0.5)
            assert not [f for f in extra if f.get("channel") == ch], extra

    _run(body())


def test_trigger_multiple_channels(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        chans = [f"interop-py-multi-{i}-{u}" for i in range(3)]
        other = f"interop-py-multi-other-{u}"
        async with Clients(server) as cs:
            c = await cs.new()
            for ch in chans + [other]:
                await c.subscribe(ch)
            data = {"multi": True, "id": u}
            await _call(sdk.trigger, chans, "multi-event", data)

            got = []
            for _ in chans:
                got.append(await c.wait_for(_is("multi-event"), what="multi-event"))
            got += [f for f in await c.collect(QUIET) if f.get("event") == "multi-event"]
            assert sorted(f["channel"] for f in got) == sorted(chans), got
            for f in got:
                assert json.loads(f["data"]) == data

    _run(body())


def test_trigger_with_socket_id_exclusion(server):
    async def body():
        sdk = _sdk(server)
        ch = f"interop-py-excl-{_uid()}"
        async with Clients(server) as cs:
            excluded, other = await cs.new(), await cs.new()
            await excluded.subscribe(ch)
            await other.subscribe(ch)

            await _call(sdk.trigger, ch, "to-others", {"x": 1}, excluded.socket_id)
            f = await other.wait_for(_is("to-others", ch), what="to-others on the other socket")
            assert json.loads(f["data"]) == {"x": 1}
            quiet = await excluded.collect(QUIET)
            assert not _events(quiet, "to-others"), f"excluded socket received the event: {quiet}"

            # Control: without socket_id the formerly excluded socket does receive events, and the
            # excluded event never shows up before it (per-channel ordering).
            await _call(sdk.trigger, ch, "to-all", {"x": 2})
            f = await excluded.wait_for(_is("to-all", ch), what="to-all on the excluded socket")
            assert json.loads(f["data"]) == {"x": 2}
            assert not _events(excluded.frames, "to-others"), excluded.frames
            await other.wait_for(_is("to-all", ch), what="to-all on the other socket")

    _run(body())


# --------------------------------------------------------------------------- trigger_batch


def test_trigger_batch(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        ch1, ch2 = f"interop-py-batch-1-{u}", f"interop-py-batch-2-{u}"
        async with Clients(server) as cs:
            c = await cs.new()
            await c.subscribe(ch1)
            await c.subscribe(ch2)
            batch = [
                {"channel": ch1, "name": "b-one", "data": {"i": 1}},
                {"channel": ch2, "name": "b-two", "data": "plain string"},
                {"channel": ch1, "name": "b-three", "data": {"i": 3, "s": "ü"}},
            ]
            expected = [(b["channel"], b["name"], b["data"]) for b in batch]
            resp = await _call(sdk.trigger_batch, batch)
            assert isinstance(resp, dict), resp

            got = {}
            for _ in expected:
                f = await c.wait_for(lambda f: f.get("event", "").startswith("b-"), what="batch event")
                got[f["event"]] = f
            for channel, name, data in expected:
                f = got[name]
                assert f["channel"] == channel, f
                assert isinstance(f["data"], str), f
                if isinstance(data, str):
                    assert f["data"] == data
                else:
                    assert json.loads(f["data"]) == data
            # Order within ch1 follows batch order.
            order = [
                f["event"]
                for f in c.frames
                if f.get("channel") == ch1 and f.get("event", "").startswith("b-")
            ]
            assert order == ["b-one", "b-three"], order
            extra = await c.collect(0.5)
            assert not [f for f in extra if f.get("event", "").startswith("b-")], extra

    _run(body())


# --------------------------------------------------------------------------- channel queries


async def _occupy(
    cs: Clients, sdk: pusher.Pusher, pa: str, pb: str | None = None, pub: str | None = None
) -> tuple[str, str, str]:
    """presence ``pa``: users u1 (two sockets) and u2; presence ``pb``: u3; public ``pub``: 1 socket."""
    u = _uid()
    u1, u2, u3 = f"u1-{u}", f"u2-{u}", f"u3-{u}"
    s1, s2, s3 = await cs.new(), await cs.new(), await cs.new()
    await s1.subscribe_presence(sdk, pa, u1, {"name": "one"})
    await s2.subscribe_presence(sdk, pa, u2, {"name": "two"})
    await s3.subscribe_presence(sdk, pa, u1, {"name": "one"})
    if pb:
        await s1.subscribe_presence(sdk, pb, u3)
    if pub:
        await s2.subscribe(pub)
    return u1, u2, u3


def test_channels_info(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        pa, pb = f"presence-a-{u}", f"presence-b-{u}"
        pub = f"interop-py-info-pub-{u}"
        never = f"presence-never-{u}"
        vacated = f"presence-vacated-{u}"
        async with Clients(server) as cs:
            await _occupy(cs, sdk, pa, pb, pub)
            leaver = await cs.new()
            await leaver.subscribe_presence(sdk, vacated, f"leaver-{u}")
            await leaver.unsubscribe(vacated)

            def presence_ok(r):
                chans = r.get("channels", {})
                return (
                    chans.get(pa, {}).get("user_count") == 2
                    and chans.get(pb, {}).get("user_count") == 1
                    and vacated not in chans
                )

            res = await _poll(
                lambda: sdk.channels_info(prefix_filter="presence-", attributes=["user_count"]), presence_ok
            )
            chans = res["channels"]
            assert pa in chans and pb in chans, res
            assert chans[pa]["user_count"] == 2, res  # u1 twice counts once
            assert chans[pb]["user_count"] == 1, res
            assert all(name.startswith("presence-") for name in chans), res
            assert pub not in chans, res
            assert never not in chans, res
            assert vacated not in chans, res

            res = await _poll(
                lambda: sdk.channels_info(),
                lambda r: {pa, pb, pub} <= set(r.get("channels", {})) and vacated not in r["channels"],
            )
            chans = res["channels"]
            assert {pa, pb, pub} <= set(chans), res
            for name in (pa, pb, pub):
                assert chans[name] == {}, f"no info requested, expected {{}} for {name}: {res}"
            assert never not in chans, res
            assert vacated not in chans, res

    _run(body())


def test_channel_info(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        pa = f"presence-a-{u}"
        pub = f"interop-py-chinfo-pub-{u}"
        empty = f"presence-empty-{u}"
        async with Clients(server) as cs:
            await _occupy(cs, sdk, pa, pub=pub)

            res = await _call(sdk.channel_info, pa, ["user_count", "subscription_count"])
            assert res["occupied"] is True, res
            assert res["user_count"] == 2, res  # distinct users
            assert res["subscription_count"] == 3, res  # sockets

            res = await _call(sdk.channel_info, pa)
            assert res["occupied"] is True, res

            res = await _call(sdk.channel_info, pub, ["subscription_count"])
            assert res["occupied"] is True, res
            assert res["subscription_count"] == 1, res

            res = await _call(sdk.channel_info, empty)
            assert res["occupied"] is False, res
            res = await _call(sdk.channel_info, empty, ["user_count", "subscription_count"])
            assert res["occupied"] is False, res
            for key in ("user_count", "subscription_count"):
                assert res.get(key, 0) == 0, res

    _run(body())


def test_users_info(server):
    async def body():
        sdk = _sdk(server)
        pa = f"presence-a-{_uid()}"
        async with Clients(server) as cs:
            u1, u2, _ = await _occupy(cs, sdk, pa)
            res = await _call(sdk.users_info, pa)
            users = res["users"]
            ids = [entry["id"] for entry in users]
            assert sorted(ids) == sorted([u1, u2]), res  # u1 has two sockets but is listed once
            assert all(set(entry) == {"id"} for entry in users), res

            empty = await _call(sdk.users_info, f"presence-empty-{_uid()}")
            assert empty == {"users": []}, empty

    _run(body())


# --------------------------------------------------------------------------- users


def test_send_to_user(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        target, bystander = f"42-{u}", f"43-{u}"
        async with Clients(server) as cs:
            a, b = await cs.new(), await cs.new()
            await a.signin(await _call(sdk.authenticate_user, a.socket_id, {"id": target}))
            await b.signin(await _call(sdk.authenticate_user, b.socket_id, {"id": bystander}))
            await _call(sdk.send_to_user, target, "dm", {"hi": target})
            f = await a.wait_for(_is("dm"), what="server-to-user event")
            assert f.get("channel") == f"#server-to-user-{target}", f
            assert json.loads(f["data"]) == {"hi": target}
            assert not _events(await b.collect(QUIET), "dm")

    _run(body())


def test_terminate_user_connections(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        target, survivor_id = f"42-{u}", f"43-{u}"
        async with Clients(server) as cs:
            victim, survivor, anon = await cs.new(), await cs.new(), await cs.new()
            user_data = {"id": target, "user_info": {"name": "Ada"}}
            auth = await _call(sdk.authenticate_user, victim.socket_id, user_data)
            assert AUTH_RE.match(auth["auth"]), auth
            ok = await victim.signin(auth)
            ok_data = ok["data"] if isinstance(ok["data"], dict) else json.loads(ok["data"])
            assert ok_data["user_data"] == auth["user_data"], ok
            await survivor.signin(await _call(sdk.authenticate_user, survivor.socket_id, {"id": survivor_id}))
            await anon.subscribe(f"interop-py-term-{u}")

            # SDK 3.3.4 posts to /users/{id}/terminate_connections (no /apps/{id} prefix).
            resp = await _call(sdk.terminate_user_connections, target)
            assert isinstance(resp, dict), resp

            try:
                await asyncio.wait_for(victim.ws.wait_closed(), WAIT)
            except TimeoutError:
                raise AssertionError(
                    f"signed-in socket not closed within {WAIT}s; frames: {victim.frames}"
                ) from None
            assert victim.ws.close_code == 4009, (victim.ws.close_code, victim.ws.close_reason)

            # The others stay open and responsive.
            for c in (survivor, anon):
                await c.ping()
                assert c.ws.close_code is None

    _run(body())


# --------------------------------------------------------------------------- auth helpers


def test_authenticate_private_channel(server):
    async def body():
        sdk = _sdk(server)
        ch = f"private-interop-py-{_uid()}"
        async with Clients(server) as cs:
            c = await cs.new()
            auth = await _call(sdk.authenticate, ch, c.socket_id)
            assert set(auth) == {"auth"} and AUTH_RE.match(auth["auth"]), auth
            f = await c.subscribe(ch, auth["auth"])
            # protocol-v1.md §5.3: non-presence success carries data "{}" (a JSON string).
            assert isinstance(f.get("data"), str) and json.loads(f["data"]) == {}, f
            # Subscribed for real: a published event arrives.
            await _call(sdk.trigger, ch, "secret-event", {"p": 1})
            f = await c.wait_for(_is("secret-event", ch), what="event on private channel")
            assert json.loads(f["data"]) == {"p": 1}

    _run(body())


def test_authenticate_presence_channel(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        ch = f"presence-interop-py-{u}"
        uid_a, uid_b = f"ada-{u}", f"bo-{u}"
        async with Clients(server) as cs:
            a, b = await cs.new(), await cs.new()
            auth = await _call(
                sdk.authenticate, ch, a.socket_id, {"user_id": uid_a, "user_info": {"name": "Ada"}}
            )
            assert set(auth) == {"auth", "channel_data"} and AUTH_RE.match(auth["auth"]), auth
            f = await a.subscribe(ch, auth["auth"], auth["channel_data"])
            presence = json.loads(f["data"])["presence"]
            assert presence["ids"] == [uid_a], presence
            assert presence["hash"] == {uid_a: {"name": "Ada"}}, presence
            assert presence["count"] == 1, presence

            f = await b.subscribe_presence(sdk, ch, uid_b, {"name": "Bo"})
            presence = json.loads(f["data"])["presence"]
            assert sorted(presence["ids"]) == sorted([uid_a, uid_b]), presence
            assert presence["hash"] == {uid_a: {"name": "Ada"}, uid_b: {"name": "Bo"}}, presence
            assert presence["count"] == 2, presence

            added = await a.wait_for(_is("pusher_internal:member_added", ch), what="member_added")
            assert json.loads(added["data"]) == {"user_id": uid_b, "user_info": {"name": "Bo"}}, added

    _run(body())


def test_tampered_auth_rejected_socket_stays_open(server):
    async def body():
        sdk = _sdk(server)
        u = _uid()
        priv, pres = f"private-interop-py-bad-{u}", f"presence-interop-py-bad-{u}"
        async with Clients(server) as cs:
            c = await cs.new()

            good = (await _call(sdk.authenticate, priv, c.socket_id))["auth"]
            last = good[-1]
            bad = good[:-1] + ("0" if last != "0" else "1")
            await c.send("pusher:subscribe", {"channel": priv, "auth": bad})
            err = await c.wait_for(
                lambda f: _is_error()(f) or _is(SUCCEEDED, priv)(f),
                what="pusher:error for tampered private auth",
            )
            assert _is_error(4009)(err), err

            # Signature for another socket id is rejected as well.
            foreign = (await _call(sdk.authenticate, priv, "1234.5678"))["auth"]
            await c.send("pusher:subscribe", {"channel": priv, "auth": foreign})
            err = await c.wait_for(
                lambda f: _is_error()(f) or _is(SUCCEEDED, priv)(f),
                what="pusher:error for foreign-socket auth",
            )
            assert _is_error(4009)(err), err

            # Presence: channel_data altered after signing.
            auth = await _call(sdk.authenticate, pres, c.socket_id, {"user_id": f"ada-{u}"})
            forged = auth["channel_data"].replace(f"ada-{u}", f"eve-{u}")
            assert forged != auth["channel_data"]
            await c.send("pusher:subscribe", {"channel": pres, "auth": auth["auth"], "channel_data": forged})
            err = await c.wait_for(
                lambda f: _is_error()(f) or _is(SUCCEEDED, pres)(f),
                what="pusher:error for forged channel_data",
            )
            assert _is_error(4009)(err), err

            # Still open and usable: the genuine auth now works.
            await c.ping()
            assert c.ws.close_code is None
            await c.subscribe(priv, good)
            await c.subscribe(pres, auth["auth"], auth["channel_data"])

    _run(body())


# --------------------------------------------------------------------------- validation


def test_wrong_secret_is_rejected(server):
    async def body():
        bad = _sdk(server, secret=server.secret + "-wrong")
        ch = f"interop-py-badsecret-{_uid()}"
        async with Clients(server) as cs:
            c = await cs.new()
            await c.subscribe(ch)
            with pytest.raises(PusherBadAuth):
                await _call(bad.trigger, ch, "forged", {"x": 1})
            with pytest.raises(PusherBadAuth):
                await _call(bad.channels_info)
            with pytest.raises(PusherBadAuth):
                await _call(bad.channel_info, ch)
            assert not _events(await c.collect(QUIET), "forged")

    _run(body())


def test_wrong_app_id_in_path_is_401(server):
    async def body():
        wrong_id = str(int(server.app_id) + 424242)
        bad = _sdk(server, app_id=wrong_id)
        ch = f"interop-py-badapp-{_uid()}"
        async with Clients(server) as cs:
            c = await cs.new()
            await c.subscribe(ch)
            with pytest.raises(PusherBadAuth):  # 401, not 404
                await _call(bad.trigger, ch, "forged", {"x": 1})
            with pytest.raises(PusherBadAuth):
                await _call(bad.channels_info)
            assert not _events(await c.collect(QUIET), "forged")

    _run(body())


def test_unknown_key_is_404(server):
    bad = _sdk(server, key="no-such-key-" + _uid())
    with pytest.raises(PusherBadStatus) as info:
        bad.trigger(f"interop-py-badkey-{_uid()}", "forged", {"x": 1})
    assert str(info.value).startswith("404"), info.value
    assert not isinstance(info.value, PusherBadAuth)
    assert isinstance(info.value, PusherError)
