from django.apps import AppConfig


class PushConfig(AppConfig):
    """Push notifications: devices, subscriptions and provider delivery (not built yet)."""

    name = "push"
