"""Wires the jobs engine into a Celery app: the job task, housekeeping, recurring jobs.

Called once per :class:`~celery_bgp.BackgroundProcessing`. The tasks are always
registered (cheap, and a worker must know them before any job exists); they use
``bgp.jobs``, which needs ``bgp_job_store``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task

from . import cancelling
from .monitor import MonitorStep, purge, recover
from .runner import JobWasCancelled, run_job
from .stores import SharedStoreStep

if TYPE_CHECKING:
    from ..processing import BackgroundProcessing

__all__ = ["JobTask", "install"]

#: Seconds between retention runs scheduled on beat.
PURGE_EVERY = 3600.0


class JobTask(Task):
    """The generic ``bgp.job`` task: JSON only, message = (job id, execution id).

    The task's outcome follows the job's (see :mod:`.runner`): it raises
    :class:`~.runner.JobFailed` for a Failed job, :class:`~.runner.JobWasCancelled` (an
    expected exception: logged at INFO) for a Cancelled one, Celery's ``Retry`` for one
    the engine retries. Celery's retry (``task.retry``) is used only to give a message
    back while the job store is unavailable: as often as it takes.
    """

    bgp: BackgroundProcessing
    serializer = "json"
    typing = False
    #: A job's result lives in the job store; no second copy in the result backend
    #: (failures included: ``store_errors_even_if_ignored`` stays False).
    ignore_result = True
    Strategy = "celery_bgp.worker:json_only_strategy"
    command_name = None
    #: A message is never dropped because the job store is away (see :mod:`.runner`).
    max_retries = None
    #: A Cancelled job is an expected outcome, not an error.
    throws = (JobWasCancelled,)
    #: With ``acks_late``, a job that failed (or hit a time limit) is acknowledged: its
    #: failure is in the job store, and recovery handles a killed one; never requeued.
    acks_on_failure_or_timeout = True
    acks_on_failure = True  # newer Celery splits that setting in two
    acks_on_timeout = True


def install(bgp: BackgroundProcessing) -> Task:
    """Register the job tasks and the monitor bootstep on ``bgp.app``; return the job task."""
    app, prefix = bgp.app, bgp.task_prefix

    def job(task: Task, job_id: str, execution_id: str) -> Any:
        return run_job(bgp.jobs, task, job_id, execution_id)

    def recover_jobs(task: Task) -> int:
        return recover(bgp.jobs)

    def purge_jobs(task: Task) -> int:
        return purge(bgp.jobs)

    def recurring(task: Task, name: str) -> str | None:
        return bgp.jobs.run_scheduled(name)  # None: paused, skipped

    common = {"bind": True, "shared": False, "lazy": False, "bgp": bgp}
    job_task = app.task(job, name=f"{prefix}.job", base=JobTask, **common)
    app.task(recover_jobs, name=f"{prefix}.jobs.recover", **common)
    app.task(purge_jobs, name=f"{prefix}.jobs.purge", **common)
    app.task(recurring, name=f"{prefix}.jobs.recurring", **common)
    if MonitorStep not in app.steps["worker"]:
        app.steps["worker"].add(MonitorStep)
    if SharedStoreStep not in app.steps["worker"]:
        app.steps["worker"].add(SharedStoreStep)
    cancelling.connect()  # the bgp_cancel control command reaches running jobs
    app.on_after_configure.connect(lambda **_: schedule_housekeeping(bgp), weak=False)
    if app.configured:
        schedule_housekeeping(bgp)
    return job_task


def schedule_housekeeping(bgp: BackgroundProcessing) -> None:
    """Add recovery and retention to beat's schedule when a job store is configured."""
    if not bgp.has_jobs:
        return
    prefix, env = bgp.task_prefix, bgp.name
    app = bgp.app
    interval = float(bgp.setting("job_monitor_interval") or 0)
    if interval > 0:
        app.add_periodic_task(interval, app.signature(f"{prefix}.jobs.recover"),
                              name=f"bgp:{env}:recover")
    app.add_periodic_task(PURGE_EVERY, app.signature(f"{prefix}.jobs.purge"),
                          name=f"bgp:{env}:purge")
