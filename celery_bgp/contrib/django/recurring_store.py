"""The Django store's recurring-job rows (:class:`~.models.RecurringJob`).

Each write is one upsert on the (environment, name) key, so beat's runs on several
workers and an operator's pause never read-modify-write the same row. Pausing also
disables django-celery-beat's stored entry when there is one (:mod:`.beat`).
"""
from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from celery_bgp.jobs.recurring import RecurringRecord

from .models import RecurringJob

__all__ = ["RecurringRows"]

FIELDS = ("paused", "paused_by", "paused_at", "last_job", "last_run", "last_beat")


def _record(row: RecurringJob) -> RecurringRecord:
    return RecurringRecord(row.name, row.environment,
                           **{name: getattr(row, name) for name in FIELDS})


class RecurringRows:
    """:class:`~celery_bgp.jobs.store.JobStore`'s recurring-job methods, Django ORM."""

    using: str
    _upsert: Any

    def recurring_records(self, environment: str, names: Collection[str] | None = None
                          ) -> dict[str, RecurringRecord]:
        rows = RecurringJob.objects.using(self.using).filter(environment=environment)
        if names is not None:
            rows = rows.filter(name__in=list(names))
        return {row.name: _record(row) for row in rows.order_by("name")}

    def set_recurring_paused(self, environment: str, name: str, paused: bool, *,
                             by: str | None, at: datetime) -> RecurringRecord:
        self._write(environment, name, paused=paused, paused_by=by, paused_at=at)
        return self.recurring_records(environment, [name])[name]

    def record_recurring_run(self, environment: str, name: str, *, job_id: str | None = None,
                             at: datetime | None = None, beat: datetime | None = None) -> None:
        fields: dict[str, Any] = {}
        if job_id is not None:
            fields.update(last_job=job_id, last_run=at)
        if beat is not None:
            fields["last_beat"] = beat
        if fields:
            self._write(environment, name, **fields)

    def _write(self, environment: str, name: str, **fields: Any) -> None:
        row = RecurringJob(environment=environment, name=name, **fields)
        self._upsert(RecurringJob, [row], ["environment", "name"], list(fields))

    def set_beat_entry_enabled(self, entry: str, enabled: bool) -> bool:
        from .beat import set_entry_enabled

        return set_entry_enabled(entry, enabled)
