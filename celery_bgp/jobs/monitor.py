"""Housekeeping: recover jobs whose worker died, apply retention, run recurring jobs.

A worker that dies while a job is Executing stops heartbeating, so the job's lock
expires; :func:`recover` (run by a worker timer every ``bgp_job_monitor_interval``
seconds, and available as the ``bgp.jobs.recover`` task for beat) re-enqueues such
jobs or fails them, per ``bgp_job_on_worker_lost``; a job someone asked to cancel
(its process was terminated, or died) becomes Cancelled instead, never runs again.
:func:`purge` deletes finished jobs older than ``bgp_job_retention`` in batches.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import bootsteps

from ..commands import utcnow
from .states import Cancelled, Enqueued, Failed
from .store import StateConflict

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["FINISHED_STATES", "MonitorStep", "purge", "recover"]

logger = logging.getLogger("celery_bgp.jobs")

#: States retention deletes.
FINISHED_STATES = ("Succeeded", "Deleted", "Cancelled")


def recover(jobs: Jobs, now: datetime | None = None, limit: int = 100) -> int:
    """Re-enqueue (or fail, or cancel) Executing jobs whose lock expired; return how many."""
    now = now or utcnow()
    policy = jobs.settings.job_on_worker_lost
    done = 0
    for job in jobs.store.expired(now, limit=limit):
        if job.environment != jobs.environment:
            continue
        holder = f"monitor:{uuid.uuid4().hex}"
        if not jobs.store.acquire_lock(job.id, holder, timeout=30):
            continue
        lost = job.lock.holder if job.lock else "unknown"
        reason = f"worker lost: {lost} stopped heartbeating"
        try:
            with jobs.holding(job.id, holder):
                outcome = _recover_one(jobs, job.id, holder, policy, reason, job.attempt)
            done += 1
            logger.warning("celery-bgp: job %s recovered (%s): %s", job.id, outcome, reason)
        except StateConflict:
            pass
    return done


def _recover_one(jobs: Jobs, job_id: str, holder: str, policy: str, reason: str,
                 attempt: int) -> str:
    if jobs.store.cancel_requested(job_id):
        jobs.machine.change(job_id, Cancelled(reason=f"cancel requested; {reason}"),
                            holder=holder, expected={"Executing"})
        return "cancelled"
    if policy == "fail":
        state: Any = Failed(exception_type="celery_bgp.WorkerLost", message=reason,
                            attempt=attempt)
        jobs.machine.change(job_id, state, holder=holder, expected={"Executing"})
    else:
        jobs.machine.change(job_id, Enqueued(reason=reason), holder=holder,
                            expected={"Executing"}, changes={"execution_id": uuid.uuid4().hex})
    return policy


def purge(jobs: Jobs, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Delete this environment's finished jobs older than the retention; return the count."""
    retention = jobs.settings.job_retention
    if retention is None:
        return 0
    before = (now or utcnow()) - timedelta(seconds=retention)
    return jobs.store.purge(FINISHED_STATES, before, jobs.environment, batch_size)


class MonitorStep(bootsteps.StartStopStep):
    """Worker bootstep: every ``bgp_job_monitor_interval`` s, recover this app's jobs."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker: Any) -> None:
        bgp = getattr(worker.app, "bgp", None)
        if bgp is None or not bgp.has_jobs:
            return
        interval = bgp.settings.job_monitor_interval
        if interval > 0:
            self.tref = worker.timer.call_repeatedly(interval, self._tick, (bgp,), priority=10)

    def _tick(self, bgp: Any) -> None:
        try:
            recover(bgp.jobs)
        except Exception:
            logger.exception("celery-bgp: job monitor failed")
        finally:
            # The worker's main thread: a prefork pool forks its processes from it, and
            # one must never inherit (and share with this process) an open connection.
            bgp.jobs.store.on_idle()

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
