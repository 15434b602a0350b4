"""System checks: settings the job store relies on, caught at ``manage.py check``."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register()
def check_use_tz(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Job times are timezone-aware UTC; with ``USE_TZ = False`` MySQL/SQLite reject them."""
    if getattr(settings, "USE_TZ", True):
        return []
    return [checks.Error(
        "celery-bgp stores timezone-aware datetimes, which needs USE_TZ = True.",
        hint="Set USE_TZ = True (Django's default since 5.0).",
        id="celery_bgp.E001",
    )]
