"""Daemons through SQLAlchemy Core, on the SQLAlchemy job store's engine.

Leases are single conditional ``UPDATE``s (free, expired or already ours), as in the
Django store, so the two stores steer the same rows the same way.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from celery_bgp.commands import utcnow
from celery_bgp.daemons.model import FIELDS, DaemonRecord
from celery_bgp.daemons.store import DaemonStore
from celery_bgp.jobs.model import LogRecord

from .daemon_schema import daemon, daemon_log
from .engines import unavailable_errors

__all__ = ["SQLAlchemyDaemonStore"]


def _record(row: Any) -> DaemonRecord:
    values = {name: row[name] for name in FIELDS}
    values["properties"] = values["properties"] or {}
    return DaemonRecord(**values)


class SQLAlchemyDaemonStore(DaemonStore):
    """Daemon rows and logs in the ``celery_bgp_daemon*`` tables of one Engine."""

    unavailable = unavailable_errors(DaemonStore.unavailable)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def for_job_store(cls, job_store: Any) -> SQLAlchemyDaemonStore:
        return cls(job_store.engine)

    def _write(self, statement: Any) -> int:
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount

    def ensure(self, record: DaemonRecord) -> DaemonRecord:
        found = self.get(record.id)
        if found is not None:
            return found
        with contextlib.suppress(sa_exc.IntegrityError):  # another worker inserted it first
            self._write(insert(daemon).values({**dataclasses.asdict(record), "modified": utcnow()}))
        return self.get(record.id)  # type: ignore[return-value]

    def get(self, row_id: str) -> DaemonRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(daemon).where(daemon.c.id == row_id)).mappings().first()
        return _record(row) if row else None

    def search(self, environment: str, name: str | None = None) -> list[DaemonRecord]:
        query = select(daemon).where(daemon.c.environment == environment)
        if name is not None:
            query = query.where(daemon.c.name == name)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(daemon.c.name, daemon.c.instance))
            return [_record(r) for r in rows.mappings()]

    def acquire(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        now = utcnow()
        c = daemon.c
        free = or_(c.lease_holder.is_(None), c.lease_holder == holder,
                   c.lease_expires.is_(None), c.lease_expires < now)
        taken = self._write(update(daemon).where(c.id == row_id, free).values(
            lease_holder=holder, lease_expires=now + timedelta(seconds=timeout), modified=now))
        return self.get(row_id) if taken else None

    def renew(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        done = self._write(update(daemon).where(
            daemon.c.id == row_id, daemon.c.lease_holder == holder).values(
            lease_expires=utcnow() + timedelta(seconds=timeout)))
        return self.get(row_id) if done else None

    def update(self, row_id: str, changes: dict[str, Any], holder: str | None = None) -> bool:
        statement = update(daemon).where(daemon.c.id == row_id)
        if holder is not None:
            statement = statement.where(daemon.c.lease_holder == holder)
        return bool(self._write(statement.values(**changes, modified=utcnow())))

    def steer(self, row_id: str, desired: str, new_generation: bool) -> DaemonRecord | None:
        done = self._write(update(daemon).where(daemon.c.id == row_id).values(
            desired=desired, generation=daemon.c.generation + int(new_generation),
            modified=utcnow()))
        return self.get(row_id) if done else None

    def add_log(self, environment: str, name: str, worker: str | None,
                record: LogRecord) -> None:
        self._write(insert(daemon_log).values(
            environment=environment, daemon=name, worker=worker, level=record.level,
            message=record.message, exception=record.exception, time=record.time))

    def logs(self, environment: str, name: str, limit: int = 100):
        c = daemon_log.c
        query = (select(daemon_log).where(c.environment == environment, c.daemon == name)
                 .order_by(c.id.desc()).limit(limit))
        with self.engine.connect() as connection:
            return [(r["worker"], LogRecord(r["level"], r["message"], r["time"], r["exception"]))
                    for r in connection.execute(query).mappings()]

    def delete(self, row_ids: Sequence[str]) -> None:
        self._write(delete(daemon).where(daemon.c.id.in_(list(row_ids))))
