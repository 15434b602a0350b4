"""The jobs side of ``BackgroundProcessing``: ``bgp.jobs``, command tracking, requeue.

A mixin, so the core class stays about commands; everything here is used only when
a job store is configured (``job_store=`` / ``bgp_job_store``).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from celery.result import AsyncResult

from .. import signals as bgp_signals
from ..events.recorder import EventRecorder
from ..exceptions import ImproperlyConfigured, InvalidCommand

if TYPE_CHECKING:
    from celery import Task

    from .client import Jobs

__all__ = ["JobsSupport"]


class JobsSupport:
    """Mixin of :class:`~celery_bgp.BackgroundProcessing`."""

    def _install_jobs(self) -> Task:
        from .install import install

        return install(self)  # type: ignore[arg-type]

    @property
    def has_jobs(self) -> bool:
        """True when a job store is configured (``job_store`` / ``bgp_job_store``)."""
        return self.setting("job_store") is not None  # type: ignore[attr-defined]

    @functools.cached_property
    def jobs(self) -> Jobs:
        """The jobs API (HiveMind's client): enqueue callables, query, steer."""
        from .client import Jobs
        from .stores import resolve_job_store

        if not self.has_jobs:
            raise ImproperlyConfigured(
                "bgp.jobs needs a job store: BackgroundProcessing(app, job_store='django://') "
                "or the bgp_job_store setting ('memory://' for tests)"
            )
        setting = self.settings.job_store
        return Jobs(self, lambda: resolve_job_store(setting))  # opened on first use

    @functools.cached_property
    def _job_recorder(self) -> EventRecorder | None:
        """Records command events as job states when a job store is configured."""
        from .store import JobStoreEvents

        if not self.has_jobs:
            return None
        repository = self.recorder.repository
        store = self.jobs.store
        if isinstance(repository, JobStoreEvents) and repository.store == store:
            # django-db:// on the job store's database: the event recorder already
            # writes the events there. (Compared by equality: the repository builds its
            # own store object, and a second recorder would write every event twice.)
            return None
        return EventRecorder(lambda: JobStoreEvents(store, self.name), mode=self.recorder.mode,
                             final_timeout=self.recorder.final_timeout,
                             linger=self.recorder.linger)

    def redispatch(self, job: Any) -> AsyncResult:
        """Send a stored command job again, same id, one more requeue (by hand)."""
        requeues = max((int(s.data.get("requeues", 0)) for s in self.jobs.history(job.id)),
                       default=0) + 1
        if not job.args:
            raise InvalidCommand(f"job {job.id} has no stored command payload to send again")
        headers = {bgp_signals.INSTANCE: self.name, bgp_signals.REQUEUES: requeues}
        return self.app.send_task(f"{self.task_prefix}.{job.name}", args=(job.args[0],),
                                  task_id=job.id, queue=job.queue or None, headers=headers,
                                  serializer="json")
