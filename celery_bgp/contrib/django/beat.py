"""django-celery-beat's stored entries, as the console and a pause need them.

With its ``DatabaseScheduler``, beat runs what the ``PeriodicTask`` table says (the app's
``beat_schedule`` is copied there at beat's start, keeping ``enabled``), and re-reads the
table when ``PeriodicTasks`` says it changed. A pause sets ``enabled`` the way
django-celery-beat's own admin action does, so beat stops sending within its next check.
Without django-celery-beat installed everything here answers "nothing stored".
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.apps import apps
from django.utils import timezone

__all__ = ["installed", "periodic_tasks", "set_entry_enabled"]

#: At most this many stored entries are shown (a console, not django-celery-beat's admin).
MAX_ENTRIES = 200


def installed() -> bool:
    return apps.is_installed("django_celery_beat")


def set_entry_enabled(entry: str, enabled: bool) -> bool:
    """Enable or disable the ``PeriodicTask`` named ``entry``; True if one changed.

    Disabling clears ``last_run_at`` (as ``PeriodicTask.save`` does); enabling starts
    the schedule again from now (``date_changed``), like beat's default scheduler, whose
    runs went on (and were skipped) during the pause.
    """
    if not installed():
        return False
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    values: dict[str, Any] = {"enabled": enabled, "date_changed": timezone.now()}
    if not enabled:
        values["last_run_at"] = None
    changed = PeriodicTask.objects.filter(name=entry).exclude(enabled=enabled).update(**values)
    if changed:
        PeriodicTasks.update_changed()  # beat re-reads its schedule
    return bool(changed)


def periodic_tasks(names: Collection[str] | None = None) -> dict[str, Any]:
    """Stored entries by name (those named, or the first :data:`MAX_ENTRIES`); {} when
    django-celery-beat is not installed or its tables are not there."""
    if not installed():
        return {}
    from django.db import DatabaseError
    from django_celery_beat.models import PeriodicTask

    rows = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked")
    if names is not None:
        rows = rows.filter(name__in=list(names))
    try:
        return {row.name: row for row in rows.order_by("name")[:MAX_ENTRIES]}
    except DatabaseError:
        return {}
