from django.apps import AppConfig


class HistoryConfig(AppConfig):
    """Durable channel history, message versions and annotations (Protocol V2; not built yet)."""

    name = "history"
