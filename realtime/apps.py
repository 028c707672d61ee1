from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime server"

    def ready(self) -> None:
        from realtime import checks  # noqa: F401  (system checks: adapter vs. worker processes)
