"""``manage.py serve``: run the server under daphne with production listen options.

daphne's own CLI listens with a backlog of 50, which refuses bursts of connects; this command sets a
large backlog, disables daphne's 24 h WebSocket lifetime cap and applies the inbound size limit.
SIGTERM/SIGINT drain the node gracefully (``realtime.server.node``). ``--workers N`` runs N node
processes on the one port under a supervisor (``realtime.server.workers``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Twisted must get the asyncio reactor before anything imports another one.
import daphne.server  # noqa: F401  isort:skip
from django.conf import settings as django_settings
from django.core.management.base import BaseCommand

from realtime import checks
from realtime.conf import server_settings

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the realtime server (WebSocket, HTTP API and admin) on HOST:PORT."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "6001")))
        parser.add_argument("--backlog", type=int, default=None)
        parser.add_argument(
            "--prepare",
            action="store_true",
            help="Apply migrations and ensure the default app before serving (one command for containers).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="Worker processes on the one port, each a cluster node (default SOCKUDO_WORKERS, 1).",
        )
        # Internal: a worker started by ``--workers`` adopts its supervisor's listening socket.
        parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)

    def execute(self, *args, **options):
        # The system checks run before ``handle``: let them see --workers as they see SOCKUDO_WORKERS.
        if options.get("workers") is not None and options.get("listen_fd") is None:
            checks.workers_override = options["workers"]
        return super().execute(*args, **options)

    def handle(
        self,
        *args,
        host: str,
        port: int,
        backlog: int | None,
        prepare: bool = False,
        workers: int | None = None,
        listen_fd: int | None = None,
        **options,
    ) -> None:
        settings = server_settings()
        if backlog is None:
            backlog = settings.LISTEN_BACKLOG
        if workers is None:
            workers = int(settings.SOCKUDO_WORKERS)
        if prepare and listen_fd is None:
            from django.core.management import call_command

            call_command("migrate", interactive=False, verbosity=0)
            call_command("ensure_default_app")
        if workers > 1 and listen_fd is None:
            self._supervise(workers, host, port, backlog)
            return
        from django.utils.module_loading import import_string

        from realtime import server

        application = import_string(django_settings.ASGI_APPLICATION)

        server.install_transport()

        endpoints: list[str] = []
        if listen_fd is None:
            interface = host.replace(":", r"\:")
            endpoints.append(f"tcp:port={port}:interface={interface}:backlog={backlog}")
            self.stdout.write(f"Serving on http://{host}:{port} (WebSocket ws://{host}:{port}/app/<key>)")
            self.stdout.flush()
        server.server_class()(
            application=application,
            endpoints=endpoints,
            listen_fds=(listen_fd,) if listen_fd is not None else (),
            watch_parent=listen_fd is not None,
            websocket_timeout=-1,
            websocket_connect_timeout=10,
            websocket_max_message_size=settings.WEBSOCKET_MAX_PAYLOAD_KB * 1024,
            websocket_max_frame_size=settings.WEBSOCKET_MAX_PAYLOAD_KB * 1024,
            ping_interval=settings.WEBSOCKET_PING_INTERVAL,
            ping_timeout=settings.WEBSOCKET_PING_TIMEOUT,
            application_close_timeout=5,
            verbosity=0,
        ).run()

    def _supervise(self, workers: int, host: str, port: int, backlog: int) -> None:
        from realtime.server.workers import Supervisor, spread_by_kernel

        manage_py = Path(django_settings.BASE_DIR) / "manage.py"
        supervisor = Supervisor(
            workers=workers,
            host=host,
            port=port,
            backlog=backlog,
            worker_args=[],
            grace=float(server_settings().SHUTDOWN_GRACE_PERIOD),
            manage_py=str(manage_py if manage_py.exists() else sys.argv[0]),
        )
        how = "a socket each (SO_REUSEPORT)" if spread_by_kernel(workers) else "one shared socket"
        self.stdout.write(
            f"Serving on http://{host}:{port} with {workers} worker processes, {how} "
            f"(WebSocket ws://{host}:{port}/app/<key>)"
        )
        self.stdout.flush()
        code = supervisor.run()
        if code:
            sys.exit(code)
