"""``manage.py serve``: run the server under daphne with production listen options.

daphne's own CLI listens with a backlog of 50, which refuses bursts of connects; this command sets a
large backlog, disables daphne's 24 h WebSocket lifetime cap and applies the inbound size limit.
"""

from __future__ import annotations

import logging
import os

# Twisted must get the asyncio reactor before anything imports another one.
import daphne.server  # noqa: F401  isort:skip
from django.core.management.base import BaseCommand

from realtime.conf import server_settings

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the realtime server (WebSocket, HTTP API and admin) on HOST:PORT."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "6001")))
        parser.add_argument("--backlog", type=int, default=int(os.environ.get("LISTEN_BACKLOG", "4096")))
        parser.add_argument(
            "--prepare",
            action="store_true",
            help="Apply migrations and ensure the default app before serving (one command for containers).",
        )

    def handle(self, *args, host: str, port: int, backlog: int, prepare: bool = False, **options) -> None:
        if prepare:
            from django.core.management import call_command

            call_command("migrate", interactive=False, verbosity=0)
            call_command("ensure_default_app")
        from realtime import daphne_tuning
        from sockudo_project.asgi import application

        daphne_tuning.install()

        settings = server_settings()
        interface = host.replace(":", r"\:")
        endpoint = f"tcp:port={port}:interface={interface}:backlog={backlog}"
        self.stdout.write(f"Serving on http://{host}:{port} (WebSocket ws://{host}:{port}/app/<key>)")
        self.stdout.flush()
        daphne_tuning.TunedServer(
            application=application,
            endpoints=[endpoint],
            signal_handlers=True,
            websocket_timeout=-1,
            websocket_connect_timeout=10,
            websocket_max_message_size=settings["WEBSOCKET_MAX_PAYLOAD_KB"] * 1024,
            websocket_max_frame_size=settings["WEBSOCKET_MAX_PAYLOAD_KB"] * 1024,
            ping_interval=int(os.environ.get("WEBSOCKET_PING_INTERVAL", "60")),
            ping_timeout=int(os.environ.get("WEBSOCKET_PING_TIMEOUT", "30")),
            application_close_timeout=5,
            verbosity=0,
        ).run()
