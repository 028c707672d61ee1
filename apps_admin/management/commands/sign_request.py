"""``manage.py sign_request``: print a ready-to-run ``curl`` command for the HTTP API, signed with the
app's secret (Pusher "auth_version 1.0"; valid for ``HTTP_API_TIMESTAMP_SKEW`` seconds).

Examples::

    manage.py sign_request --app-id 1001 GET channels --param filter_by_prefix=presence-
    manage.py sign_request --app-id 1001 POST /apps/1001/events \\
        --body '{"name":"hello","channels":["demo"],"data":"{}"}'

A PATH without a leading ``/`` is taken relative to ``/apps/<app-id>/``. The path is signed exactly
as given (as it will appear on the wire), so percent-encode channel names yourself if you want.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from urllib.parse import parse_qsl

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps_admin.management.commands._common import parse_assignments
from apps_admin.managers import get_app_manager
from realtime.protocol.signatures import signed_query

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")


def default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '6001')}"


class Command(BaseCommand):
    # Output is meant for scripts; the system checks (app warnings) run with migrate, serve and check.
    requires_system_checks: list[str] = []
    help = "Print a curl command for a signed HTTP API request."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--app-id", required=True)
        parser.add_argument("method", type=str.upper, choices=METHODS, metavar="METHOD")
        parser.add_argument("path", metavar="PATH", help="e.g. /apps/1001/events, or 'events' for that.")
        parser.add_argument(
            "--body", help="Request body (JSON text, sent byte for byte); @FILE reads a file."
        )
        parser.add_argument(
            "--param", action="append", default=[], metavar="NAME=VALUE", help="Query parameter (repeatable)."
        )
        parser.add_argument(
            "--url", default=None, help="Server base URL (default http://127.0.0.1:$PORT or :6001)."
        )
        parser.add_argument("--timestamp", type=int, help="auth_timestamp to sign (default: now).")

    def handle(self, *args, app_id: str, method: str, path: str, **options) -> None:
        try:
            app = get_app_manager().load_by_id(app_id)
        except DatabaseError as exc:
            raise CommandError(f"Database error ({exc}); has `manage.py migrate` been run?") from None
        if app is None:
            raise CommandError(f"No app with id {app_id!r}.")

        path, _, inline_query = path.partition("?")
        if not path.startswith("/"):
            path = f"/apps/{app.id}/{path}"
        params = dict(parse_qsl(inline_query, keep_blank_values=True))
        params.update(parse_assignments(options["param"], "--param"))
        if any(name.lower().startswith("auth_") or name.lower() == "body_md5" for name in params):
            raise CommandError("auth_* and body_md5 parameters are computed by this command")

        body, body_arg = self._body(options["body"], method)
        query = signed_query(method, path, app.key, app.secret, body, params, timestamp=options["timestamp"])
        base = (options["url"] or default_url()).rstrip("/")
        command = ["curl", "-sS"]
        if method != "GET":
            command += ["-X", method]
        if body_arg is not None:
            command += ["-H", "Content-Type: application/json", "--data-binary", body_arg]
        command.append(f"{base}{path}?{query}")
        self.stdout.write(shlex.join(command))

    @staticmethod
    def _body(raw: str | None, method: str) -> tuple[bytes, str | None]:
        """(the exact bytes signed, the curl --data-binary argument)."""
        if method != "POST":
            if raw is not None:
                raise CommandError("--body is only sent with POST (the Pusher API has no other bodies)")
            return b"", None
        if raw is None:
            return b"", ""
        if raw.startswith("@"):
            try:
                data = Path(raw[1:]).read_bytes()
            except OSError as exc:
                raise CommandError(f"--body: {exc}") from None
            return data, raw
        try:
            json.loads(raw)
        except ValueError as exc:
            raise CommandError(f"--body is not valid JSON: {exc}") from None
        return raw.encode(), raw
