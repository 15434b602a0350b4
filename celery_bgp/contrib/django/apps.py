"""App configuration: the app label ``celery_bgp`` and its admin-facing name."""
from __future__ import annotations

from django.apps import AppConfig


class CeleryBgpConfig(AppConfig):
    """``celery_bgp.contrib.django``, labelled ``celery_bgp`` (tables ``celery_bgp_*``)."""

    name = "celery_bgp.contrib.django"
    label = "celery_bgp"
    verbose_name = "Background jobs (celery-bgp)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
