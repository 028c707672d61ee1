from django.apps import AppConfig


class HistoryConfig(AppConfig):
    """Durable channel history for Protocol V2: per-channel sequencer, store, group-commit writer,
    retention and the history HTTP API."""

    name = "history"
    default_auto_field = "django.db.models.BigAutoField"
