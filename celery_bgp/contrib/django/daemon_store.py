"""Daemons on the Django ORM, in the job store's database (alias ``using``).

Leases are single conditional ``UPDATE``s (free, expired or already ours), so two
workers racing for a daemon never both win, on every database Django supports.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q

from celery_bgp.commands import utcnow
from celery_bgp.daemons.model import FIELDS, DaemonRecord
from celery_bgp.daemons.store import DaemonStore
from celery_bgp.jobs.model import LogRecord

from .daemon_models import Daemon, DaemonLog

__all__ = ["DjangoDaemonStore"]


def _record(row: Daemon) -> DaemonRecord:
    return DaemonRecord(**{name: getattr(row, name) for name in FIELDS})


class DjangoDaemonStore(DaemonStore):
    """Daemon rows and logs through the ORM."""

    def __init__(self, using: str = "default") -> None:
        from django.db import InterfaceError, OperationalError

        self.using = using
        self.unavailable = (OperationalError, InterfaceError, *DaemonStore.unavailable)

    @classmethod
    def for_job_store(cls, job_store: Any) -> DjangoDaemonStore:
        return cls(using=job_store.using)

    def _rows(self):
        return Daemon.objects.using(self.using)

    def ensure(self, record: DaemonRecord) -> DaemonRecord:
        found = self._rows().filter(pk=record.id).first()
        if found is None:
            values = {**dataclasses.asdict(record), "modified": utcnow()}
            try:
                with transaction.atomic(using=self.using):
                    found = self._rows().create(**values)
            except IntegrityError:
                found = self._rows().get(pk=record.id)
        return _record(found)

    def get(self, row_id: str) -> DaemonRecord | None:
        found = self._rows().filter(pk=row_id).first()
        return _record(found) if found else None

    def search(self, environment: str, name: str | None = None) -> list[DaemonRecord]:
        rows = self._rows().filter(environment=environment)
        if name is not None:
            rows = rows.filter(name=name)
        return [_record(r) for r in rows.order_by("name", "instance")]

    def acquire(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        now = utcnow()
        free = (Q(lease_holder__isnull=True) | Q(lease_holder=holder)
                | Q(lease_expires__isnull=True) | Q(lease_expires__lt=now))
        taken = self._rows().filter(free, pk=row_id).update(
            lease_holder=holder, lease_expires=now + timedelta(seconds=timeout), modified=now)
        return self.get(row_id) if taken else None

    def renew(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        now = utcnow()
        done = self._rows().filter(pk=row_id, lease_holder=holder).update(
            lease_expires=now + timedelta(seconds=timeout))
        return self.get(row_id) if done else None

    def update(self, row_id: str, changes: dict[str, Any], holder: str | None = None) -> bool:
        rows = self._rows().filter(pk=row_id)
        if holder is not None:
            rows = rows.filter(lease_holder=holder)
        return bool(rows.update(**changes, modified=utcnow()))

    def steer(self, row_id: str, desired: str, new_generation: bool) -> DaemonRecord | None:
        done = self._rows().filter(pk=row_id).update(
            desired=desired, generation=F("generation") + int(new_generation),
            modified=utcnow())
        return self.get(row_id) if done else None

    def add_log(self, environment: str, name: str, worker: str | None,
                record: LogRecord) -> None:
        DaemonLog.objects.using(self.using).create(
            environment=environment, daemon=name, worker=worker, level=record.level,
            message=record.message, exception=record.exception, time=record.time)

    def logs(self, environment: str, name: str, limit: int = 100):
        rows = (DaemonLog.objects.using(self.using).filter(environment=environment, daemon=name)
                .order_by("-id")[:limit])
        return [(r.worker, LogRecord(r.level, r.message, r.time, r.exception)) for r in rows]

    def delete(self, row_ids: Sequence[str]) -> None:
        self._rows().filter(pk__in=list(row_ids)).delete()

    def on_idle(self) -> None:
        connections[self.using].close()
