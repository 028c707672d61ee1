"""``manage.py create_app``: add an app to the database and print its credentials.

Every App field can be set with ``--set FIELD=VALUE`` (parsed like ``SOCKUDO_DEFAULT_APP_<FIELD>``);
the common ones have their own options.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction

from apps_admin import operations
from apps_admin.checks import app_warnings
from apps_admin.fields import ALL_FIELDS, parse_value
from apps_admin.management.commands._common import parse_assignments, warn_if_not_database
from apps_admin.models import App, new_key, new_secret


class Command(BaseCommand):
    # Output is meant for scripts; the system checks (app warnings) run with migrate, serve and check.
    requires_system_checks: list[str] = []
    help = "Create an app (id, key and secret generated unless given) and print its credentials."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--id", dest="app_id", help="App id (default: next numeric id).")
        parser.add_argument("--key", help="App key (default: random).")
        parser.add_argument("--secret", help="App secret (default: random).")
        parser.add_argument("--name", help="Display name.")
        parser.add_argument("--disabled", action="store_true", help="Create the app switched off.")
        parser.add_argument("--enable-client-messages", action="store_true", help="Allow client-* events.")
        parser.add_argument("--max-connections", type=int, help="Connections per app (0 = unlimited).")
        parser.add_argument(
            "--max-client-events-per-second",
            type=int,
            help="Client events per socket per window (0 = no limit).",
        )
        parser.add_argument("--allowed-origins", help='Comma list or JSON list of origins ("*" = any).')
        parser.add_argument(
            "--enforce-user-authentication", action="store_true", help="Sockets must pusher:signin in time."
        )
        parser.add_argument("--webhooks", help="JSON list of webhook objects.")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help=f"Any other field ({', '.join(f for f in ALL_FIELDS if f not in ('id', 'key', 'secret'))}).",
        )
        parser.add_argument("--json", action="store_true", help="Print the credentials as JSON.")

    def handle(self, *args, **options) -> None:
        values = self._values(options)
        warn_if_not_database(self.stderr)
        try:
            with transaction.atomic():
                values.setdefault("id", operations.next_app_id())
                values.setdefault("key", new_key())
                values.setdefault("secret", new_secret())
                if App.objects.filter(id=values["id"]).exists():
                    raise CommandError(f"An app with id {values['id']!r} already exists.")
                if App.objects.filter(key=values["key"]).exists():
                    raise CommandError(f"An app with key {values['key']!r} already exists.")
                app = App(**values)
                app.full_clean(validate_unique=False)
                app.save(force_insert=True)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        except DatabaseError as exc:
            raise CommandError(f"Database error ({exc}); has `manage.py migrate` been run?") from None
        for warning in app_warnings(app):
            self.stderr.write(f"Warning: {warning.msg} {warning.hint}")
        if options["json"]:
            self.stdout.write(
                json.dumps({"app_id": app.id, "key": app.key, "secret": app.secret, "name": app.name})
            )
        else:
            self.stdout.write(f"app_id={app.id}\nkey={app.key}\nsecret={app.secret}")

    def _values(self, options) -> dict:
        raw: dict[str, object] = {}
        for field, value in parse_assignments(options["set"], "--set"):
            if field not in ALL_FIELDS:
                raise CommandError(f"--set: unknown field {field!r}")
            raw[field] = value
        explicit = {
            "id": options["app_id"],
            "key": options["key"],
            "secret": options["secret"],
            "name": options["name"],
            "max_connections": options["max_connections"],
            "max_client_events_per_second": options["max_client_events_per_second"],
            "allowed_origins": options["allowed_origins"],
            "webhooks": options["webhooks"],
            "enabled": False if options["disabled"] else None,
            "enable_client_messages": True if options["enable_client_messages"] else None,
            "enforce_user_authentication": True if options["enforce_user_authentication"] else None,
        }
        raw.update({k: v for k, v in explicit.items() if v is not None})
        values = {}
        for field, value in raw.items():
            try:
                values[field] = parse_value(field, value)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                raise CommandError(f"{field}: {exc}") from None
        for field in ("id", "key", "secret"):
            if field in values and not values[field]:
                raise CommandError(f"{field} must not be empty")
        return values
