"""``manage.py history_purge``: one retention pass (for cron, when servers do not run it)."""

from django.core.management.base import BaseCommand

from history.retention import purge_once


class Command(BaseCommand):
    help = "Delete history past each channel's retention (age window and message cap)."

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"purged {purge_once()} messages")
