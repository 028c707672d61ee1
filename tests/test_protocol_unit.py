"""Unit tests of the pure protocol layer (``realtime.protocol``): signatures, channel names, frames,
and the error catalogue. No server, no Django settings needed."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from realtime.protocol import errors, frames
from realtime.protocol.channels import kind_of, logical_name, validate_name
from realtime.protocol.errors import ProtocolError
from realtime.protocol.signatures import (
    api_string_to_sign,
    channel_string,
    encrypted_shared_secret,
    hmac_hex,
    md5_hex,
    sign_api_request,
    sign_channel,
    sign_user,
    user_string,
    verify_auth,
    verify_hex,
    webhook_signature,
)

# ------------------------------------------------------------------------------------------------
# Signatures: protocol-v1 §5.4 worked examples
# ------------------------------------------------------------------------------------------------
PRESENCE_DATA = '{"user_id":"42","user_info":{"name":"Ada"}}'
SIGNIN_DATA = '{"id":"42","user_info":{"name":"Ada"},"watchlist":["7","9"]}'


def test_pusher_documented_vector():
    auth = sign_channel("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", "private-foobar")
    assert auth == "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"


def test_private_channel_example():
    assert channel_string("123.456", "private-orders") == "123.456:private-orders"
    auth = sign_channel("app-key", "app-secret", "123.456", "private-orders")
    assert auth == "app-key:fa24923d1d5972f2c827aceb385f438a659796cd37cc4edc043128f78f18790a"


def test_presence_channel_example():
    assert (
        channel_string("123.456", "presence-room", PRESENCE_DATA)
        == '123.456:presence-room:{"user_id":"42","user_info":{"name":"Ada"}}'
    )
    auth = sign_channel("app-key", "app-secret", "123.456", "presence-room", PRESENCE_DATA)
    assert auth == "app-key:fed5b1847c9e0cdaf7d3c9f70cb5cc51d4a02401d99dfbfe0b7d4427ce564440"


def test_signin_example():
    assert user_string("123.456", SIGNIN_DATA) == "123.456::user::" + SIGNIN_DATA
    auth = sign_user("app-key", "app-secret", "123.456", SIGNIN_DATA)
    assert auth == "app-key:d81363f1e0e19778d171d5b8412675800855b0a46c1d40346a5d8d3d50a0335f"


def test_hmac_is_lowercase_hex_sha256():
    digest = hmac_hex("app-secret", "123.456:private-orders")
    assert len(digest) == 64 and digest == digest.lower()
    assert hmac_hex("app-secret", b"123.456:private-orders") == digest


def test_verify_auth_compares_the_full_key_and_hex():
    signed = channel_string("123.456", "private-orders")
    good = "app-key:fa24923d1d5972f2c827aceb385f438a659796cd37cc4edc043128f78f18790a"
    assert verify_auth(good, "app-key", "app-secret", signed)
    # A different key prefix fails even with the right hex.
    assert not verify_auth("other-key:" + good.split(":", 1)[1], "app-key", "app-secret", signed)
    assert not verify_auth(good.split(":", 1)[1], "app-key", "app-secret", signed)
    assert not verify_auth(good.upper(), "app-key", "app-secret", signed)
    assert not verify_auth(good, "app-key", "other-secret", signed)
    assert not verify_auth(good, "app-key", "app-secret", channel_string("123.457", "private-orders"))
    for not_a_string in (None, 42, ["app-key"], {"auth": good}):
        assert not verify_auth(not_a_string, "app-key", "app-secret", signed)


def test_presence_signature_covers_channel_data_byte_for_byte():
    spaced = '{"user_id": "42", "user_info": {"name": "Ada"}}'
    auth = sign_channel("app-key", "app-secret", "123.456", "presence-room", PRESENCE_DATA)
    assert not verify_auth(auth, "app-key", "app-secret", channel_string("123.456", "presence-room", spaced))


def test_encrypted_shared_secret_is_sha256_of_name_and_master_key():
    master = bytes(range(32))
    secret = encrypted_shared_secret("private-encrypted-room", master)
    assert base64.b64decode(secret) == hashlib.sha256(b"private-encrypted-room" + master).digest()
    assert len(base64.b64decode(secret)) == 32


def test_webhook_signature_is_hmac_of_body():
    body = b'{"time_ms":1,"events":[]}'
    assert webhook_signature("app-secret", body) == hmac_hex("app-secret", body)


# ------------------------------------------------------------------------------------------------
# Signatures: http-api §2.2 worked examples (a)-(d)
# ------------------------------------------------------------------------------------------------
KEY, SECRET, TS = "278d425bdf160c739803", "7ad3773142a6692b25b8", "1353088179"
AUTH = {"auth_key": KEY, "auth_timestamp": TS, "auth_version": "1.0"}


def test_http_example_a_post_events():
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    assert md5_hex(body) == "ec365a775a4cd0599faeb73354201b6f"
    params = {**AUTH, "body_md5": md5_hex(body)}
    assert api_string_to_sign("POST", "/apps/3/events", params) == (
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    )
    assert (
        sign_api_request(SECRET, "POST", "/apps/3/events", params)
        == "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


def test_http_example_b_get_channels():
    params = {**AUTH, "filter_by_prefix": "presence-", "info": "user_count"}
    assert api_string_to_sign("GET", "/apps/3/channels", params) == (
        "GET\n/apps/3/channels\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&filter_by_prefix=presence-&info=user_count"
    )
    assert (
        sign_api_request(SECRET, "GET", "/apps/3/channels", params)
        == "16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"
    )


def test_http_example_c_terminate_connections():
    assert md5_hex(b"{}") == "99914b932bd37a50b983c5e7c90ae93b"
    params = {**AUTH, "body_md5": md5_hex(b"{}")}
    path = "/apps/3/users/user-42/terminate_connections"
    assert api_string_to_sign("POST", path, params) == (
        f"POST\n{path}\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&body_md5=99914b932bd37a50b983c5e7c90ae93b"
    )
    assert (
        sign_api_request(SECRET, "POST", path, params)
        == "b015dc6fb54a3d4c2a53d561518acc77cc56e706d12995c620722cdc549fcdba"
    )


def test_http_example_d_percent_encoded_path_is_signed_raw():
    params = {**AUTH, "limit": "50", "direction": "newest_first"}
    path = "/apps/3/channels/chat%3Aroom-1/history"
    assert api_string_to_sign("GET", path, params) == (
        f"GET\n{path}\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&direction=newest_first&limit=50"
    )
    assert (
        sign_api_request(SECRET, "GET", path, params)
        == "112b966aed7293ff8d57c54e68cdf80f74a6934ba3066ff26027d7c004bc1ba9"
    )
    # The decoded path is a different string, hence a different signature.
    assert sign_api_request(
        SECRET, "GET", "/apps/3/channels/chat:room-1/history", params
    ) != sign_api_request(SECRET, "GET", path, params)


def test_api_string_drops_auth_signature_lowercases_keys_and_uppercases_method():
    params = {**AUTH, "Info": "user_count", "auth_signature": "ignored"}
    assert api_string_to_sign("get", "/apps/3/channels", params) == (
        "GET\n/apps/3/channels\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&info=user_count"
    )


def test_md5_of_empty_body_and_verify_hex():
    assert md5_hex(b"") == "d41d8cd98f00b204e9800998ecf8427e"
    assert verify_hex("abc", "abc")
    assert not verify_hex("abc", "abd")
    assert not verify_hex("abc", None)


# ------------------------------------------------------------------------------------------------
# Channel names (protocol-v1 §4, http-api §13.2)
# ------------------------------------------------------------------------------------------------
CHAT = {"name": "chat"}
ROOMS = {"name": "rooms", "allow_user_limited_channels": True}


@pytest.mark.parametrize(
    "name",
    [
        "orders",
        "ABCxyz0189",
        "a-b_c=d@e,f.g;h",
        "private-orders",
        "presence-room",
        "private-encrypted-room",
        "cache-prices",
        "private-cache-x",
        "private-encrypted-cache-x",
        "presence-cache-x",
        "x",
    ],
)
def test_valid_names(name):
    assert validate_name(name) is None


def test_every_allowed_character_is_accepted():
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    assert validate_name(letters + "-_=@,.;") is None
    # ':' and '#' are allowed characters too, subject to the namespace rules.
    assert validate_name("chat:room", namespaces=[CHAT]) is None
    assert validate_name("rooms:lobby#u1,u2", namespaces=[ROOMS]) is None


@pytest.mark.parametrize(
    "name",
    [
        "with space",
        "slash/name",
        "star*",
        "bang!",
        "dollar$",
        "percent%",
        "caf\u00e9",
        "[meta]x",
        "a+b",
        "q?",
        "tab\t",
    ],
)
def test_invalid_characters(name):
    assert validate_name(name) is not None


@pytest.mark.parametrize("name", ["", None, 42, ["orders"], {"name": "orders"}])
def test_missing_or_non_string_names(name):
    assert validate_name(name) is not None


def test_default_length_boundary_is_200_bytes():
    assert validate_name("a" * 200) is None
    assert "200" in validate_name("a" * 201)
    assert validate_name("private-" + "a" * 192) is None
    assert validate_name("private-" + "a" * 193) is not None
    assert validate_name("presence-cache-" + "b" * 185) is None
    assert validate_name("presence-cache-" + "b" * 186) is not None


def test_length_override():
    assert validate_name("a" * 50, max_length=50) is None
    assert validate_name("a" * 51, max_length=50) is not None
    assert validate_name("a" * 300, max_length=300) is None


def test_namespace_rules():
    assert validate_name("chat:room", namespaces=[CHAT]) is None
    assert validate_name("private-chat:room", namespaces=[CHAT]) is None
    assert validate_name("presence-chat:room", namespaces=[CHAT]) is None
    assert validate_name("unknown:room", namespaces=[CHAT]) == "Unknown channel namespace 'unknown'"
    assert validate_name("private-unknown:room") == "Unknown channel namespace 'unknown'"
    assert validate_name("chat:room") == "Unknown channel namespace 'chat'"


def test_namespace_length_override():
    short = {"name": "chat", "max_channel_name_length": 20}
    assert validate_name("chat:" + "a" * 15, namespaces=[short]) is None
    assert validate_name("chat:" + "a" * 16, namespaces=[short]) is not None


def test_namespace_pattern():
    ns = {"name": "chat", "channel_name_pattern": r"chat:[a-z]+"}
    assert validate_name("chat:room", namespaces=[ns]) is None
    assert validate_name("chat:Room1", namespaces=[ns]) is not None


def test_user_limited_names():
    assert validate_name("room#u1") is not None  # no namespace allows it
    assert validate_name("chat:room#u1", namespaces=[CHAT]) is not None  # namespace does not allow it
    assert validate_name("rooms:lobby#u1", namespaces=[ROOMS]) is None
    assert validate_name("rooms:lobby#u1,u2=x@y.z", namespaces=[ROOMS]) is None
    assert validate_name("rooms:lobby#", namespaces=[ROOMS]) is not None
    assert validate_name("rooms:lobby#u1,,u2", namespaces=[ROOMS]) is not None
    assert validate_name("rooms:lobby#u1#u2", namespaces=[ROOMS]) is not None
    assert validate_name("rooms:lobby#u;1", namespaces=[ROOMS]) is not None


def test_server_to_user_is_exempt_from_the_hash_rule_but_not_the_length():
    assert validate_name("#server-to-user-42") is None
    assert validate_name("#server-to-user-user_1@example.com") is None
    prefix = "#server-to-user-"
    assert validate_name(prefix + "a" * (200 - len(prefix))) is None
    assert validate_name(prefix + "a" * (201 - len(prefix))) is not None
    assert validate_name("#server-to-user-bad id") is not None


@pytest.mark.parametrize(
    ("name", "auth", "presence", "encrypted", "cache", "s2u", "client_events"),
    [
        ("orders", False, False, False, False, False, False),
        ("privateorders", False, False, False, False, False, False),
        ("presenceroom", False, False, False, False, False, False),
        ("private-orders", True, False, False, False, False, True),
        ("private-encrypted-x", True, False, True, False, False, False),
        ("presence-room", True, True, False, False, False, True),
        ("cache-prices", False, False, False, True, False, False),
        ("private-cache-x", True, False, False, True, False, True),
        ("private-encrypted-cache-x", True, False, True, True, False, False),
        ("presence-cache-x", True, True, False, True, False, True),
        ("#server-to-user-42", False, False, False, False, True, False),
    ],
)
def test_kind_of(name, auth, presence, encrypted, cache, s2u, client_events):
    kind = kind_of(name)
    assert (kind.requires_auth, kind.presence, kind.encrypted, kind.cache, kind.server_to_user) == (
        auth,
        presence,
        encrypted,
        cache,
        s2u,
    )
    assert kind.allows_client_events is client_events


@pytest.mark.parametrize(
    ("name", "logical"),
    [
        ("private-encrypted-cache-x", "x"),
        ("private-encrypted-x", "x"),
        ("private-cache-x", "x"),
        ("presence-cache-x", "x"),
        ("presence-x", "x"),
        ("private-x", "x"),
        ("cache-x", "x"),
        ("x", "x"),
        ("private-chat:room", "chat:room"),
    ],
)
def test_logical_name(name, logical):
    assert logical_name(name) == logical


# ------------------------------------------------------------------------------------------------
# Frames: decode errors (all 4000, never fatal)
# ------------------------------------------------------------------------------------------------
def _decode_error(raw) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        frames.decode(raw)
    error = info.value
    assert error.code == errors.SSL_ONLY == 4000
    assert not error.fatal
    return error


@pytest.mark.parametrize("raw", ["", "{", "not json", '{"event":', b"\xff\xfe\x00", "{'event':'x'}", "\x00"])
def test_decode_unparseable(raw):
    assert _decode_error(raw).message.startswith("Invalid message format: ")


@pytest.mark.parametrize("raw", ["[]", '"pusher:ping"', "42", "null", "true", '[{"event":"x"}]'])
def test_decode_non_object(raw):
    assert _decode_error(raw).message.startswith("Invalid message format: ")


def test_decode_missing_event():
    error = _decode_error('{"data":{}}')
    assert error.message == "Invalid event name: Event name is required"
    assert _decode_error('{"event":null}').message == "Invalid event name: Event name is required"


@pytest.mark.parametrize("event", ['""', "42", "[]", "{}", "true"])
def test_decode_bad_event_name(event):
    assert _decode_error('{"event":' + event + "}").message.startswith("Invalid event name: ")


def test_decode_deep_nesting_is_a_format_error():
    assert _decode_error('{"event":"x","data":' + "[" * 100_000 + "]" * 100_000 + "}")
    assert _decode_error("[" * 100_000)


def test_decode_nesting_bound():
    # The frame object is level 1, so data may nest MAX_NESTING - 1 levels.
    depth = frames.MAX_NESTING - 1
    frame = frames.decode('{"event":"client-x","data":' + "[" * depth + "]" * depth + "}")
    frames.encode(frame.event, frame.data, "private-x")  # re-encodable, far from the recursion limit
    _decode_error('{"event":"client-x","data":' + "[" * (depth + 1) + "]" * (depth + 1) + "}")
    # Many brackets side by side are not nesting.
    assert frames.decode('{"event":"x","data":[' + ",".join(["[]"] * 1000) + "]}").data == [[]] * 1000
    # Brackets inside strings do not count either.
    assert frames.decode('{"event":"x","data":"' + "[" * 5000 + '"}').data == "[" * 5000
    with pytest.raises(ValueError):
        frames.loads('{"user_id":"1","user_info":' + "[" * 200 + "]" * 200 + "}")


def test_decode_huge_integer_is_a_format_error():
    _decode_error('{"event":"x","data":' + "9" * 10_000 + "}")


def test_decode_lone_surrogates_are_rejected():
    # A lone surrogate cannot be encoded back to UTF-8, so it must never reach an outbound frame.
    _decode_error('{"event":"client-\\ud800","channel":"private-x"}')
    _decode_error('{"event":"pusher:subscribe","data":{"channel":"\\udfff"}}')
    _decode_error(b'{"event":"x","data":"\xed\xa0\x80"}')
    # A proper surrogate pair (what ensure_ascii JSON encoders emit for emoji) is fine.
    frame = frames.decode('{"event":"client-x","data":"\\ud83d\\ude00"}')
    assert frame.data == "\U0001f600"


def test_decode_success_and_system_suffixes():
    frame = frames.decode('{"event":"pusher:subscribe","data":{"channel":"x"},"channel":"c","extra":1}')
    assert (frame.event, frame.channel, frame.data, frame.system) == (
        "pusher:subscribe",
        "c",
        {"channel": "x"},
        "subscribe",
    )
    for prefix in ("pusher:", "pusher_internal:", "sockudo:", "sockudo_internal:"):
        assert frames.decode(json.dumps({"event": prefix + "ping"})).system == "ping"
    client = frames.decode('{"event":"client-typing","channel":"private-x","data":"s"}')
    assert client.system is None and client.data == "s"
    assert frames.decode(b'{"event":"pusher:ping"}').system == "ping"
    assert frames.decode('{"event":"pusher:ping"}').data is None


def test_data_object_accepts_object_or_json_string_of_object():
    assert frames.data_object({"channel": "x"}) == {"channel": "x"}
    assert frames.data_object('{"channel":"x"}') == {"channel": "x"}
    for other in ('"x"', "[1]", "not json", 42, None, [1], "[" * 100_000, '{"c":"\\ud800"}'):
        assert frames.data_object(other) is None


# ------------------------------------------------------------------------------------------------
# Frames: encoding (key order event, channel, data, user_id; compact JSON)
# ------------------------------------------------------------------------------------------------
def test_encode_key_order_and_compactness():
    assert (
        frames.encode("e", {"a": 1}, "c", "u") == '{"event":"e","channel":"c","data":{"a":1},"user_id":"u"}'
    )
    assert frames.encode("e", "s", "c") == '{"event":"e","channel":"c","data":"s"}'
    assert frames.encode("e", "s") == '{"event":"e","data":"s"}'
    assert frames.encode("e") == '{"event":"e"}'
    assert frames.encode("e", {"b": [1, 2], "a": None}) == '{"event":"e","data":{"b":[1,2],"a":null}}'
    assert frames.encode("e", "\u00e9") == '{"event":"e","data":"\u00e9"}'  # no ASCII escaping
    assert frames.dumps({"x": 1, "y": "z"}) == '{"x":1,"y":"z"}'


def test_ping_and_pong_have_no_data():
    assert frames.PONG == '{"event":"pusher:pong"}'
    assert frames.PING == '{"event":"pusher:ping"}'


def test_error_frame_has_object_data_and_no_channel():
    text = frames.error_frame(errors.app_not_found())
    assert text == '{"event":"pusher:error","data":{"code":4001,"message":"Application does not exist"}}'


def test_connection_established():
    frame = json.loads(frames.connection_established("1.2", 120))
    assert frame["event"] == "pusher:connection_established"
    assert isinstance(frame["data"], str)
    assert json.loads(frame["data"]) == {"socket_id": "1.2", "activity_timeout": 120}


def test_subscription_succeeded_shapes():
    assert frames.subscription_succeeded("c") == (
        '{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}'
    )
    presence = {"ids": ["42"], "hash": {"42": {"name": "Ada"}}, "count": 1}
    frame = json.loads(frames.subscription_succeeded("presence-room", presence))
    assert list(frame) == ["event", "channel", "data"]
    assert json.loads(frame["data"]) == {"presence": presence}


def test_subscription_error_shape():
    frame = json.loads(frames.subscription_error("private-x", "nope", 401))
    assert frame == {
        "event": "pusher:subscription_error",
        "channel": "private-x",
        "data": {"type": "AuthError", "error": "nope", "status": 401},
    }


def test_member_events():
    added = json.loads(frames.member_added("presence-r", "42", None))
    assert added["event"] == "pusher_internal:member_added" and added["channel"] == "presence-r"
    assert json.loads(added["data"]) == {"user_id": "42", "user_info": {}}
    removed = json.loads(frames.member_removed("presence-r", "42"))
    assert removed == {
        "event": "pusher_internal:member_removed",
        "channel": "presence-r",
        "data": '{"user_id":"42"}',
    }


def test_other_internal_frames():
    assert frames.cache_miss("cache-x") == '{"event":"pusher:cache_miss","channel":"cache-x","data":"{}"}'
    assert frames.subscription_count("c", 3) == (
        '{"event":"pusher_internal:subscription_count","channel":"c","data":"{\\"subscription_count\\":3}"}'
    )
    assert json.loads(frames.signin_success('{"id":"1"}')) == {
        "event": "pusher:signin_success",
        "data": {"user_data": '{"id":"1"}'},
    }
    assert json.loads(frames.watchlist_events([{"name": "online", "user_ids": ["7"]}])) == {
        "event": "pusher_internal:watchlist_events",
        "data": {"events": [{"name": "online", "user_ids": ["7"]}]},
    }


# ------------------------------------------------------------------------------------------------
# Error catalogue: codes, fatality, messages
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "code", "fatal", "message"),
    [
        (errors.app_not_found(), 4001, True, "Application does not exist"),
        (errors.app_disabled(), 4003, True, "Application disabled"),
        (errors.app_over_quota(), 4004, True, "Application is over adapter quota"),
        (errors.origin_not_allowed(), 4009, True, "Origin not allowed"),
        (errors.server_over_capacity(), 4100, True, "Over capacity"),
        (errors.invalid_version("x"), 4006, True, None),
        (errors.unsupported_protocol(9), 4007, True, None),
        (errors.invalid_format("x"), 4000, False, "Invalid message format: x"),
        (errors.invalid_event_name("x"), 4000, False, "Invalid event name: x"),
        (errors.auth_error("x"), 4009, False, "Authentication error: x"),
        (errors.channel_error("x"), 4300, False, "Channel error: x"),
        (errors.client_event_error("x"), 4301, False, "Client event error: x"),
        (errors.client_event_rate_limited(), 4301, False, "Client event rejected due to rate limit"),
        (
            errors.client_event_rate_limit_close(),
            4301,
            True,
            "Connection closed due to client event rate limit",
        ),
        (errors.presence_full(), 4100, False, "Over capacity"),
        (errors.watchlist_too_large(100), 4302, False, None),
    ],
)
def test_error_catalogue(error, code, fatal, message):
    assert error.code == code
    assert error.fatal is fatal
    if message is not None:
        assert error.message == message


def test_close_reasons():
    assert errors.PONG_TIMEOUT_REASON == "Pong reply not received in time"
    assert errors.AUTH_TIMEOUT_REASON == "Connection not authorized within timeout."
    assert errors.TERMINATED_REASON == "You got disconnected by the app."
    assert errors.FORCE_RECONNECT_REASON == "Force reconnect requested by the app."
