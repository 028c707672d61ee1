"""Property tests of inbound frame handling.

(a) ``frames.decode`` over arbitrary text, bytes and JSON: it returns a Frame or raises a non-fatal
    4000 ProtocolError, nothing else, and whatever it returns can be encoded back to UTF-8.
(b) A live socket fuzzed with random frames (real event names with random data shapes, some
    correctly signed, plus garbage): every rejection is a ``pusher:error`` with a specified code,
    every close uses a specified close code, and afterwards the server still delivers to a
    long-lived observer and its log holds no traceback.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from realtime.protocol import frames
from realtime.protocol.errors import ProtocolError
from realtime.protocol.signatures import sign_channel, sign_user
from realtime.testing import LiveServer, PusherClient

from ._live import SUCCEEDED, WAIT, api, full_log, serving, ws_url

ERROR_CODES = {4000, 4009, 4100, 4300, 4301, 4302}
CLOSE_CODES = {1009, 4009, 4100, 4201, 4301}  # the fatal codes a V1 connection may be closed with
REPLY_EVENTS = {
    "pusher:error",
    "pusher:pong",
    SUCCEEDED,
    "pusher:subscription_error",
    "pusher:signin_success",
    "pusher_internal:watchlist_events",
    "pusher:cache_miss",
    "pusher_internal:subscription_count",
}


# -- strategies ---------------------------------------------------------------------------------------
# Built lazily so hypothesis does not print kilobytes of brackets in its strategy reprs.
def deep_array() -> str:
    return "[" * 3000  # deeper than the JSON parser's recursion limit


def deep_object() -> str:
    return '{"a":' * 1000


def nested_past_the_bound() -> str:
    return "[" * 130 + "]" * 130  # valid JSON, deeper than frames.MAX_NESTING


def huge_integer_user() -> str:
    return '{"user_id":' + "9" * 5000 + "}"  # past Python's int-from-string digit limit


NASTY_STRINGS = [
    "\ud800",
    "a\udfffb",
    "\ud83d\ude00",
    "\x00",
    "\u2028",
    '{"user_id":"\\ud800"}',
    '{"id":"\\udc00"}',
    "NaN",
    "Infinity",
    "",
    " ",
    "null",
    "{}",
    "[]",
]
# Characters around the surrogate range, surrogates included (json.dumps escapes them as \uXXXX).
near_surrogates = st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010, exclude_categories=())
nasty = st.sampled_from(NASTY_STRINGS) | st.sampled_from(
    [deep_array, deep_object, nested_past_the_bound, huge_integer_user]
).map(lambda make: make())
plain_text = st.text(max_size=40)
text = st.one_of(plain_text, plain_text, plain_text, plain_text, nasty)
# Kept out of ``text`` (one lone surrogate anywhere makes the whole frame a 4000 before any
# handler runs), and fuzzed through frames of their own below.
surrogate_text = st.text(near_surrogates, min_size=1, max_size=4)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

CHANNELS = [
    "public-1",
    "private-a",
    "private-b",
    "presence-room",
    "presence-cache-p",
    "private-encrypted-x",
    "cache-c",
    "private-cache-c",
    "#server-to-user-u1",
    "ns:chan",
    "private-ns:chan",
    "room#u1",
    "bad name",
    "a" * 201,
    "private-" + "a" * 193,
    "[meta]x",
    "x*",
    "",
]
# one_of has no weights: repeating a branch makes it likelier (mostly well-formed shapes, so the
# fuzz gets past the frame checks into the handlers).
known_channels = st.sampled_from(CHANNELS)
channel_names = st.one_of(
    known_channels,
    known_channels,
    known_channels,
    text,
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
)


class Sign:
    """Marker: replaced by a correct signature for the fuzz socket when the frame is sent."""

    def __repr__(self) -> str:
        return "SIGN"


SIGN = Sign()


class AsString:
    """Marker: ``data`` sent as a JSON string holding the (signed) object."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"AsString({self.value!r})"


def resolve(value: Any, sign=lambda data, event: "SIGN") -> Any:
    """Replace the markers: SIGN by ``sign(data, event)``, AsString by the JSON text."""
    if isinstance(value, AsString):
        return json.dumps(resolve(value.value, sign))
    if isinstance(value, list):
        return [resolve(v, sign) for v in value]
    if isinstance(value, dict):
        event = value.get("event")
        out = {}
        for key, item in value.items():
            if key == "data" and isinstance(item, AsString | dict):
                inner = item.value if isinstance(item, AsString) else item
                if isinstance(inner, dict) and inner.get("auth") is SIGN:
                    inner = {**inner, "auth": sign(inner, event)}
                item = AsString(inner) if isinstance(item, AsString) else inner
            out[key] = resolve(item, sign)
        return out
    if value is SIGN:
        return "SIGN"
    return value


auths = st.one_of(st.just(SIGN), st.just(SIGN), text, json_values)
good_ids = st.sampled_from(["u1", "u2", "42", ""])
user_ids = st.one_of(good_ids, good_ids, st.integers(), text, st.none(), st.floats(allow_nan=False))
channel_data = (
    st.builds(
        lambda user_id, info, with_info: json.dumps(
            {"user_id": user_id, **({"user_info": info} if with_info else {})}
        ),
        user_ids,
        json_values,
        st.booleans(),
    )
    | text
    | json_values
)
user_data = (
    st.builds(
        lambda uid, watchlist, info: json.dumps({"id": uid, "watchlist": watchlist, "user_info": info}),
        user_ids,
        st.lists(st.sampled_from(["u1", "u2", "u3", "u4", "u5"]), max_size=5) | json_values,
        json_values,
    )
    | text
    | json_values
)


def maybe_string(strategy):
    """``data`` may be an object or a JSON string holding one: produce both."""
    return strategy | strategy.map(AsString)


subscribe_shape = maybe_string(
    st.fixed_dictionaries({"channel": channel_names}, optional={"auth": auths, "channel_data": channel_data})
)
subscribe_data = st.one_of(subscribe_shape, subscribe_shape, subscribe_shape, json_values)
signin_shape = maybe_string(st.fixed_dictionaries({"user_data": user_data}, optional={"auth": auths}))
signin_data = st.one_of(signin_shape, signin_shape, signin_shape, json_values)
unsubscribe_data = (
    maybe_string(st.fixed_dictionaries({}, optional={"channel": channel_names})) | json_values | text
)

SYSTEM_PREFIXES = st.sampled_from(["pusher:", "pusher_internal:", "sockudo:", "sockudo_internal:"])
event_frames = st.one_of(
    st.builds(lambda p, d: {"event": p + "subscribe", "data": d}, SYSTEM_PREFIXES, subscribe_data),
    st.builds(lambda p, d: {"event": p + "unsubscribe", "data": d}, SYSTEM_PREFIXES, unsubscribe_data),
    st.builds(lambda p, d: {"event": p + "signin", "data": d}, SYSTEM_PREFIXES, signin_data),
    st.builds(lambda p, d: {"event": p + "ping", "data": d}, SYSTEM_PREFIXES, json_values),
    st.builds(lambda p, d: {"event": p + "pong", "data": d}, SYSTEM_PREFIXES, json_values),
    st.builds(
        lambda name, channel, data: {"event": name, "channel": channel, "data": data},
        st.sampled_from(["client-x", "client-typing", "client-" + "n" * 200, "client-", "pusher:client-x"])
        | text.map(lambda t: "client-" + t),
        channel_names,
        json_values,
    ),
    st.dictionaries(
        st.sampled_from(["event", "channel", "data", "user_id", "extra"]), json_values, max_size=4
    ),
)
garbage = st.text(max_size=200) | st.binary(max_size=200) | json_values.map(json.dumps) | nasty
surrogate_frames = (
    st.builds(
        lambda event, field, value: {
            "event": event,
            field: value,
            **({} if field == "data" else {"data": {field: value}}),
        },
        st.sampled_from(["pusher:subscribe", "pusher:signin", "client-x", "pusher:ping"]) | surrogate_text,
        st.sampled_from(["event", "channel", "data", "user_data"]),
        surrogate_text,
    )
    | surrogate_text
)
# Mostly valid, correctly signed traffic, so the fuzz also runs with joined channels, presence
# members, a signed-in user and relayed client events.
JOINABLE = [
    "private-a",
    "private-b",
    "presence-room",
    "presence-cache-p",
    "private-cache-c",
    "private-encrypted-x",
    "public-1",
    "cache-c",
]
valid_frames = st.one_of(
    st.builds(
        lambda channel, user_id, info: {
            "event": "pusher:subscribe",
            "data": {
                "channel": channel,
                "auth": SIGN,
                "channel_data": json.dumps({"user_id": user_id, "user_info": info}),
            },
        },
        st.sampled_from(JOINABLE),
        good_ids | st.integers(min_value=0),
        json_values,
    ),
    st.builds(
        lambda user_id, watchlist, info: {
            "event": "pusher:signin",
            "data": {
                "auth": SIGN,
                "user_data": json.dumps({"id": user_id, "watchlist": watchlist, "user_info": info}),
            },
        },
        st.sampled_from(["u1", "u2", "u3"]),
        st.lists(st.sampled_from(["u1", "u2", "u3", "u4", "u5"]), max_size=5),
        json_values,
    ),
    st.builds(
        lambda name, channel, data: {"event": name, "channel": channel, "data": data},
        st.sampled_from(["client-x", "client-typing"]),
        st.sampled_from(["private-a", "private-b", "presence-room", "public-1"]),
        json_values,
    ),
    st.builds(
        lambda channel: {"event": "pusher:unsubscribe", "data": {"channel": channel}},
        st.sampled_from(JOINABLE),
    ),
)
fuzz_frames = st.one_of(event_frames, event_frames, valid_frames, valid_frames, garbage, surrogate_frames)


# -- (a) decode property ---------------------------------------------------------------------------------
@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=garbage
    | surrogate_frames.map(lambda f: json.dumps(f) if isinstance(f, dict) else f)
    | event_frames.map(lambda f: json.dumps(resolve(f)))
    | st.binary(max_size=64).map(lambda b: b'{"event":"x","data":"' + b + b'"}')
)
def test_decode_returns_a_frame_or_a_4000(raw):
    try:
        frame = frames.decode(raw)
    except ProtocolError as error:
        assert error.code == 4000 and not error.fatal, error
        assert error.message.startswith(("Invalid message format: ", "Invalid event name: ")), error
        error_text = frames.error_frame(error)
        error_text.encode()  # the error frame itself is always sendable
        return
    assert isinstance(frame, frames.Frame)
    assert isinstance(frame.event, str) and frame.event
    # Anything decoded can be relayed: encoding it back to UTF-8 never fails.
    channel = frame.channel if isinstance(frame.channel, str) else None
    frames.encode(frame.event, frame.data, channel).encode()


# -- (b) live-socket fuzz ----------------------------------------------------------------------------------
DEBUG = []


class LoopThread:
    """An event loop in a thread, so hypothesis (synchronous) can drive long-lived sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Fuzzer:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.client: PusherClient | None = None
        self.observer: PusherClient | None = None
        self.observer_channel = "fuzz-observer-channel"
        self.sentinels = 0
        self.closes: list[int | None] = []
        self.error_codes: dict[int, int] = {}
        self.replies: dict[str, int] = {}
        self.examples = 0

    async def setup(self) -> None:
        self.observer = await PusherClient.connect(ws_url(self.server))
        await self.observer.subscribe(self.observer_channel)
        await self.observer.expect(SUCCEEDED, self.observer_channel)

    async def fuzz_socket(self) -> PusherClient:
        if self.client is None:
            self.client = await PusherClient.connect(ws_url(self.server))
        return self.client

    def materialize(self, value: Any, socket_id: str) -> Any:
        """Replace SIGN markers with the signature the server expects for this socket."""
        s = self.server

        def sign(data: dict, event: Any) -> str:
            try:
                if (
                    isinstance(event, str)
                    and event.endswith("signin")
                    and isinstance(data.get("user_data"), str)
                ):
                    return sign_user(s.key, s.secret, socket_id, data["user_data"])
                if isinstance(data.get("channel"), str):
                    cd = data.get("channel_data")
                    cd = cd if isinstance(cd, str) and data["channel"].startswith("presence-") else None
                    return sign_channel(s.key, s.secret, socket_id, data["channel"], cd)
            except UnicodeEncodeError:  # a lone surrogate cannot be signed (nor sent as text)
                pass
            return "SIGN"

        return resolve(value, sign)

    async def exchange(self, item: Any) -> list[dict]:
        """Send one fuzz frame, then a sentinel subscribe; return the frames that came before the
        sentinel's success (the replies to the fuzz frame)."""
        client = await self.fuzz_socket()
        if isinstance(item, dict):
            await client.ws.send(json.dumps(self.materialize(item, client.socket_id)))
        else:
            if isinstance(item, str):
                try:
                    item.encode()
                except UnicodeEncodeError:  # not valid text: send the raw bytes as a binary frame
                    item = item.encode("utf-8", "surrogatepass")
            await client.ws.send(item)
        self.sentinels += 1
        sentinel = f"sentinel-{self.sentinels}"
        replies: list[dict] = []
        try:
            await client.ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": sentinel}}))
            deadline = time.monotonic() + WAIT
            while True:
                raw = await asyncio.wait_for(client.ws.recv(), max(0.01, deadline - time.monotonic()))
                frame = json.loads(raw)
                if frame.get("event") == SUCCEEDED and frame.get("channel") == sentinel:
                    break
                replies.append(frame)
            await client.ws.send(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": sentinel}}))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            self.closes.append(code)
            self.client = None
            assert code in CLOSE_CODES, (code, item, replies)
        return replies

    def check(self, item: Any, replies: list[dict]) -> None:
        for frame in replies:
            assert isinstance(frame, dict) and isinstance(frame.get("event"), str), (item, frame)
            assert frame["event"] in REPLY_EVENTS, (item, frame)
            if frame["event"] == "pusher:error":
                data = frame["data"]
                assert isinstance(data, dict) and set(data) == {"code", "message"}, (item, frame)
                assert data["code"] in ERROR_CODES, (item, frame)
                assert isinstance(data["message"], str) and data["message"], (item, frame)
                self.error_codes[data["code"]] = self.error_codes.get(data["code"], 0) + 1
                DEBUG.append(data["message"][:50])
            self.replies[frame["event"]] = self.replies.get(frame["event"], 0) + 1
            if frame["event"] == "pusher:subscription_error":
                assert frame["data"]["status"] in (401, 403), (item, frame)
        self.examples += 1


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[LiveServer]:
    env = {
        "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
        "SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS": "true",
        "SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND": "0",  # off: fuzz the checks behind it
        "WATCHLIST_MAX_SIZE": "3",
    }
    with serving(env) as live:
        yield live


def test_live_socket_fuzz(fuzz_server):
    loop = LoopThread()
    fuzzer = Fuzzer(fuzz_server)
    started = time.monotonic()
    try:
        loop.call(fuzzer.setup())

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            derandomize=True,  # the same examples every run: the coverage assertions below are stable
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(item=fuzz_frames)
        def fuzz(item):
            replies = loop.call(fuzzer.exchange(item))
            fuzzer.check(item, replies)

        fuzz()
        assert time.monotonic() - started < 60, "fuzz run over budget"

        async def finale() -> None:
            await api(
                fuzz_server,
                "POST",
                f"/apps/{fuzz_server.app_id}/events",
                {"name": "after-fuzz", "channel": fuzzer.observer_channel, "data": "still here"},
            )
            frame = await fuzzer.observer.expect("after-fuzz", fuzzer.observer_channel)
            assert frame["data"] == "still here"
            # The fuzz socket itself (or its replacement) still works too.
            client = await fuzzer.fuzz_socket()
            await client.ws.send('{"event":"pusher:ping"}')
            while (frame := json.loads(await asyncio.wait_for(client.ws.recv(), WAIT)))[
                "event"
            ] != "pusher:pong":
                pass

        loop.call(finale())
    finally:

        async def shutdown() -> None:
            for client in (fuzzer.client, fuzzer.observer):
                if client is not None:
                    await client.close()

        try:
            loop.call(shutdown(), timeout=10)
        finally:
            loop.stop()
    time.sleep(0.2)  # let the server flush its log
    log = full_log(fuzz_server)
    assert "Traceback" not in log, log[-4000:]
    import collections

    print(collections.Counter(DEBUG).most_common(12))
    print("FUZZSTATS", fuzzer.examples, fuzzer.error_codes, fuzzer.closes, fuzzer.replies)
    assert fuzzer.examples >= 100, fuzzer.examples
    assert set(fuzzer.error_codes) >= {4000, 4009, 4300}, fuzzer.error_codes  # the fuzz reached the handlers
