"""The Django store's recurring-job rows (:class:`~.models.RecurringJob`).

Each write is one upsert on the (environment, name) key, so beat's runs on several
workers and an operator's pause never read-modify-write the same row. Pausing also
disables django-celery-beat's stored entry when there is one (:mod:`.beat`).
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from celery_bgp.jobs.recurring import RecurringRecord, RecurringUpserts

from .models import RecurringJob

__all__ = ["RecurringRows"]

FIELDS = ("paused", "paused_by", "paused_at", "last_job", "last_run", "last_beat")


def _record(row: RecurringJob) -> RecurringRecord:
    return RecurringRecord(row.name, row.environment,
                           **{name: getattr(row, name) for name in FIELDS})


class RecurringRows(RecurringUpserts):
    """:class:`~celery_bgp.jobs.store.JobStore`'s recurring-job methods, Django ORM."""

    using: str
    _upsert: Any

    def recurring_records(self, environment: str, names: Collection[str] | None = None
                          ) -> dict[str, RecurringRecord]:
        rows = RecurringJob.objects.using(self.using).filter(environment=environment)
        if names is not None:
            rows = rows.filter(name__in=list(names))
        return {row.name: _record(row) for row in rows.order_by("name")}

    def _write_recurring(self, environment: str, name: str, **fields: Any) -> None:
        row = RecurringJob(environment=environment, name=name, **fields)
        self._upsert(RecurringJob, [row], ["environment", "name"], list(fields))

    def set_beat_entry_enabled(self, entry: str, enabled: bool) -> bool:
        from .beat import set_entry_enabled

        return set_entry_enabled(entry, enabled)
