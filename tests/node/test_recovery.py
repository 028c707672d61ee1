"""``sockudo:resume`` (realtime/node/frames/recovery.py): replay from the hot buffer, or fail the
channel with a code the client acts on."""

from __future__ import annotations

import json

import pytest

from realtime.node.broadcast import Publication, publish
from tests.node.harness import data_of, make_app

pytestmark = pytest.mark.sockudo(CONNECTION_RECOVERY_ENABLED=True)


async def _publish(node, channel: str, count: int) -> None:
    app = make_app()
    for n in range(count):
        await publish(node.engine, app, Publication(name="tick", data=str(n), channels=[channel]))


async def _subscribed(node, channel="ticks"):
    client = await node.connect(protocol=2)
    await node.subscribe(client, channel)
    return client


async def test_v2_subscribe_acks_with_the_stream_position(node):
    client = await _subscribed(node)
    ack = client.last()
    assert ack["event"] == "sockudo_internal:subscription_succeeded"
    assert ack["serial"] == 0
    assert isinstance(ack["stream_id"], str) and ack["stream_id"]


async def test_live_messages_carry_their_position(node):
    client = await _subscribed(node)
    stream_id = client.last()["stream_id"]
    await _publish(node, "ticks", 2)
    frames = client.of("tick")
    assert [(f["data"], f["stream_id"], f["serial"]) for f in frames] == [
        ("0", stream_id, 1),
        ("1", stream_id, 2),
    ]
    assert all(f["message_id"] for f in frames)


async def test_resume_replays_the_missed_messages(node):
    first = await _subscribed(node)
    stream_id = first.last()["stream_id"]
    await _publish(node, "ticks", 5)
    seen = first.of("tick")[1]  # the client got serials 1 and 2, then dropped
    again = await _subscribed(node)
    again.new()
    await node.send(
        again,
        "sockudo:resume",
        {
            "channel_positions": {
                "ticks": {"stream_id": stream_id, "serial": 2, "last_message_id": seen["message_id"]}
            }
        },
    )
    replayed = again.new()
    assert [f["serial"] for f in replayed[:-1]] == [3, 4, 5]
    assert [f["data"] for f in replayed[:-1]] == ["2", "3", "4"]
    done = replayed[-1]
    assert done["event"] == "sockudo:resume_success"
    last = first.of("tick")[-1]
    assert json.loads(done["data"]) == {
        "recovered": [
            {
                "channel": "ticks",
                "source": "hot",
                "replayed": 3,
                "position": {"stream_id": stream_id, "serial": 5, "last_message_id": last["message_id"]},
            }
        ],
        "failed": [],
    }


async def test_resume_at_the_head_replays_nothing(node):
    first = await _subscribed(node)
    stream_id = first.last()["stream_id"]
    await _publish(node, "ticks", 2)
    await node.send(
        first, "sockudo:resume", {"channel_positions": {"ticks": {"stream_id": stream_id, "serial": 2}}}
    )
    done = first.last()
    assert done["event"] == "sockudo:resume_success"
    assert data_of(done)["recovered"][0]["replayed"] == 0


def _failure(client) -> dict:
    """The one failed channel: its ``resume_failed`` frame, repeated in the closing ``resume_success``."""
    failed, done = client.frames[-2:]
    assert failed["event"] == "sockudo:resume_failed", failed
    assert done["event"] == "sockudo:resume_success", done
    assert data_of(done) == {"recovered": [], "failed": [data_of(failed)]}
    return data_of(failed)


async def test_resume_on_another_stream_fails_with_stream_reset(node):
    client = await _subscribed(node)
    stream_id = client.last()["stream_id"]
    await _publish(node, "ticks", 3)
    await node.send(
        client, "sockudo:resume", {"channel_positions": {"ticks": {"stream_id": "old", "serial": 1}}}
    )
    assert _failure(client) == {
        "channel": "ticks",
        "code": "stream_reset",
        "reason": "stream_id_mismatch",
        "expected_stream_id": "old",
        "current_stream_id": stream_id,
        "oldest_available_serial": 1,
        "newest_available_serial": 3,
    }
    assert len(client.of("tick")) == 3  # nothing replayed


async def test_resume_ahead_of_the_stream_cannot_be_verified(node):
    client = await _subscribed(node)
    stream_id = client.last()["stream_id"]
    await _publish(node, "ticks", 1)
    await node.send(
        client, "sockudo:resume", {"channel_positions": {"ticks": {"stream_id": stream_id, "serial": 9}}}
    )
    failure = _failure(client)
    assert (failure["code"], failure["reason"]) == ("continuity_unverifiable", "position_ahead_of_stream")


async def test_resume_of_an_unknown_channel_has_expired(node):
    client = await _subscribed(node)
    await node.send(
        client, "sockudo:resume", {"channel_positions": {"quiet": {"stream_id": "s", "serial": 1}}}
    )
    failure = _failure(client)
    assert (failure["code"], failure["reason"]) == ("position_expired", "hot_replay_expired")


@pytest.mark.sockudo(CONNECTION_RECOVERY_ENABLED=True, CONNECTION_RECOVERY_MAX_BUFFER_SIZE=2)
async def test_resume_past_the_buffer_has_expired(node):
    client = await _subscribed(node)
    stream_id = client.last()["stream_id"]
    await _publish(node, "ticks", 5)  # the buffer keeps serials 4 and 5
    await node.send(
        client, "sockudo:resume", {"channel_positions": {"ticks": {"stream_id": stream_id, "serial": 1}}}
    )
    failure = _failure(client)
    assert (failure["code"], failure["reason"]) == ("position_expired", "recovery_window_exceeded")
    assert (failure["oldest_available_serial"], failure["newest_available_serial"]) == (4, 5)


async def test_legacy_serials_only_resume_replays_from_the_hot_buffer(node):
    client = await _subscribed(node)
    await _publish(node, "ticks", 3)
    client.new()
    await node.send(client, "sockudo:resume", {"channel_serials": {"ticks": 1}})
    replayed = client.new()
    assert [f["serial"] for f in replayed[:-1]] == [2, 3]
    assert data_of(replayed[-1])["recovered"][0]["replayed"] == 2


async def test_legacy_serials_only_resume_cannot_fall_back_to_history(node):
    client = await _subscribed(node)
    await node.send(client, "sockudo:resume", {"channel_serials": {"quiet": 1}})
    failure = _failure(client)
    assert failure["code"] == "continuity_unverifiable"
    assert failure["reason"] == "legacy_serial_only_position_cannot_use_cold_recovery"
    assert failure["expected_stream_id"] is None


async def test_resume_without_positions_is_refused(node):
    client = await _subscribed(node)
    client.new()
    await node.send(client, "sockudo:resume", {"channel_positions": {}})
    await node.send(client, "sockudo:resume", {"channel_positions": {"ticks": {"serial": "x"}}})
    assert [(f["event"], f["data"]) for f in client.new()] == [
        ("sockudo:error", {"code": 4302, "message": "No channel recovery positions provided"}),
        (
            "sockudo:error",
            {"code": 4000, "message": "Invalid message format: Invalid serial for channel ticks"},
        ),
    ]


@pytest.mark.sockudo(CONNECTION_RECOVERY_ENABLED=False)
async def test_resume_is_refused_when_recovery_is_off(node):
    client = await node.connect(protocol=2)
    client.new()
    await node.send(client, "sockudo:resume", {"channel_positions": {"ticks": {"serial": 1}}})
    assert [(f["event"], f["data"]) for f in client.new()] == [
        ("sockudo:error", {"code": 4301, "message": "Client event error: Connection recovery is not enabled"})
    ]
