"""Operations on apps shared by the admin and the management commands: id allocation, secret
rotation, switching an app on or off.

Every change goes through ``App.save()`` (never ``QuerySet.update()``) so the ``post_save`` signal
drops the in-process app cache at once; other processes pick the change up within
``APP_MANAGER_CACHE_TTL`` seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from apps_admin.models import App, new_secret

# The default app is 1001; numbering further apps after it keeps ids numeric (every Pusher SDK
# accepts them) and away from small numbers people type by hand in examples.
FIRST_APP_ID = 1001

# One hour: long enough to roll the new secret out to every backend of a typical deployment, short
# enough that a leaked secret stops working the same day.
DEFAULT_GRACE_SECONDS = 3600


def next_app_id() -> str:
    """One more than the largest numeric app id (``FIRST_APP_ID`` when there is none)."""
    numeric = [int(i) for i in App.objects.values_list("id", flat=True) if i.isdigit()]
    return str(max(numeric) + 1 if numeric else FIRST_APP_ID)


def rotate_secret(
    app: App,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    secret: str | None = None,
    now: datetime | None = None,
) -> App:
    """Give ``app`` a new secret; the current one stays valid for ``grace_seconds``.

    Only one previous secret is kept: rotating again inside a grace window ends the older one. With
    ``grace_seconds == 0`` the old secret stops working immediately.
    """
    if grace_seconds < 0:
        raise ValueError("grace_seconds must not be negative")
    new = secret or new_secret()
    if new == app.secret:
        raise ValueError("the new secret equals the current one")
    if grace_seconds:
        app.previous_secret = app.secret
        app.previous_secret_expires_at = (now or timezone.now()) + timedelta(seconds=grace_seconds)
    else:
        app.previous_secret = ""
        app.previous_secret_expires_at = None
    app.secret = new
    app.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return app


def set_enabled(app: App, enabled: bool) -> bool:
    """Switch ``app`` on or off; True when it changed."""
    if app.enabled == enabled:
        return False
    app.enabled = enabled
    app.save(update_fields=["enabled", "updated_at"])
    return True


def previous_secret_active(app: App, now: datetime | None = None) -> bool:
    """Whether the previous secret of ``app`` is still accepted."""
    expires = app.previous_secret_expires_at
    return bool(app.previous_secret) and expires is not None and expires >= (now or timezone.now())
