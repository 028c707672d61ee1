"""Protocol V2 on channels with identity: the attach handshake, rewind, and history over the socket.

While a V2 subscriber is being attached (its position read, maybe history replayed), live messages
for that channel are held on the connection and released right after, in serial order and without
the ones it already got; none is delivered before the ``subscription_succeeded`` ack.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from history.policy import policy_for
from history.query import HistoryQuery, InvalidQuery
from history.store import get_store
from realtime.node.matching import passes
from realtime.node.metrics import STATS
from realtime.protocol import errors, frames
from realtime.protocol.outframe import OutFrame

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine

MAX_HISTORY_IN_FLIGHT = 2
LOG_EVERY = 10.0  # seconds between log lines for the same failing (app, operation, reason)

log = logging.getLogger(__name__)


class ReadFailures:
    """Durable-history reads of the socket path that failed: each is counted
    (``sockudo_history_read_failures_total``) and logged with its app, channel and reason, at most
    one line per (app, operation, reason) every ``LOG_EVERY`` seconds (the line says how many were
    not logged). The first read of an app that works after failures is logged and counted as a
    recovery (``sockudo_history_read_recoveries_total``). Event loop thread only."""

    def __init__(self) -> None:
        self.failing: dict[str, list[float]] = {}  # app_id -> [failures, first failure (monotonic)]
        self.logged: dict[tuple[str, str, str], list[float]] = {}  # key -> [last line at, suppressed]

    def failed(self, app_id: str, channel: str, operation: str, exc: BaseException) -> None:
        STATS.history_read_failed(app_id, operation)
        now = time.monotonic()
        state = self.failing.setdefault(app_id, [0, now])
        state[0] += 1
        reason = _reason(exc)
        key = (app_id, operation, reason)
        line = self.logged.get(key)
        if line is not None and now - line[0] < LOG_EVERY:
            line[1] += 1
            return
        suppressed = int(line[1]) if line else 0
        self.logged[key] = [now, 0]
        log.warning(
            "history read failed: app=%s channel=%s operation=%s reason=%s%s",
            app_id,
            channel,
            operation,
            reason,
            f" ({suppressed} similar failures not logged)" if suppressed else "",
        )

    def ok(self, app_id: str) -> None:
        if not self.failing:
            return
        state = self.failing.pop(app_id, None)
        if state is None:
            return
        STATS.history_read_recovered(app_id)
        self.logged = {key: value for key, value in self.logged.items() if key[0] != app_id}
        log.warning(
            "history reads work again: app=%s after %d failed reads in %.1f s",
            app_id,
            state[0],
            time.monotonic() - state[1],
        )


READS = ReadFailures()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def history_policy(app: Any, channel: str) -> Any:

    return policy_for(app, channel)


def parse_rewind(raw: Any) -> tuple[str, int] | None:
    """``("count", N)`` or ``("seconds", S)`` from the subscribe's ``rewind``; 4000 on bad shapes."""
    if raw is None:
        return None
    value: Any = raw
    kind = "count"
    if isinstance(raw, dict):
        if "count" in raw:
            value = raw["count"]
        elif "seconds" in raw or "duration_seconds" in raw:
            kind, value = "seconds", raw.get("seconds", raw.get("duration_seconds"))
        else:
            value = None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise errors.invalid_format("Invalid rewind option in subscription data")
    return kind, value


def hold(conn: Connection, channel: str) -> None:
    if conn.hold is None:
        conn.hold = {}
    conn.hold[channel] = []


def release(engine: Engine, conn: Connection, channel: str, after_serial: int, seen: set[str]) -> int:
    """Deliver the frames held during the attach that the subscriber has not got yet."""
    held = conn.hold.pop(channel, []) if conn.hold else []
    if conn.hold is not None and not conn.hold:
        conn.hold = None
    sent = 0
    for frame in held:
        position = frame.position
        if position is not None and (position[2] <= after_serial or position[0] in seen):
            continue
        engine.send_frame(conn, frame)
        sent += 1
    return sent


async def attach(
    engine: Engine,
    conn: Connection,
    channel: str,
    rewind: tuple[str, int] | None,
    presence: dict | None = None,
) -> None:
    """Ack a V2 subscription on a channel with identity, then rewind, then the held live frames."""
    app = conn.app
    policy = history_policy(app, channel)
    try:
        position = await engine.sequencer.current(app.id, channel)
    except Exception as exc:
        release(engine, conn, channel, 0, set())
        READS.failed(app.id, channel, "attach", exc)
        raise errors.broadcast_error("stream position unavailable") from None
    READS.ok(app.id)
    if conn.closed or channel not in conn.channels:
        if conn.hold:
            conn.hold.pop(channel, None)
        return
    payload: dict[str, Any] = {} if presence is None else {"presence": presence}
    if policy.enabled:
        payload["attach_serial"] = position.serial
        conn.attach[channel] = position.serial
    text = frames.encode("pusher_internal:subscription_succeeded", frames.dumps(payload), channel)
    text = frames.to_v2(text)[:-1] + f',"stream_id":"{position.stream_id}","serial":{position.serial}}}'
    engine.send(conn, text)
    if rewind is None:
        release(engine, conn, channel, 0, set())
        return
    await _rewind(engine, conn, channel, rewind, policy, position.serial)


async def _rewind(
    engine: Engine, conn: Connection, channel: str, rewind: tuple[str, int], policy: Any, head: int
) -> None:

    kind, amount = rewind
    cap = policy.max_page_size
    params: dict[str, Any] = {"direction": "newest_first", "end_serial": head}
    if kind == "count":
        params["limit"] = min(amount, cap)
    else:
        params["limit"] = cap
        params["start_time_ms"] = int((time.time() - amount) * 1000)
    try:
        query = HistoryQuery.parse(
            params, app_id=conn.app.id, channel=channel, max_page_size=cap, surface="ws"
        )
        page = await get_store().apage(query)
    except Exception as exc:
        release(engine, conn, channel, 0, set())
        READS.failed(conn.app.id, channel, "rewind", exc)
        raise errors.broadcast_error("history unavailable for rewind") from None
    READS.ok(conn.app.id)
    items = list(reversed(page.items))  # oldest -> newest
    seen = set()

    for item in items:
        seen.add(item.message_id)
        frame = OutFrame(None, item.payload)
        if passes(conn, channel, frame):  # the subscription's filter applies to rewind too
            engine.send_frame(conn, frame)
    last = items[-1].serial if items else 0
    live = release(engine, conn, channel, max(last, head), seen)
    truncated_by_limit = page.has_more or (kind == "count" and amount > cap and len(items) == cap)
    truncated_by_retention = bool(page.continuity.get("truncated_by_retention"))
    report = {
        "historical_count": len(items),
        "live_count": live,
        "complete": not (truncated_by_limit or truncated_by_retention),
        "truncated_by_retention": truncated_by_retention,
        "truncated_by_limit": bool(truncated_by_limit),
    }
    engine.send(conn, frames.encode("pusher:rewind_complete", report, channel))


def channel_history(engine: Engine, conn: Connection, frame: frames.Frame) -> Any:
    """``sockudo:channel_history``: a page of the channel's durable history, as over HTTP."""
    if conn.protocol != 2:
        raise errors.invalid_format("channel_history is only supported on protocol V2")
    data = frames.data_object(frame.data)
    if data is None:
        raise errors.invalid_format("channel_history data must be an object")
    channel = data.get(
        "channel", (data.get("params") or {}).get("channel") if isinstance(data.get("params"), dict) else None
    )
    if not isinstance(channel, str) or not channel:
        raise errors.invalid_format("channel_history requires a channel")
    if channel not in conn.channels:
        raise errors.client_event_error(f"Not subscribed to {channel}")
    policy = history_policy(conn.app, channel)
    if not policy.enabled:
        raise errors.channel_error(f"History is not enabled for {channel}")
    if conn.history_in_flight >= MAX_HISTORY_IN_FLIGHT:
        raise errors.client_event_error("Too many concurrent channel_history requests for this connection")

    try:
        query = HistoryQuery.parse(
            data,
            app_id=conn.app.id,
            channel=channel,
            max_page_size=min(1000, policy.max_page_size),
            default_limit=100,
            attach_serial=conn.attach.get(channel),
            surface="ws",
        )
    except InvalidQuery as exc:
        raise errors.invalid_format(str(exc)) from None
    conn.history_in_flight += 1
    return _answer_history(engine, conn, channel, query)


async def _answer_history(engine: Engine, conn: Connection, channel: str, query: Any) -> None:

    try:
        page = await get_store().apage(query)
    except Exception as exc:
        READS.failed(conn.app.id, channel, "channel_history", exc)
        raise errors.broadcast_error("history read failed") from None
    finally:
        conn.history_in_flight -= 1
    READS.ok(conn.app.id)
    engine.send(conn, frames.encode("pusher:channel_history", page.to_dict(), channel))


async def cold_replay(
    engine: Engine, conn: Connection, channel: str, stream_id: str, serial: int, limit: int
) -> Any:
    """Durable history after a position (cold recovery): the store proves contiguity."""
    try:
        cold = await get_store().arange_after(conn.app.id, channel, stream_id, serial, limit)
    except Exception as exc:
        READS.failed(conn.app.id, channel, "cold_resume", exc)
        raise
    READS.ok(conn.app.id)
    return cold
