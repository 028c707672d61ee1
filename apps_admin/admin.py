"""The Django admin for apps.

The secret is generated on creation and read-only afterwards: the "Rotate secret" action replaces it
and keeps the old one valid for a grace period, so backends can be redeployed without failed
requests. Actions save object by object (not ``QuerySet.update``) so the cache-invalidating
``post_save`` signal fires.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from apps_admin import operations
from apps_admin.fields import FEATURE_FIELDS, POLICY_FIELDS
from apps_admin.models import App

# Non-null JSON columns: an emptied textarea means "back to the default", not NULL.
_JSON_DEFAULTS = {
    "allowed_origins": list,
    "channel_namespaces": list,
    "webhooks": list,
    "channel_delta_compression": dict,
    "idempotency": dict,
    "connection_recovery": dict,
    "history": dict,
    "presence_history": dict,
}


class AppForm(forms.ModelForm):
    class Meta:
        model = App
        fields = "__all__"  # the admin narrows this to the fieldsets below
        help_texts = {
            "allowed_origins": 'JSON list, e.g. ["https://app.example.com", "*.example.com"]; empty = any origin.',
            "channel_namespaces": 'JSON list of {"name", "channel_name_pattern", ...} objects.',
            "webhooks": 'JSON list of {"url", "event_types", ...} objects.',
            "message_rate_limit": "Limit on all inbound WebSocket frames per socket; empty = none.",
            "channel_delta_compression": 'JSON object: channel -> "fossil" | "xdelta3" | "disabled" | {...}.',
        }

    def clean(self):
        cleaned = super().clean()
        for field, factory in _JSON_DEFAULTS.items():
            if field in cleaned and cleaned[field] is None:
                cleaned[field] = factory()
        origins = cleaned.get("allowed_origins")
        if origins is not None and (
            not isinstance(origins, list) or not all(isinstance(o, str) for o in origins)
        ):
            self.add_error("allowed_origins", "Must be a JSON list of strings.")
        for field in ("channel_namespaces", "webhooks"):
            if field in cleaned and not isinstance(cleaned[field], list):
                self.add_error(field, "Must be a JSON list.")
        return cleaned


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    form = AppForm
    list_display = ("id", "name", "key", "enabled", "max_connections", "enable_client_messages", "created_at")
    list_display_links = ("id", "name")
    search_fields = ("id", "name", "key")
    list_filter = ("enabled", *FEATURE_FIELDS, "terminate_on_limit", "created_at")
    date_hierarchy = "created_at"
    actions = ("rotate_secret", "enable_apps", "disable_apps")
    save_on_top = True
    fieldsets = (
        (
            "Credentials",
            {
                "fields": (
                    "id",
                    "name",
                    "enabled",
                    "key",
                    "secret",
                    "previous_secret_status",
                )
            },
        ),
        (
            "Limits",
            {
                "description": "Empty = the server-wide default; 0 on max connections and client events = no limit.",
                "fields": (
                    "max_connections",
                    ("max_client_events_per_second", "decay_seconds", "terminate_on_limit"),
                    "max_backend_events_per_second",
                    "max_read_requests_per_second",
                    ("max_presence_members_per_channel", "max_presence_member_size_in_kb"),
                    ("max_channel_name_length", "max_event_name_length"),
                    ("max_event_channels_at_once", "max_event_batch_size", "max_event_payload_in_kb"),
                    "message_rate_limit",
                ),
            },
        ),
        ("Features", {"fields": FEATURE_FIELDS}),
        ("Channels & webhooks", {"fields": ("allowed_origins", "channel_namespaces", "webhooks")}),
        (
            "Protocol V2 policies",
            {
                "classes": ("collapse",),
                "fields": POLICY_FIELDS,
            },
        ),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        always = ("previous_secret_status", "created_at", "updated_at")
        if obj is None:
            return always
        # Changing the primary key in the admin would save a copy under the new id.
        return ("id", "secret", *always)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("id", operations.next_app_id())
        return initial

    @admin.display(description="Previous secret")
    def previous_secret_status(self, obj: App) -> str:
        if obj is None or obj.pk is None or not obj.previous_secret:
            return "-"
        if operations.previous_secret_active(obj):
            local = timezone.localtime(obj.previous_secret_expires_at)
            return f"still accepted until {local:%Y-%m-%d %H:%M:%S %Z} (rotation grace period)"
        return "expired"

    @admin.action(description="Rotate secret (previous secret valid for 1 hour)")
    def rotate_secret(self, request, queryset) -> None:
        grace = operations.DEFAULT_GRACE_SECONDS
        rotated = [operations.rotate_secret(app, grace_seconds=grace) for app in queryset]
        for app in rotated:
            self.log_change(request, app, "Rotated secret")
        self.message_user(
            request,
            f"Rotated the secret of {len(rotated)} app(s); the previous secrets are accepted for "
            f"{grace // 60} more minutes. Open an app to read its new secret.",
            messages.SUCCESS,
        )

    @admin.action(description="Enable selected apps")
    def enable_apps(self, request, queryset) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected apps")
    def disable_apps(self, request, queryset) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed = 0
        for app in queryset:
            if operations.set_enabled(app, enabled):
                changed += 1
                self.log_change(request, app, "Enabled" if enabled else "Disabled")
        word = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{word} {changed} app(s).", messages.SUCCESS)
