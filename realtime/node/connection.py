"""The state of one WebSocket connection on this node (kept small: thousands live per process)."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps_admin.models import App
    from realtime.node.outlet import Outlet

# Socket ids are identifiers, not secrets (a channel auth signs them with the app secret), so a
# fast generator seeded from the OS is enough; SystemRandom cost 3 % of a connect.
_rand = random.Random(random.SystemRandom().getrandbits(128))


def new_socket_id() -> str:
    """``<a>.<b>``: two decimal integers, as Pusher server SDKs validate (``^\\d+\\.\\d+$``)."""
    return f"{_rand.randrange(1, 10_000_000_000)}.{_rand.randrange(1, 10_000_000_000)}"


class Connection:
    __slots__ = (
        "socket_id",
        "app",
        "outlet",
        "protocol",
        "channels",
        "user_id",
        "presence_user_id",
        "user_data",
        "watchlist",
        "last_seen",
        "ping_sent_at",
        "auth_deadline",
        "rate_window",
        "rate_count",
        "msg_window",
        "msg_count",
        "closed",
        "echo",
        "presence_rate",
        "hold",
        "attach",
        "history_in_flight",
        "filters",
        "__weakref__",
    )

    def __init__(self, app: App, outlet: Outlet, protocol: int = 1) -> None:
        self.socket_id = new_socket_id()
        self.app = app
        self.outlet = outlet
        self.protocol = protocol
        # channel name -> presence user id on that channel (None for non-presence channels)
        self.channels: dict[str, str | None] = {}
        self.user_id: str | None = None  # signed-in user (pusher:signin)
        self.presence_user_id: str | None = None  # first presence identity, if not signed in
        self.user_data: dict[str, Any] | None = None
        self.watchlist: tuple[str, ...] = ()
        self.last_seen = time.monotonic()
        self.ping_sent_at = 0.0
        self.auth_deadline = 0.0
        self.rate_window = 0.0
        self.rate_count = 0
        self.msg_window = 0.0
        self.msg_count = 0
        self.closed = False
        self.echo = True  # V2: receive own client events (echo_messages)
        self.presence_rate: dict[str, tuple[float, int]] | None = None  # V2 presence_update limit
        self.hold: dict[str, list] | None = None  # V2: live frames held while a channel attaches
        self.attach: dict[str, int] = {}  # V2: attach serial per channel with history
        self.history_in_flight = 0
        self.filters: dict[str, object] | None = None  # V2: channel -> subscription filter

    @property
    def effective_user_id(self) -> str | None:
        return self.user_id or self.presence_user_id

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<Connection {self.socket_id} app={self.app.id}>"
