"""Measuring helpers of the fault suite: a server process's resident memory, and a webhook receiver
that records the events a live server POSTs to it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def rss_kb(pid: int) -> int:
    """VmRSS of process ``pid`` in KiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 keeping every webhook event it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.events.extend(json.loads(body)["events"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def named(self, name: str, channel: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                e
                for e in self.events
                if e["name"] == name and (channel is None or e.get("channel") == channel)
            ]

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
