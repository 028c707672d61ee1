from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime server"

    def ready(self) -> None:
        # Wiring, done once here so the node itself never imports the app store or the ORM.
        from apps_admin.managers import get_app_manager
        from history.retention import purge_forever
        from realtime import checks  # noqa: F401  (system checks: adapter vs. worker processes)
        from realtime.conf import connect_setting_changed
        from realtime.node import engine

        engine.configure(
            find_app=lambda app_id: get_app_manager().cached_by_id(app_id)[1], services=[purge_forever]
        )
        connect_setting_changed()
