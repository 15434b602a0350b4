"""The SQLAlchemy store's recurring-job rows (``celery_bgp_recurringjob``).

The Django store's behaviour in Core: each write is one upsert on (environment, name),
so concurrent runs and an operator's pause never read-modify-write the row.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select

from celery_bgp.jobs.recurring import RecurringRecord, RecurringUpserts

from .plumbing import Plumbing
from .schema import recurring_job

__all__ = ["RecurringRows"]

FIELDS = ("paused", "paused_by", "paused_at", "last_job", "last_run", "last_beat")


class RecurringRows(RecurringUpserts, Plumbing):
    """:class:`~celery_bgp.jobs.store.JobStore`'s recurring-job methods, SQLAlchemy Core."""

    def recurring_records(self, environment: str, names: Collection[str] | None = None
                          ) -> dict[str, RecurringRecord]:
        c = recurring_job.c
        query = select(recurring_job).where(c.environment == environment)
        if names is not None:
            query = query.where(c.name.in_(list(names)))
        with self._read() as connection:
            rows = connection.execute(query.order_by(c.name)).mappings().all()
        return {row["name"]: RecurringRecord(row["name"], row["environment"],
                                             **{name: row[name] for name in FIELDS})
                for row in rows}

    def _write_recurring(self, environment: str, name: str, **fields: Any) -> None:
        row = {"environment": environment, "name": name, "paused": False, **fields}
        with self._single() as connection:
            self._upsert(connection, recurring_job, [row], ["environment", "name"], list(fields))
