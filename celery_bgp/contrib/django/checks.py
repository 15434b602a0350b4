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


@checks.register()
def check_psycopg(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """On PostgreSQL the job store's hot path (one round trip to create a job, three on
    its worker) needs psycopg 3; with psycopg2 every job goes through the ORM."""
    engines = [db.get("ENGINE", "") for db in getattr(settings, "DATABASES", {}).values()]
    if not any("postgresql" in engine or "postgis" in engine for engine in engines):
        return []
    try:
        from django.db.backends.postgresql import psycopg_any
    except ImportError:  # no driver at all: Django says so itself
        return []
    if psycopg_any.is_psycopg3:
        return []
    return [checks.Warning(
        "Django uses psycopg2: celery-bgp's job store on PostgreSQL then runs every job "
        "through the ORM (about 24 statements per job instead of 4 round trips).",
        hint='pip install "psycopg[binary]": Django uses psycopg 3 when it is installed.',
        id="celery_bgp.W002",
    )]
