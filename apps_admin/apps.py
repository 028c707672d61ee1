from django.apps import AppConfig


class AppsAdminConfig(AppConfig):
    name = "apps_admin"
    verbose_name = "Realtime apps"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps_admin import checks, signals  # noqa: F401  (system checks; cache invalidation on save/delete)
