"""Daemons in one process's memory: for tests and the in-process worker only."""
from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from datetime import timedelta
from typing import Any

from ..commands import utcnow
from ..jobs.model import LogRecord
from .model import DaemonRecord
from .store import DaemonStore

__all__ = ["MemoryDaemonStore"]

_STORES: dict[int, MemoryDaemonStore] = {}
_LOCK = threading.Lock()


class MemoryDaemonStore(DaemonStore):
    """A dict of rows under one lock; one per memory job store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, DaemonRecord] = {}
        self._logs: dict[tuple[str, str], list[tuple[str | None, LogRecord]]] = defaultdict(list)

    @classmethod
    def for_job_store(cls, job_store: Any) -> MemoryDaemonStore:
        with _LOCK:
            return _STORES.setdefault(id(job_store), cls())

    def _copy(self, row: DaemonRecord | None) -> DaemonRecord | None:
        return None if row is None else dataclasses.replace(row, properties=dict(row.properties))

    def ensure(self, record: DaemonRecord) -> DaemonRecord:
        with self._lock:
            if record.id not in self._rows:
                self._rows[record.id] = dataclasses.replace(record, modified=utcnow())
            return self._copy(self._rows[record.id])  # type: ignore[return-value]

    def get(self, row_id: str) -> DaemonRecord | None:
        with self._lock:
            return self._copy(self._rows.get(row_id))

    def search(self, environment: str, name: str | None = None) -> list[DaemonRecord]:
        with self._lock:
            rows = [self._copy(r) for r in self._rows.values() if r.environment == environment
                    and (name is None or r.name == name)]
        return sorted(rows, key=lambda r: (r.name, r.instance))  # type: ignore[union-attr]

    def acquire(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        now = utcnow()
        with self._lock:
            row = self._rows.get(row_id)
            if row is None or not (row.lease_holder in (None, holder)
                                   or row.lease_expires is None or row.lease_expires < now):
                return None
            row.lease_holder, row.lease_expires = holder, now + timedelta(seconds=timeout)
            row.modified = now
            return self._copy(row)

    def renew(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        now = utcnow()
        with self._lock:
            row = self._rows.get(row_id)
            if row is None or row.lease_holder != holder:
                return None
            row.lease_expires = now + timedelta(seconds=timeout)
            return self._copy(row)

    def update(self, row_id: str, changes: dict[str, Any], holder: str | None = None) -> bool:
        with self._lock:
            row = self._rows.get(row_id)
            if row is None or (holder is not None and row.lease_holder != holder):
                return False
            for key, value in changes.items():
                setattr(row, key, value)
            row.modified = utcnow()
            return True

    def steer(self, row_id: str, desired: str, new_generation: bool) -> DaemonRecord | None:
        with self._lock:
            row = self._rows.get(row_id)
            if row is None:
                return None
            row.desired = desired
            row.generation += int(new_generation)
            row.modified = utcnow()
            return self._copy(row)

    def add_log(self, environment: str, name: str, worker: str | None,
                record: LogRecord) -> None:
        with self._lock:
            self._logs[environment, name].append((worker, record))

    def logs(self, environment: str, name: str, limit: int = 100):
        with self._lock:
            return list(reversed(self._logs[environment, name]))[:limit]

    def delete(self, row_ids) -> None:
        with self._lock:
            for row_id in row_ids:
                self._rows.pop(row_id, None)
