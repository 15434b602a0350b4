"""Where daemons live: the lease store protocol, and which implementation a job store gets.

A daemon's lease is a conditional write on its row (taken when free, held or expired;
renewed only by its holder), so every store that can update one row atomically can
host daemons: memory (tests), the Django ORM and SQLAlchemy, on the job store's
database. Times are the writer's UTC clock, as for the jobs' locks.
"""
from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from typing import Any

from ..jobs.model import LogRecord
from .model import DaemonRecord

__all__ = ["DaemonStore", "daemon_store_for"]

#: Job store class name -> its daemon store (imported only when that job store is used).
IMPLEMENTATIONS = {
    "MemoryJobStore": "celery_bgp.daemons.memory:MemoryDaemonStore",
    "DjangoJobStore": "celery_bgp.contrib.django.daemon_store:DjangoDaemonStore",
    "SQLAlchemyJobStore": "celery_bgp.contrib.sqlalchemy.daemon_store:SQLAlchemyDaemonStore",
}


class DaemonStore(abc.ABC):
    """Rows of daemons, their leases and their logs."""

    #: Errors that mean "the database is away for now" (the runner retries).
    unavailable: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)

    @abc.abstractmethod
    def ensure(self, record: DaemonRecord) -> DaemonRecord:
        """Insert ``record`` unless a row with its id exists; return the stored row."""

    @abc.abstractmethod
    def get(self, row_id: str) -> DaemonRecord | None: ...

    @abc.abstractmethod
    def search(self, environment: str, name: str | None = None) -> list[DaemonRecord]:
        """Rows of an environment (of one daemon if ``name``), by name then instance."""

    @abc.abstractmethod
    def acquire(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        """Take the lease if free, expired or already ``holder``'s; the row, or None."""

    @abc.abstractmethod
    def renew(self, row_id: str, holder: str, timeout: float) -> DaemonRecord | None:
        """Extend ``holder``'s lease; the row, or None if someone else holds it."""

    @abc.abstractmethod
    def update(self, row_id: str, changes: dict[str, Any], holder: str | None = None) -> bool:
        """Change fields (only while ``holder`` holds the lease, if given); True if done."""

    @abc.abstractmethod
    def steer(self, row_id: str, desired: str, new_generation: bool) -> DaemonRecord | None:
        """Set ``desired`` (and bump ``generation``): what stop/start/restart write."""

    @abc.abstractmethod
    def add_log(self, environment: str, name: str, worker: str | None,
                record: LogRecord) -> None: ...

    @abc.abstractmethod
    def logs(self, environment: str, name: str, limit: int = 100) -> list[tuple[str | None,
                                                                                   LogRecord]]:
        """``(worker, record)`` of a daemon, newest first."""

    def delete(self, row_ids: Sequence[str]) -> None:  # noqa: B027 - optional
        """Forget rows (a worker daemon's copies on workers that are gone)."""

    def on_idle(self) -> None:  # noqa: B027 - optional hook
        """Give the calling thread's connection back (the runner calls it when idle)."""


def daemon_store_for(job_store: Any) -> DaemonStore:
    """The daemon store on the job store's database (same connection settings)."""
    for cls in type(job_store).__mro__:
        target = IMPLEMENTATIONS.get(cls.__name__)
        if target:
            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr).for_job_store(job_store)
    provider = getattr(job_store, "daemon_store", None)
    if callable(provider):
        return provider()
    raise TypeError(f"{type(job_store).__name__} cannot host daemons: give it a "
                    "daemon_store() method returning a celery_bgp.daemons.DaemonStore")
