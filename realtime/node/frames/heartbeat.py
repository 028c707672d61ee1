"""``pusher:ping`` / ``pusher:pong``: the Pusher-level heartbeat (the sweep that sends pings lives
in the engine's timers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtime.protocol import frames
from realtime.protocol.outframe import OutFrame

if TYPE_CHECKING:
    from realtime.node.connection import Connection
    from realtime.node.engine import Engine


# -- ping / pong -------------------------------------------------------------------------------
_PONG = OutFrame(frames.PONG)


def ping(engine: Engine, conn: Connection, frame: frames.Frame) -> None:
    engine.send_frame(conn, _PONG)


def pong(engine: Engine, conn: Connection, frame: frames.Frame) -> None:
    """Activity was already recorded by the engine; nothing else to do."""
