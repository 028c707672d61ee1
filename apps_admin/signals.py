"""Drop cached apps the moment one is saved or deleted (this process; others expire by TTL)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps_admin.managers import get_app_manager
from apps_admin.models import App


@receiver(post_save, sender=App)
@receiver(post_delete, sender=App)
def _invalidate(**_kwargs) -> None:

    get_app_manager().invalidate()
