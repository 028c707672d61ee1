"""Create the default app from ``SOCKUDO_DEFAULT_APP_*`` if it does not exist yet.

If it exists, only the variables actually set in the environment are applied, so edits made in the
admin survive a restart unless the environment says otherwise.

The secret is never printed: this runs on every ``make run`` and ``serve --prepare``, whose output
ends up in logs. ``list_apps --show-secrets`` and the admin show it to whoever may see it.
"""

from django.core.management.base import BaseCommand

from apps_admin.fields import default_app_from_environ
from apps_admin.models import App


class Command(BaseCommand):
    help = "Ensure the default app (SOCKUDO_DEFAULT_APP_ID/KEY/SECRET...) exists; print its id and key."

    def handle(self, *args, **options) -> None:
        values = default_app_from_environ()
        app = App.objects.filter(id=values["id"]).first()
        if app is None:
            App.objects.filter(key=values["key"]).delete()
            app = App.objects.create(**values)
            action = "created"
        else:
            for field, value in default_app_from_environ(explicit_only=True).items():
                setattr(app, field, value)
            app.save()
            action = "found"
        self.stdout.write(
            f"Default app {action}: app_id={app.id} key={app.key} "
            "(secret: `python manage.py list_apps --show-secrets` or the admin, /admin/)"
        )
