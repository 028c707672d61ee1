"""``manage.py list_apps``: the apps the configured app manager serves (database or static)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps_admin.managers import get_app_manager

COLUMNS = ("id", "name", "key", "enabled", "max_connections", "enable_client_messages")


class Command(BaseCommand):
    # Output is meant for scripts; the system checks (app warnings) run with migrate, serve and check.
    requires_system_checks: list[str] = []
    help = "List the apps the server would serve (from APP_MANAGER_DRIVER)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--show-secrets", action="store_true", help="Include secrets in the output.")
        parser.add_argument("--json", action="store_true", help="Print a JSON list.")

    def handle(self, *args, show_secrets: bool, **options) -> None:
        try:
            apps = sorted(get_app_manager().all_apps(), key=lambda a: (len(a.id), a.id))
        except DatabaseError as exc:
            raise CommandError(f"Database error ({exc}); has `manage.py migrate` been run?") from None
        columns = COLUMNS + (("secret",) if show_secrets else ())
        rows = [{c: getattr(app, c) for c in columns} for app in apps]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        if not rows:
            self.stdout.write("No apps.")
            return
        table = [columns] + [tuple(str(row[c]) for c in columns) for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
        for line in table:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            )
