"""Housekeeping: recover jobs whose worker died, apply retention, run recurring jobs.

A worker that dies while a job is Executing stops heartbeating, so the job's lock
expires; :func:`recover` (run by a worker timer every ``bgp_job_monitor_interval``
seconds, and available as the ``bgp.jobs.recover`` task for beat) re-enqueues such
jobs or fails them, per ``bgp_job_on_worker_lost``; a job someone asked to cancel
(its process was terminated, or died) becomes Cancelled instead, never runs again.

It also sweeps the other end: a job that is due but still Enqueued
``bgp_job_stalled_after`` seconds after it was enqueued has most likely lost its
message (a worker took it and died before writing Executing, or the publish was lost),
and :func:`resend_stalled` sends it again. The job keeps its execution id: whichever
of its messages a worker gets first runs it and the others find it started or
finished and are dropped, so a job whose message merely waits in a long queue is
never starved by its own re-sends. :func:`purge` deletes finished jobs older than
``bgp_job_retention`` in batches.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import bootsteps

from ..commands import utcnow
from .states import Cancelled, Enqueued, Failed
from .store import JobNotFound, StateConflict

if TYPE_CHECKING:
    from .client import Jobs

__all__ = ["FINISHED_STATES", "MonitorStep", "purge", "recover", "resend_stalled"]

logger = logging.getLogger("celery_bgp.jobs")

#: States retention deletes.
FINISHED_STATES = ("Succeeded", "Deleted", "Cancelled")


def recover(jobs: Jobs, now: datetime | None = None, limit: int = 100) -> int:
    """Re-enqueue (or fail, or cancel) Executing jobs whose lock expired, and send stalled
    Enqueued jobs again (:func:`resend_stalled`); return how many jobs were moved."""
    now = now or utcnow()
    return _recover_expired(jobs, now, limit) + resend_stalled(jobs, now, limit)


def _recover_expired(jobs: Jobs, now: datetime, limit: int) -> int:
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


def resend_stalled(jobs: Jobs, now: datetime | None = None, limit: int = 100) -> int:
    """Send again this environment's jobs that wait for a message that may never come;
    return how many. See :meth:`.store.JobStore.stalled`.

    - Enqueued and due for more than ``bgp_job_stalled_after`` seconds: moved Enqueued
      -> Enqueued (which publishes the message again), keeping the execution id.
    - Retrying for more than ``bgp_job_stalled_after`` seconds (the write that enqueues
      the next attempt failed): enqueued, with a new execution id and what is left of
      the retry's delay, as the engine would have.

    Each job is moved under its lock, and only if it has not changed since the query:
    a job a worker starts meanwhile is left alone.
    """
    after = jobs.settings.job_stalled_after
    if not after or after <= 0:
        return 0
    now = now or utcnow()
    before = now - timedelta(seconds=after)
    done = 0
    for job in jobs.store.stalled(before, jobs.environment, limit):
        holder = f"monitor:{uuid.uuid4().hex}"
        waited = (now - job.modified).total_seconds()
        try:
            if not jobs.store.acquire_lock(job.id, holder, timeout=30):
                continue  # a worker is starting it
            with jobs.holding(job.id, holder):
                current = jobs.store.get(job.id)
                if (current is None or current.state != job.state
                        or current.modified != job.modified):
                    continue  # started, moved or enqueued again since the query
                state, changes = _resend(jobs, current, waited)
                jobs.machine.change(job.id, state, holder=holder, changes=changes,
                                    expected={current.state}, job=current)
            done += 1
            logger.warning("celery-bgp: job %s was %s for %.0f s with no worker taking it; "
                           "its message was sent again", job.id, job.state, waited)
        except (StateConflict, JobNotFound):
            pass  # moved or deleted meanwhile
    return done


def _resend(jobs: Jobs, job: Any, waited: float) -> tuple[Enqueued, dict[str, Any] | None]:
    """The Enqueued state (and changes) that sends a stalled job again."""
    if job.state == "Enqueued":
        # A job Enqueued by a raw store write may have no execution id: give it one.
        changes = None if job.execution_id else {"execution_id": uuid.uuid4().hex}
        return Enqueued(reason=f"stalled: Enqueued for {waited:.0f} s with no worker taking "
                               "it (message lost?); sent again"), changes
    history = jobs.store.states(job.id)
    delay = float(history[-1].data.get("delay") or 0) if history else 0.0
    until = job.modified + timedelta(seconds=delay)
    return (Enqueued(delay_until=until if until > utcnow() else None,
                     reason=f"stalled: Retrying for {waited:.0f} s; next attempt enqueued"),
            {"execution_id": uuid.uuid4().hex})


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
