"""Protocol V2 subscription filters: the pure evaluator and live delivery."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.protocol.filters import FilterError, Message, compile_tags, parse
from realtime.testing import LiveServer, PusherClient, signed_query


def message(event="e", tags=None, data="{}", headers=None) -> Message:
    return Message(event, "c", data, tags or {}, headers or {}, "m", "s", 1)


def test_tag_comparisons_follow_the_table():
    tags = {"asset": "BTC", "xG": "0.9", "name": "goal-kick"}
    cases = {
        ("eq", "BTC"): True,
        ("neq", "ETH"): True,
        ("sw", "BT"): True,
        ("ew", "TC"): True,
        ("ct", "T"): True,
    }
    for (cmp, val), expected in cases.items():
        assert compile_tags({"key": "asset", "cmp": cmp, "val": val})(tags) is expected
    assert compile_tags({"key": "missing", "cmp": "neq", "val": "x"})(tags) is True  # missing: neq true
    assert compile_tags({"key": "missing", "cmp": "eq", "val": "x"})(tags) is False
    assert compile_tags({"key": "xG", "cmp": "gte", "val": 0.8})(tags) is True
    assert compile_tags({"key": "name", "cmp": "gt", "val": "1"})(tags) is False  # not a number
    assert compile_tags({"key": "asset", "cmp": "in", "vals": ["BTC", "ETH"]})(tags) is True
    assert compile_tags({"key": "missing", "cmp": "nin", "vals": ["x"]})(tags) is True
    assert compile_tags({"key": "asset", "cmp": "ex"})(tags) is True
    assert compile_tags({"key": "asset", "cmp": "nex"})(tags) is False
    goal_or_big_shot = {
        "op": "or",
        "nodes": [
            {"key": "type", "cmp": "eq", "val": "goal"},
            {
                "op": "and",
                "nodes": [
                    {"key": "type", "cmp": "eq", "val": "shot"},
                    {"key": "xG", "cmp": "gte", "val": "0.8"},
                ],
            },
        ],
    }
    node = compile_tags(goal_or_big_shot)
    assert (
        node({"type": "goal"})
        and node({"type": "shot", "xG": "0.8"})
        and not node({"type": "shot", "xG": "0.2"})
    )
    assert compile_tags({"op": "not", "nodes": [{"key": "a", "cmp": "ex"}]})({}) is True


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "", "cmp": "eq", "val": "x"},
        {"key": "a", "cmp": "like", "val": "x"},
        {"key": "a", "cmp": "in", "vals": []},
        {"key": "a", "cmp": "eq"},
        {"op": "xor", "nodes": [{"key": "a", "cmp": "ex"}]},
        {"op": "not", "nodes": [{"key": "a", "cmp": "ex"}, {"key": "b", "cmp": "ex"}]},
        "not-an-object",
    ],
)
def test_invalid_tag_filters_are_rejected(bad):
    with pytest.raises(FilterError):
        compile_tags(bad)


def test_compound_filter_and_expression():
    rule = parse({"events": ["order.updated"], "expression": "data.total >= `100`"}, None, tags_enabled=True)
    assert rule.matches(message("order.updated", data='{"total": 150}'))
    assert not rule.matches(message("order.updated", data='{"total": 50}'))
    assert not rule.matches(message("order.created", data='{"total": 150}'))
    headers_rule = parse(
        {"expression": {"language": "jmespath", "source": "headers.priority == 'high'"}},
        None,
        tags_enabled=True,
    )
    assert headers_rule.matches(message(headers={"priority": "high", "sockudo_x": 1}))
    with pytest.raises(FilterError):
        parse({"expression": {"language": "sql", "source": "x"}}, None, tags_enabled=True)
    with pytest.raises(FilterError):
        parse({"events": "order.updated"}, None, tags_enabled=True)
    # Tag filtering off: tags/expression are validated, then ignored.
    assert parse({"tags": {"key": "a", "cmp": "ex"}}, None, tags_enabled=False) is None


@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
        lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
        max_leaves=12,
    )
)
def test_random_filter_input_is_accepted_or_rejected_never_crashes(raw):
    try:
        rule = parse(raw, None, tags_enabled=True)
    except FilterError:
        return
    if rule is not None:
        rule.matches(message(tags={"a": "1"}))


def publish(server, body):
    raw = json.dumps(body).encode()
    path = f"/apps/{server.app_id}/events"
    query = signed_query("POST", path, server.key, server.secret, raw)
    assert (
        httpx.post(
            f"{server.http_url}{path}?{query}", content=raw, headers={"Content-Type": "application/json"}
        ).status_code
        == 200
    )


def test_live_filters_apply_to_v2_subscribers_only():
    with LiveServer(env={"TAG_FILTERING_ENABLED": "true"}) as live:

        async def body():
            import websockets

            ws = await websockets.connect(f"ws://{live.host}:{live.port}/app/{live.key}?protocol=2")
            first = json.loads(await ws.recv())
            v2 = PusherClient(ws, json.loads(first["data"])["socket_id"], first)
            flt = {"events": ["trade"], "tags": {"key": "asset", "cmp": "eq", "val": "BTC"}}
            await v2.send("sockudo:subscribe", {"channel": "ticker", "filter": flt})
            await v2.expect("sockudo_internal:subscription_succeeded", "ticker")
            await v2.send(
                "sockudo:subscribe", {"channel": "bad", "filter": {"tags": {"key": "a", "cmp": "??"}}}
            )
            error = await v2.expect("sockudo:error")
            assert error["data"]["code"] == 4000 and "tags filter" in error["data"]["message"]
            v1 = await PusherClient.connect(live.ws_url)
            await v1.subscribe("ticker")
            await v1.expect("pusher_internal:subscription_succeeded", "ticker")
            for name, asset in (("trade", "ETH"), ("quote", "BTC"), ("trade", "BTC")):
                await asyncio.to_thread(
                    publish,
                    live,
                    {"name": name, "channel": "ticker", "data": asset, "tags": {"asset": asset}},
                )
            got = await v2.expect("trade", "ticker")
            assert got["tags"] == {"asset": "BTC"}
            assert [f for f in await v2.nothing(0.4) if f.get("channel") == "ticker"] == []
            plain = [f for f in await v1.nothing(0.4) if f.get("channel") == "ticker"]
            assert [f["event"] for f in plain] == ["trade", "quote", "trade"]  # V1 is never filtered
            await v2.close()
            await v1.close()

        asyncio.run(body())
