"""``manage.py rotate_secret APP_ID``: give an app a new secret and keep the old one valid for a grace
period, so every backend can switch over without failed requests."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps_admin import operations
from apps_admin.management.commands._common import warn_if_not_database
from apps_admin.models import App


class Command(BaseCommand):
    # Output is meant for scripts; the system checks (app warnings) run with migrate, serve and check.
    requires_system_checks: list[str] = []
    help = "Rotate an app's secret; print the new one. The previous secret stays valid for --grace-seconds."

    def add_arguments(self, parser) -> None:
        parser.add_argument("app_id")
        parser.add_argument(
            "--grace-seconds",
            type=int,
            default=operations.DEFAULT_GRACE_SECONDS,
            help="How long the previous secret is still accepted (default %(default)s; 0 = revoke at once).",
        )
        parser.add_argument("--secret", help="The new secret (default: random).")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, app_id: str, grace_seconds: int, secret: str | None, **options) -> None:
        if grace_seconds < 0:
            raise CommandError("--grace-seconds must not be negative")
        warn_if_not_database(self.stderr)
        try:
            app = App.objects.filter(id=app_id).first()
            if app is None:
                raise CommandError(f"No app with id {app_id!r}.")
            operations.rotate_secret(app, grace_seconds=grace_seconds, secret=secret)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"Database error ({exc}); has `manage.py migrate` been run?") from None
        until = app.previous_secret_expires_at.isoformat() if app.previous_secret_expires_at else None
        if options["json"]:
            self.stdout.write(
                json.dumps({"app_id": app.id, "secret": app.secret, "previous_secret_valid_until": until})
            )
            return
        self.stdout.write(f"app_id={app.id}\nsecret={app.secret}")
        if until:
            self.stdout.write(f"previous_secret_valid_until={until}")
        else:
            self.stdout.write("previous secret revoked")
