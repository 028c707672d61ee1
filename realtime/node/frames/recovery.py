"""``sockudo:resume`` (Protocol V2 connection recovery): replay exactly the missed frames, from the
hot buffer or, when it no longer holds the gap, from durable history; or fail the channel with a code
the client acts on. Never a partial gap and never frames of another stream.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from realtime.node.frames import history as v2_history
from realtime.node.hotbuffer import recovery_settings
from realtime.node.matching import passes
from realtime.protocol import errors, frames
from realtime.protocol.outframe import OutFrame

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine


def resume(engine: Engine, conn: Connection, frame: frames.Frame) -> Awaitable[None]:
    """Validate a ``sockudo:resume``; the replay itself may read durable history, so it is async."""
    app = conn.app
    if not recovery_settings(app)[0]:
        raise errors.client_event_error("Connection recovery is not enabled")
    data = frames.data_object(frame.data)
    if data is None:
        raise errors.invalid_format("resume data must be an object")
    positions = data.get("channel_positions")
    if positions is None and isinstance(data.get("channel_serials"), dict):  # legacy: serials only
        positions = {ch: {"serial": serial} for ch, serial in data["channel_serials"].items()}
    if not isinstance(positions, dict) or not positions:
        raise errors.ProtocolError(errors.WATCHLIST_LIMIT, "No channel recovery positions provided")
    parsed = []
    for channel, position in positions.items():
        if not isinstance(channel, str) or not isinstance(position, dict):
            raise errors.invalid_format("channel_positions must map channel names to positions")
        try:
            serial = int(position.get("serial"))
        except (TypeError, ValueError):
            raise errors.invalid_format(f"Invalid serial for channel {channel}") from None
        parsed.append((channel, position.get("stream_id"), serial, position.get("last_message_id")))
    for channel, *_ in parsed:  # live frames wait until the channel's replay is done
        if channel in conn.channels:
            v2_history.hold(conn, channel)
    return _resume(engine, conn, parsed)


async def _resume(engine: Engine, conn: Connection, parsed: list) -> None:
    try:
        await _replay_all(engine, conn, parsed)
    finally:
        # Whatever happened (a failed history read included), never leave live frames held.
        for channel, *_ in parsed:
            if conn.hold and channel in conn.hold:
                v2_history.release(engine, conn, channel, 0, set())


async def _replay_all(engine: Engine, conn: Connection, parsed: list) -> None:
    app = conn.app
    _enabled, _ttl, max_size = recovery_settings(app)
    recovered, failed = [], []
    for channel, stream_id, serial, last_message_id in parsed:
        replay = engine.hot.after(app, channel, stream_id, serial)
        items, source, failure = replay.frames, "hot", None
        if items is None:
            failure = {
                "channel": channel,
                "code": replay.failure[0],
                "reason": replay.failure[1],
                "expected_stream_id": stream_id,
                "current_stream_id": replay.stream_id,
                "oldest_available_serial": replay.oldest,
                "newest_available_serial": replay.newest,
            }
            if stream_id is None:
                failure["code"] = "continuity_unverifiable"
                failure["reason"] = "legacy_serial_only_position_cannot_use_cold_recovery"
            elif replay.failure[0] == "position_expired" and v2_history.history_policy(app, channel).enabled:
                try:
                    cold = await v2_history.cold_replay(engine, conn, channel, stream_id, serial, max_size)
                except Exception:  # the durable store is unreachable: say so, never crash the socket
                    failure["code"], failure["reason"] = (
                        "persistence_unavailable",
                        "durable_history_read_failed",
                    )
                else:
                    if cold.failure is None:
                        items, source, failure = [_Stored(i) for i in cold.items], "cold", None
                    else:
                        failure = cold.failure_data(channel)
        if failure is not None:
            failed.append(failure)
            engine.send(conn, frames.encode("pusher:resume_failed", frames.dumps(failure), channel))
            v2_history.release(engine, conn, channel, 0, set())
            continue
        replayed, last = 0, None
        seen = set()
        for item in items:
            last = item
            seen.add(item.message_id)
            if item.message_id == last_message_id:
                continue
            frame = OutFrame(None, item.text)
            if not passes(conn, channel, frame):  # filtered subscriptions replay filtered
                continue
            engine.send_frame(conn, frame)
            replayed += 1
        recovered.append(
            {
                "channel": channel,
                "source": source,
                "replayed": replayed,
                "position": None
                if last is None
                else {"stream_id": stream_id, "serial": last.serial, "last_message_id": last.message_id},
            }
        )
        v2_history.release(engine, conn, channel, last.serial if last else serial, seen)
    engine.send(
        conn, frames.encode("pusher:resume_success", frames.dumps({"recovered": recovered, "failed": failed}))
    )


class _Stored:
    """A durable history row seen as a replay item."""

    __slots__ = ("serial", "message_id", "text")

    def __init__(self, stored: Any) -> None:
        self.serial = stored.serial
        self.message_id = stored.message_id
        self.text = stored.payload
